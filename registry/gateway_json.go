package registry

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// jsonErrorField names the field of a message of type md to blame when
// protojson refused data with err, and says what is wrong with it; "" when
// no one field is (the body is not an object, a field appears twice, ...).
//
// protojson's errors carry a line and column but no field, and their wording
// is not an API, so the field is found by decoding again rather than by
// parsing the message:
//   - data that is not JSON at all (NaN, a truncated value): read token by
//     token with encoding/json, keeping the path of keys; the field is the
//     path where the tokenizer stops;
//   - well-formed JSON: decode each member of the object alone, with
//     protojson, into a fresh message; the first that fails is the field, and
//     the search goes on inside it when it holds a message or a list of them.
//
// Field paths use proto names ("policy.window", "scope.allowed_actions[0]");
// the description is protojson's for that field, without its position.
func jsonErrorField(md protoreflect.MessageDescriptor, data []byte, err error) (field, desc string) {
	if !json.Valid(data) {
		return syntaxErrorPath(md, data), protojsonReason(err)
	}
	return memberError(md, data)
}

// memberError decodes each member of the object data alone; see jsonErrorField.
func memberError(md protoreflect.MessageDescriptor, data []byte) (string, string) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return "", "" // not an object: the caller's field is to blame
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fd := fieldByJSONKey(md, k)
		if fd == nil {
			return k, "unknown field"
		}
		name := string(fd.Name())
		key, _ := json.Marshal(k)
		single := append(append(append([]byte("{"), key...), ':'), obj[k]...)
		ferr := protojson.Unmarshal(append(single, '}'), dynamicpb.NewMessage(md))
		if ferr == nil {
			continue
		}
		if sub := fd.Message(); sub != nil && !fd.IsMap() && !strings.HasPrefix(string(sub.FullName()), "google.protobuf.") {
			if fd.IsList() {
				var elems []json.RawMessage
				if json.Unmarshal(obj[k], &elems) == nil {
					for i, e := range elems {
						if f, d := memberError(sub, e); f != "" {
							return name + "[" + strconv.Itoa(i) + "]." + f, d
						}
					}
				}
			} else if f, d := memberError(sub, obj[k]); f != "" {
				return name + "." + f, d
			}
		}
		return name, protojsonReason(ferr)
	}
	return "", ""
}

// jsonFrame is an object or array being read by syntaxErrorPath.
type jsonFrame struct {
	array bool
	key   string // objects: the member being read
	atKey bool   // objects: a key comes next
	index int    // arrays: the element being read
}

// syntaxErrorPath is the field path at which data stops being JSON.
func syntaxErrorPath(md protoreflect.MessageDescriptor, data []byte) string {
	var stack []jsonFrame
	// valueDone moves the innermost container past the value just read.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].atKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].atKey {
			if key, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].atKey = key, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, jsonFrame{atKey: true})
		case json.Delim('['):
			stack = append(stack, jsonFrame{array: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
	// Name the path with proto names, down to the first field that holds no
	// message (deeper keys are inside its value, not fields).
	var parts []string
	m := md
	for _, f := range stack {
		switch {
		case f.array:
			if len(parts) > 0 {
				parts[len(parts)-1] += "[" + strconv.Itoa(f.index) + "]"
			}
			continue
		case f.atKey || m == nil:
		default:
			fd := fieldByJSONKey(m, f.key)
			if fd == nil {
				parts = append(parts, f.key) // unknown: the key as sent
				m = nil
				continue
			}
			parts = append(parts, string(fd.Name()))
			if m = fd.Message(); m != nil && strings.HasPrefix(string(m.FullName()), "google.protobuf.") {
				m = nil
			}
			continue
		}
		break
	}
	return strings.Join(parts, ".")
}

// fieldByJSONKey is md's field a JSON member key names (JSON or proto name).
func fieldByJSONKey(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	return md.Fields().ByName(protoreflect.Name(key))
}

// protojsonPosition is the "proto: (line 1:15): " start of a protojson
// error (protojson puts a space or, at random, a no-break space after
// "proto:" so that no one relies on its wording).
var protojsonPosition = regexp.MustCompile(`^proto:[\s\x{a0}]*(syntax error)?[\s\x{a0}]*(\(line \d+:\d+\):[\s\x{a0}]*)?`)

// protojsonReason is protojson's error without its prefix and position
// (they refer to the bytes decoded, which may be a member decoded alone).
// If protojson ever words its errors otherwise, the whole text is kept.
func protojsonReason(err error) string {
	s := err.Error()
	if loc := protojsonPosition.FindStringIndex(s); loc != nil && loc[1] < len(s) {
		return s[loc[1]:]
	}
	return s
}
