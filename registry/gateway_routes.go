package registry

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// restRoute is one REST mapping of the API, read from the generated OpenAPI
// document (the same HTTP rules the gateway's handlers were generated from).
// The gateway uses the table to answer 405 with an Allow header and to check
// a request's parameters and body before grpc-gateway builds the gRPC call.
type restRoute struct {
	method string
	// segments of the path template; a parameter is "{field.path}" with
	// the proto field path.
	segments []string
	verb     string
	input    protoreflect.MessageType
	body     bool
}

// pathParam is a path parameter's proto field path and its unescaped value.
type pathParam struct{ field, value string }

// restRoutes is the route table of the REST API.
type restRoutes []restRoute

// loadRESTRoutes reads the route table from an OpenAPI v2 document whose
// operation ids are "Service_Method" of the trustfed.v1 package.
func loadRESTRoutes(doc []byte) (restRoutes, error) {
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				In string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	var rs restRoutes
	for path, ops := range d.Paths {
		for method, op := range ops {
			name := "trustfed.v1." + strings.Replace(op.OperationID, "_", ".", 1)
			desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
			if err != nil {
				return nil, fmt.Errorf("openapi operation %s: %w", op.OperationID, err)
			}
			md, ok := desc.(protoreflect.MethodDescriptor)
			if !ok {
				return nil, fmt.Errorf("openapi operation %s is not a method", op.OperationID)
			}
			input, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				return nil, fmt.Errorf("openapi operation %s: %w", op.OperationID, err)
			}
			r := restRoute{method: strings.ToUpper(method), input: input}
			for _, p := range op.Parameters {
				r.body = r.body || p.In == "body"
			}
			if r.segments, r.verb, err = parseTemplate(path, md.Input()); err != nil {
				return nil, fmt.Errorf("openapi path %s: %w", path, err)
			}
			rs = append(rs, r)
		}
	}
	return rs, nil
}

// parseTemplate splits a path template into segments and a verb, naming each
// parameter by its proto field path (the document uses JSON names).
func parseTemplate(path string, md protoreflect.MessageDescriptor) ([]string, string, error) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var verb string
	last := segs[len(segs)-1]
	if i := strings.LastIndexByte(last, ':'); i > strings.LastIndexByte(last, '}') {
		segs[len(segs)-1], verb = last[:i], last[i+1:]
	}
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		field, ok := protoFieldPath(md, strings.Trim(s, "{}"))
		if !ok {
			return nil, "", fmt.Errorf("parameter %s names no field of %s", s, md.FullName())
		}
		segs[i] = "{" + field + "}"
	}
	return segs, verb, nil
}

// protoFieldPath resolves a parameter name ("enrolment.organizationId",
// "page_token") to the proto field path it names, the way grpc-gateway does
// (each part a JSON or proto name of a message field).
func protoFieldPath(md protoreflect.MessageDescriptor, name string) (string, bool) {
	var names []string
	for _, part := range strings.Split(name, ".") {
		if md == nil {
			return "", false
		}
		fd := fieldByJSONKey(md, part)
		if fd == nil {
			return "", false
		}
		names = append(names, string(fd.Name()))
		md = fd.Message()
	}
	return strings.Join(names, "."), true
}

// match reports whether the escaped request path matches r's template, and
// the path parameters it binds (unescaped).
func (r restRoute) match(comps []string) ([]pathParam, bool) {
	if len(comps) != len(r.segments) {
		return nil, false
	}
	if r.verb != "" {
		last := comps[len(comps)-1]
		base, ok := strings.CutSuffix(last, ":"+r.verb)
		if !ok || base == "" {
			return nil, false
		}
		comps = append(slices.Clone(comps[:len(comps)-1]), base)
	}
	var params []pathParam
	for i, seg := range r.segments {
		v, err := url.PathUnescape(comps[i])
		if err != nil {
			return nil, false
		}
		if strings.HasPrefix(seg, "{") {
			params = append(params, pathParam{field: strings.Trim(seg, "{}"), value: v})
		} else if v != seg {
			return nil, false
		}
	}
	return params, true
}

// lookup finds the routes an escaped request path matches, for any method.
// A route with a verb is more specific than one whose last parameter would
// swallow ":verb": GET /v1/organizations/x:approve is the approve path (405),
// not organisation "x:approve".
func (rs restRoutes) lookup(escapedPath string) []restRoute {
	if !strings.HasPrefix(escapedPath, "/") {
		return nil
	}
	comps := strings.Split(escapedPath[1:], "/")
	var plain, verbed []restRoute
	for _, r := range rs {
		if _, ok := r.match(comps); ok {
			if r.verb != "" {
				verbed = append(verbed, r)
			} else {
				plain = append(plain, r)
			}
		}
	}
	if len(verbed) > 0 {
		return verbed
	}
	return plain
}

// allowed is the sorted list of methods the routes serve.
func allowed(routes []restRoute) []string {
	var ms []string
	for _, r := range routes {
		if !slices.Contains(ms, r.method) {
			ms = append(ms, r.method)
		}
	}
	slices.Sort(ms)
	return ms
}
