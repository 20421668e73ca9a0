package registry

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// serviceName is how the docs name a gRPC service: its short name.
var serviceName = regexp.MustCompile(`\b[A-Z][A-Za-z]*Service\b`)

// The package docs and docs/api.md list the services Register registers:
// a doc that misses one, or names one that does not exist, fails. The
// client's doc lists the public ones (trustfed.v1): it never reaches the
// servers' own PeerService.
func TestDocsListTheRegisteredServices(t *testing.T) {
	gs := grpc.NewServer()
	(&Server{}).Register(gs)
	var all, public []string
	for full := range gs.GetServiceInfo() {
		short := full[strings.LastIndex(full, ".")+1:]
		all = append(all, short)
		if strings.HasPrefix(full, "trustfed.v1.") {
			public = append(public, short)
		}
	}
	slices.Sort(all)
	slices.Sort(public)
	for _, doc := range []struct {
		path string
		want []string
	}{
		{"doc.go", all},
		{"../docs/api.md", all},
		{"../client/doc.go", public},
	} {
		b, err := os.ReadFile(doc.path)
		require.NoError(t, err)
		named := serviceName.FindAllString(string(b), -1)
		slices.Sort(named)
		named = slices.Compact(named)
		assert.Equal(t, doc.want, named, "%s lists other services than the server registers", doc.path)
	}
}
