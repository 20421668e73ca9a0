package system_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/proto/openapi"
)

// apiParam is one parameter of an OpenAPI operation.
type apiParam struct {
	Name string   `json:"name"`
	In   string   `json:"in"`
	Enum []string `json:"enum"`
}

// apiRoute is one REST route (method and path template) of the OpenAPI
// document the server serves, so that a new route is covered by every test
// below without editing them.
type apiRoute struct {
	method, path string
	params       []apiParam
}

func apiRoutes(t *testing.T) []apiRoute {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []apiParam `json:"parameters"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openapi.JSON, &doc))
	var routes []apiRoute
	for path, ops := range doc.Paths {
		for method, op := range ops {
			routes = append(routes, apiRoute{method: strings.ToUpper(method), path: path, params: op.Parameters})
		}
	}
	slices.SortFunc(routes, func(a, b apiRoute) int { return strings.Compare(a.path+" "+a.method, b.path+" "+b.method) })
	require.NotEmpty(t, routes)
	return routes
}

// fill puts values into a path template: each parameter gets its value in
// values, or def.
func (r apiRoute) fill(values map[string]string, def string) string {
	var b strings.Builder
	rest := r.path
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return b.String() + rest
		}
		j := strings.IndexByte(rest, '}')
		name := rest[i+1 : j]
		v, ok := values[name]
		if !ok {
			v = def
		}
		b.WriteString(rest[:i] + v)
		rest = rest[j+1:]
	}
}

func (r apiRoute) in(where string) []apiParam {
	var ps []apiParam
	for _, p := range r.params {
		if p.In == where {
			ps = append(ps, p)
		}
	}
	return ps
}

// snake is a parameter's proto field path ("enrolment.organizationId" →
// "enrolment.organization_id"): errors name fields by their proto names.
func snake(name string) string {
	var b strings.Builder
	for _, c := range name {
		if unicode.IsUpper(c) {
			b.WriteByte('_')
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// requireField asserts a 400 whose message and BadRequest detail name field.
func requireField(t *testing.T, a restAnswer, field, what string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, a.status, "%s: %s", what, a.raw)
	require.Contains(t, a.message, field, "%s: the message names the field", what)
	require.Contains(t, a.fields, field, "%s: a BadRequest detail names the field: %s", what, a.raw)
}

func TestRESTSurface(t *testing.T) {
	d, admin, fed := startFederation(t)
	enrol(t, admin, fed, "bank-a", 3)
	routes := apiRoutes(t)
	served := map[string][]string{} // path template, parameters unnamed ("/v1/organizations/{}") → methods
	for _, r := range routes {
		p := r.fill(nil, "{}")
		served[p] = append(served[p], r.method)
	}
	orgs := map[string]string{"organizationId": "bank-a", "enrolment.organizationId": "bank-a"}

	t.Run("invalid UTF-8 in a parameter", func(t *testing.T) {
		for _, r := range routes {
			for _, p := range r.in("path") {
				path := r.fill(map[string]string{p.Name: "a%ffb"}, "x")
				requireField(t, d.raw(t, r.method, path, "", ""), snake(p.Name), r.method+" "+path)
			}
			for _, p := range r.in("query") {
				path := r.fill(orgs, "x") + "?" + snake(p.Name) + "=a%ffb"
				requireField(t, d.raw(t, r.method, path, "", ""), snake(p.Name), r.method+" "+path)
			}
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		for path, methods := range served {
			for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
				if slices.Contains(methods, m) {
					continue
				}
				for _, id := range []string{"x", "a%ffb"} {
					url := strings.ReplaceAll(path, "{}", id)
					a := d.raw(t, m, url, "application/json", "{}")
					require.Equal(t, http.StatusMethodNotAllowed, a.status, "%s %s: %s", m, url, a.raw)
					allow := strings.Split(a.header.Get("Allow"), ", ")
					require.ElementsMatch(t, methods, allow, "%s %s: Allow", m, url)
					require.NotEmpty(t, a.message, "%s %s: the error body has the usual shape", m, url)
				}
			}
		}
	})

	t.Run("form-encoded POST to a GET-only path", func(t *testing.T) {
		for path, methods := range served {
			if !slices.Contains(methods, http.MethodGet) || slices.Contains(methods, http.MethodPost) {
				continue
			}
			url := strings.ReplaceAll(path, "{}", "bank-a")
			a := d.raw(t, http.MethodPost, url, "application/x-www-form-urlencoded", "page_size=1")
			require.Equal(t, http.StatusMethodNotAllowed, a.status, "POST %s (form): %s", url, a.raw)
		}
	})

	t.Run("encoded slash in an id", func(t *testing.T) {
		a := d.raw(t, http.MethodGet, "/v1/organizations/bank-a%2Fgraph", "", "")
		require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, a.status, "the graph endpoint answered: %s", a.raw)
		for _, r := range routes {
			for _, p := range r.in("path") {
				path := r.fill(map[string]string{p.Name: "bank-a%2Fx"}, "bank-a")
				a := d.raw(t, r.method, path, "application/json", "")
				require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, a.status, "%s %s: %s", r.method, path, a.raw)
			}
		}
	})

	t.Run("bad page token", func(t *testing.T) {
		n := 0
		for _, r := range routes {
			for _, p := range r.in("query") {
				if p.Name != "pageToken" {
					continue
				}
				n++
				path := r.fill(orgs, "x") + "?page_token=garbage"
				requireField(t, d.raw(t, r.method, path, "", ""), "page_token", r.method+" "+path)
			}
		}
		require.Greater(t, n, 5, "lists with a page token")
	})

	t.Run("unknown enum value", func(t *testing.T) {
		for _, r := range routes {
			for _, p := range r.in("query") {
				if len(p.Enum) == 0 {
					continue
				}
				path := r.fill(orgs, "x") + "?" + snake(p.Name) + "=NOT_A_VALUE"
				requireField(t, d.raw(t, r.method, path, "", ""), snake(p.Name), r.method+" "+path)
				path = r.fill(orgs, "x") + "?" + snake(p.Name) + "=9999"
				requireField(t, d.raw(t, r.method, path, "", ""), snake(p.Name), r.method+" "+path)
			}
		}
		// type is a string, but of a closed set: the audit entry types.
		requireField(t, d.raw(t, http.MethodGet, "/v1/audit/entries?type=NO_SUCH_EVENT", "", ""), "type", "audit type")
		a := d.raw(t, http.MethodGet, "/v1/audit/entries?type=REGISTER_ORGANIZATION", "", "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
	})

	t.Run("body id contradicts the path", func(t *testing.T) {
		for _, r := range routes {
			if len(r.in("body")) == 0 {
				continue
			}
			for _, p := range r.in("path") {
				// {"enrolment":{"organizationId":"bank-b"}} for enrolment.organizationId.
				var body any = "bank-b"
				parts := strings.Split(p.Name, ".")
				for i := len(parts) - 1; i >= 0; i-- {
					body = map[string]any{parts[i]: body}
				}
				b, err := json.Marshal(body)
				require.NoError(t, err)
				path := r.fill(orgs, "x")
				requireField(t, d.raw(t, r.method, path, "application/json", string(b)), snake(p.Name), r.method+" "+path+" "+string(b))
			}
		}
		a := d.raw(t, http.MethodPatch, "/v1/organizations/bank-a", "application/json", `{"organization_id":"bank-b","name":"Hijacked"}`)
		requireField(t, a, "organization_id", "PATCH bank-a as bank-b")
		status, org := d.do(t, http.MethodGet, "/v1/organizations/bank-a", d.token, nil)
		require.Equal(t, http.StatusOK, status)
		require.NotEqual(t, "Hijacked", org["organization"].(map[string]any)["name"], "nothing changed")
		status, _ = d.do(t, http.MethodGet, "/v1/organizations/bank-b", d.token, nil)
		require.Equal(t, http.StatusNotFound, status)
	})

	t.Run("query parameter contradicts the path or names no field", func(t *testing.T) {
		for _, r := range routes {
			// With a body, grpc-gateway reads no query: every parameter is refused.
			path := r.fill(orgs, "x")
			for _, p := range r.in("path") {
				for _, key := range []string{snake(p.Name), p.Name} {
					url := path + "?" + key + "=bank-b"
					requireField(t, d.raw(t, r.method, url, "", ""), key, r.method+" "+url)
				}
			}
			url := path + "?no_such_parameter=1"
			requireField(t, d.raw(t, r.method, url, "", ""), "no_such_parameter", r.method+" "+url)
		}
		// The path's own value, in either spelling, is no contradiction.
		a := d.raw(t, http.MethodGet, "/v1/organizations/bank-a?organizationId=bank-a&consistency=CONSISTENCY_STALE", "", "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
	})

	t.Run("what comes before authentication", func(t *testing.T) {
		for _, c := range []struct {
			method, path, body string
			status             int
		}{
			{http.MethodPut, "/v1/organizations/bank-a", "", http.StatusMethodNotAllowed},
			{http.MethodGet, "/v1/organizations/a%ffb", "", http.StatusBadRequest},
			{http.MethodGet, "/v1/organizations?consistency=NOT_A_VALUE", "", http.StatusBadRequest},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"name": NaN}`, http.StatusBadRequest},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"organizationId": "bank-b"}`, http.StatusBadRequest},
			{http.MethodGet, "/v1/organizations?page_token=garbage", "", http.StatusUnauthorized},
			{http.MethodGet, "/v1/audit/entries?type=NO_SUCH_EVENT", "", http.StatusUnauthorized},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"name": "n"}`, http.StatusUnauthorized},
		} {
			a := d.rawAs(t, "", c.method, c.path, "application/json", c.body)
			require.Equal(t, c.status, a.status, "%s %s %s without a token: %s", c.method, c.path, c.body, a.raw)
			t.Logf("%s %s %s → %d %s", c.method, c.path, c.body, a.status, a.message)
		}
	})

	t.Run("JSON syntax errors name the field", func(t *testing.T) {
		for _, c := range []struct{ method, path, body, field string }{
			{http.MethodPatch, "/v1/organizations/bank-a", `{"name": ["x"]}`, "name"},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"name": NaN}`, "name"},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"requestId": "r", "name": {"a": tru}}`, "name"},
			{http.MethodPatch, "/v1/organizations/bank-a", `{"bogus": 1}`, "bogus"},
			{http.MethodPost, "/v1/tokens", `{"ttl": "ten days"}`, "ttl"},
			{http.MethodPost, "/v1/tokens", `{"ttl": NaN}`, "ttl"},
			{http.MethodPost, "/v1/agreements", `{"scope": []}`, "scope"},
			{http.MethodPost, "/v1/agreements", `{"scope": {"allowedActions": "ping"}}`, "scope.allowed_actions"},
			{http.MethodPost, "/v1/agreements", `{"notAfter": "tomorrow"}`, "not_after"},
			{http.MethodPost, "/v1/agreements", `{"termination": {"minLevel": "NaN"}}`, "termination.min_level"},
			{http.MethodPost, "/v1/organizations/bank-a/member-nodes", `{"enrolment": {"publicKey": "not base64!"}}`, "enrolment.public_key"},
		} {
			requireField(t, d.raw(t, c.method, c.path, "application/json", c.body), c.field, c.method+" "+c.path+" "+c.body)
		}
		a := d.raw(t, http.MethodPatch, "/v1/organizations/bank-a", "application/json", `[]`)
		require.Equal(t, http.StatusBadRequest, a.status, a.raw)
	})
}
