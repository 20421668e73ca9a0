package registry

import (
	"net/http"
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
		field := map[string]string{"GET": "organization_id", "POST": "enrolment.organization_id"}[r.method]
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
