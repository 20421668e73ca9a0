// Package ui holds the web dashboard's files (plain HTML, CSS and
// JavaScript, no build step), embedded in the binary and served at /ui/ on
// the REST port. The page reads the REST API with the token its user logs
// in with and listens to GET /ui/events (registry.UIEvents) for changes;
// docs/dashboard.md describes the pages.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static is the dashboard's files (index.html at the root).
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic("ui: embedded files: " + err.Error()) // a constant of this package
	}
	return sub
}

// csp lets the page load only its own files and talk only to its own
// origin: no inline script, no third-party content, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the files under prefix ("/ui/").
func Handler(prefix string) http.Handler {
	fsrv := http.StripPrefix(prefix, http.FileServerFS(Static()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
