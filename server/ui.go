package server

import (
	"net/http"

	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/server/ui"
)

// registerUI serves the web dashboard on the REST port: its embedded files
// at /ui/, its live feed at /ui/events, and / redirects to it. The returned
// function ends every live feed (run it when the HTTP server shuts down).
func registerUI(mux *http.ServeMux, reg *registry.Server) (stop func()) {
	events := reg.UIEvents()
	mux.Handle("GET /ui/events", events)
	mux.Handle("GET /ui/", ui.Handler("/ui/"))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	return events.Close
}
