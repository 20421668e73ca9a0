package registry

import (
	"slices"
	"testing"
)

// The feed's hello lists exactly the methods the authorisation table lets
// a role call (public ones included), so the dashboard shows what the API
// would serve.
func TestPermittedMethodsFollowTheTable(t *testing.T) {
	for _, role := range Roles {
		got := permittedMethods(role)
		for method, r := range accessPolicy {
			want := slices.Contains(r.roles, role) || slices.Contains(r.roles, RoleNone)
			if slices.Contains(got, method) != want {
				t.Errorf("role %s, %s: listed %v, the table says %v", role, method, !want, want)
			}
		}
		if len(got) > len(accessPolicy) {
			t.Errorf("role %s: %d methods listed, the table has %d", role, len(got), len(accessPolicy))
		}
	}
}
