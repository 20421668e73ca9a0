package registry

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/proto/openapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRESTRouteLookup(t *testing.T) {
	routes, err := loadRESTRoutes(openapi.JSON)
	require.NoError(t, err)
	for path, want := range map[string][]string{
		"/v1/organizations":                            {"GET"},
		"/v1/organizations/acme":                       {"GET", "PATCH"},
		"/v1/organizations/acme:approve":               {"POST"}, // not GetOrganization("acme:approve")
		"/v1/organizations:register":                   {"POST"},
		"/v1/organizations/acme/member-nodes":          {"GET", "POST"},
		"/v1/organizations/acme/member-nodes/n:remove": {"POST"},
		"/v1/organizations/acme%2Fgraph":               {"GET", "PATCH"}, // one segment: an id
		"/v1/nothing":                                  nil,
	} {
		require.Equal(t, want, allowed(routes.lookup(path)), path)
	}
	rs := routes.lookup("/v1/organizations/acme/member-nodes")
	for _, r := range rs {
		params, ok := r.match(strings.Split("v1/organizations/acme/member-nodes", "/"))
		require.True(t, ok)
		field := "organization_id" // one parameter name for both methods
		require.Equal(t, []pathParam{{field: field, value: "acme"}}, params)
	}
}

// FuzzRESTChecks: the checks run before authentication on any path, query
// and body; they never panic, and refuse only with INVALID_ARGUMENT.
func FuzzRESTChecks(f *testing.F) {
	routes, err := loadRESTRoutes(openapi.JSON)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), "acme", "consistency=CONSISTENCY_STALE", []byte(`{}`))
	f.Add(uint8(7), "a%ffb", "page_token=%ff&x=1", []byte(`{"organizationId":"b"}`))
	f.Add(uint8(9), "acme%2Fgraph", "since=yesterday", []byte(`{"name": NaN}`))
	f.Fuzz(func(t *testing.T, pick uint8, id, query string, body []byte) {
		route := routes[int(pick)%len(routes)]
		var b strings.Builder
		for _, s := range route.segments {
			if strings.HasPrefix(s, "{") {
				s = id
			}
			b.WriteString("/" + s)
		}
		if route.verb != "" {
			b.WriteString(":" + route.verb)
		}
		r, err := http.NewRequest(route.method, "https://x"+b.String()+"?"+query, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		rs := routes.lookup(r.URL.EscapedPath())
		if len(rs) == 0 {
			return
		}
		for _, rt := range rs {
			if rt.method != r.Method {
				continue
			}
			if err := checkRESTRequest(rt, r); err != nil && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%s %s: %v", r.Method, r.URL, err)
			}
		}
	})
}

// BenchmarkRESTChecks is what the checks add to a REST request (route
// lookup, query parse, body decode and compare).
func BenchmarkRESTChecks(b *testing.B) {
	routes, err := loadRESTRoutes(openapi.JSON)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, method, url, body string }{
		{"get", http.MethodGet, "https://x/v1/organizations/acme-bank?consistency=CONSISTENCY_STALE", ""},
		{"patch", http.MethodPatch, "https://x/v1/organizations/acme-bank", `{"organizationId":"acme-bank","name":"Acme Bank","requestId":"r-1"}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
				rs := routes.lookup(r.URL.EscapedPath())
				i := slices.IndexFunc(rs, func(rt restRoute) bool { return rt.method == c.method })
				if err := checkRESTRequest(rs[i], r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
