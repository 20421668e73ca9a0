package server

import (
	"cmp"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo names the build of the running binary.
type BuildInfo struct {
	Version   string // injected at build time, else the VCS revision, else "dev"
	GoVersion string
	Revision  string // the VCS revision Go recorded, or "unknown"
}

// ReadBuildInfo returns the build of this binary; version and revision are
// what the build injected with -ldflags -X ("" when it set none: then the
// VCS revision Go recorded, if any).
func ReadBuildInfo(version, revision string) BuildInfo {
	b := BuildInfo{Version: version, GoVersion: runtime.Version(), Revision: cmp.Or(revision, "unknown")}
	if info, ok := debug.ReadBuildInfo(); ok && revision == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" && b.Revision != "unknown" {
		b.Version = b.Revision
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// exportBuildInfo publishes trustfed_build_info{version,goversion,revision} 1.
func exportBuildInfo(reg prometheus.Registerer, version, revision string) error {
	b := ReadBuildInfo(version, revision)
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "trustfed_build_info",
		Help:        "The running build: version, Go version and VCS revision (always 1).",
		ConstLabels: prometheus.Labels{"version": b.Version, "goversion": b.GoVersion, "revision": b.Revision},
	})
	g.Set(1)
	return reg.Register(g)
}
