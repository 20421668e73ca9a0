package registry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// restChecks refuses, before grpc-gateway builds the gRPC call, what the
// gateway would otherwise mishandle: a method the path does not serve (405
// with Allow), a parameter or query value that is not UTF-8 (it would fail to
// marshal: 500), a query value the field cannot take (named), a JSON body
// that does not decode (named where a field is to blame), and a body id that
// contradicts the path (grpc-gateway lets the path win silently). Like
// grpc-gateway's own decoding, this runs before authentication.
type restChecks struct {
	routes restRoutes
	mux    *runtime.ServeMux // serves what passes
}

func (c *restChecks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	routes := c.routes.lookup(r.URL.EscapedPath())
	if len(routes) == 0 {
		c.mux.ServeHTTP(w, r) // grpc-gateway answers 404
		return
	}
	i := slices.IndexFunc(routes, func(rt restRoute) bool { return rt.method == r.Method })
	if i < 0 {
		_, m := runtime.MarshalerForRequest(c.mux, r)
		c.routingError(r.Context(), c.mux, m, w, r, http.StatusMethodNotAllowed)
		return
	}
	if err := checkRESTRequest(routes[i], r); err != nil {
		_, m := runtime.MarshalerForRequest(c.mux, r)
		gatewayErrorHandler(r.Context(), c.mux, m, w, r, err)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// routingError is the mux's routing error handler: a 405 lists the methods
// the path serves in Allow (grpc-gateway's default answers 501); the body
// has the shape of every other REST error.
func (c *restChecks) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus != http.StatusMethodNotAllowed {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	allow := strings.Join(allowed(c.routes.lookup(r.URL.EscapedPath())), ", ")
	w.Header().Set("Allow", allow)
	// The escaped path: a status message must be UTF-8, and the path may not be.
	err := status.Errorf(codes.Unimplemented, "method %q is not allowed on %s (allowed: %s)", r.Method, r.URL.EscapedPath(), allow)
	gatewayErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: http.StatusMethodNotAllowed, Err: err})
}

// checkRESTRequest checks r's path parameters, query and body against the
// request message of its route; it leaves r's body readable again.
func checkRESTRequest(route restRoute, r *http.Request) error {
	params, _ := route.match(strings.Split(r.URL.EscapedPath()[1:], "/"))
	for _, p := range params {
		if !utf8.ValidString(p.value) {
			return invalidField(p.field, "is not valid UTF-8")
		}
	}
	if err := checkQuery(route, params, r.URL.RawQuery); err != nil {
		return err
	}
	if !route.body {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	msg := route.input.New().Interface()
	if err := protojson.Unmarshal(body, msg); err != nil {
		if field, desc := jsonErrorField(route.input.Descriptor(), body, err); field != "" {
			return invalidField(field, "%s", desc)
		}
		return status.Errorf(codes.InvalidArgument, "request body: %s", protojsonReason(err))
	}
	for _, p := range params {
		if v := stringAt(msg.ProtoReflect(), p.field); v != "" && v != p.value {
			return invalidField(p.field, "is %q in the body but %q in the path", v, p.value)
		}
	}
	return nil
}

// checkQuery refuses a query that is not UTF-8, a parameter that names no
// field or contradicts the path, and a value its field cannot take, naming
// the parameter: grpc-gateway's own error names none. Parameters are parsed
// one at a time with grpc-gateway's parser, into a scratch message, to learn
// which one fails.
func checkQuery(route restRoute, params []pathParam, rawQuery string) error {
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "query: %v", err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !utf8.ValidString(k) {
			return status.Errorf(codes.InvalidArgument, "query: parameter name %q is not valid UTF-8", k)
		}
		for _, v := range values[k] {
			if !utf8.ValidString(v) {
				return invalidField(k, "is not valid UTF-8")
			}
		}
	}
	for _, k := range keys {
		if err := checkQueryParam(route, params, k, values[k]); err != nil {
			return err
		}
	}
	return nil
}

// checkQueryParam checks one query parameter: grpc-gateway would ignore it
// silently if it named no field, was bound by the path (the path wins) or
// came with a body that is the whole request.
func checkQueryParam(route restRoute, params []pathParam, key string, values []string) error {
	if route.body {
		return invalidField(key, "is not read on this path: the body is the whole request")
	}
	field, ok := protoFieldPath(route.input.Descriptor(), key)
	if !ok {
		return invalidField(key, "is not a parameter of this path")
	}
	if i := slices.IndexFunc(params, func(p pathParam) bool { return p.field == field }); i >= 0 {
		for _, v := range values {
			if v != params[i].value {
				return invalidField(key, "is %q in the query but %q in the path", v, params[i].value)
			}
		}
		return nil
	}
	msg := route.input.New().Interface()
	if err := runtime.PopulateQueryParameters(msg, url.Values{key: values}, utilities.NewDoubleArray(nil)); err != nil {
		return invalidField(key, "%v", err)
	}
	return nil
}

// stringAt is the string at a field path of m ("" if unset or not a string).
func stringAt(m protoreflect.Message, path string) string {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(part))
		if fd == nil || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			return ""
		}
		if i == len(parts)-1 {
			if fd.Kind() != protoreflect.StringKind {
				return ""
			}
			return m.Get(fd).String()
		}
		if fd.Message() == nil {
			return ""
		}
		m = m.Get(fd).Message()
	}
	return ""
}

// invalidField is an INVALID_ARGUMENT status whose message starts with the
// field and whose BadRequest detail names it, like every other field error.
func invalidField(field, format string, args ...any) error {
	return toStatus(slog.Default(), "", state.Invalid(field, format, args...))
}
