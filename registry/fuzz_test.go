package registry

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Fuzz targets for everything the registry runs on input from a caller it
// has not authenticated yet: the bearer header, and the request decoders
// (gRPC decodes a message, and the REST gateway its JSON, before the
// interceptor runs), plus the organisation checks of the authorisation
// table on whatever decoded. The REST gateway's own checks, which also run
// before authentication, have theirs beside them (FuzzRESTChecks,
// FuzzJSONErrorField).

func FuzzBearerHeader(f *testing.F) {
	_, secret, err := attestation.NewToken(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "Bearer ", "Bearer " + secret, "bearer " + secret + "x", "Basic abc", "Bearer tf_", strings.Repeat("A", 5000)} {
		f.Add(s)
	}
	a := authenticator{store: state.NewStore(), clock: time.Now}
	f.Fuzz(func(t *testing.T, header string) {
		p, err := a.fromToken(header)
		if err == nil {
			t.Fatalf("an empty registry authenticated %q as %+v", header, p)
		}
	})
}

// requestMethods are the methods fuzzed, in a fixed order.
func requestMethods() []string {
	var ms []string
	for m := range accessPolicy {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

func FuzzRequestDecoding(f *testing.F) {
	methods := requestMethods()
	f.Add(uint8(0), []byte{}, false)
	f.Add(uint8(3), []byte(`{"fromOrganizationId":"acme","toOrganizationId":"globex"}`), true)
	f.Add(uint8(7), []byte{0x0a, 0x04, 'a', 'c', 'm', 'e'}, false)
	f.Add(uint8(11), []byte(`{"enrolment":{"organizationId":"x","publicKey":"AAAA"}}`), true)
	scoped := Principal{ID: "member:acme/gw", Role: RoleMember, Organization: "acme", MemberNode: "gw"}
	f.Fuzz(func(t *testing.T, pick uint8, data []byte, json bool) {
		method := methods[int(pick)%len(methods)]
		req, err := newRequest(method)
		if err != nil {
			t.Fatal(err)
		}
		if json {
			err = protojson.Unmarshal(data, req)
		} else {
			err = proto.Unmarshal(data, req)
		}
		if err != nil {
			return
		}
		before := proto.Clone(req)
		if err := authorizeRequest(method, scoped, req); err != nil {
			if !proto.Equal(before, req) {
				t.Fatalf("%s: a refused request was modified", method)
			}
			return
		}
		// Allowed: every organisation field the table names is the caller's
		// own, or the field is one of several and another is.
		r := accessPolicy[method]
		if list, ok := itemList(req, r.items); ok && len(r.orgFields) == 1 {
			for i := 0; i < list.Len(); i++ {
				if v, _ := stringField(list.Get(i).Message(), r.orgFields[0], ""); v != scoped.Organization {
					t.Fatalf("%s: allowed with %s[%d].%s = %q for %s", method, r.items, i, r.orgFields[0], v, scoped.Organization)
				}
			}
		} else if len(r.orgFields) == 1 {
			if v, _ := stringField(req.ProtoReflect(), r.orgFields[0], ""); v != scoped.Organization {
				t.Fatalf("%s: allowed with %s = %q for %s", method, r.orgFields[0], v, scoped.Organization)
			}
		}
		if r.orgOf != nil {
			if _, org := r.orgOf(req); org != scoped.Organization {
				t.Fatalf("%s: allowed for organisation %q", method, org)
			}
		}
	})
}
