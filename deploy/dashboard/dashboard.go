// Package dashboard serves the saga dashboard (docs/dashboard.md): one page,
// with its script and styles embedded with embed.FS, that places orders
// through the API and shows each order joined with its reservation and
// payment, the stock, and each cdc-relay's /status, polling every 500 ms like
// the original demo's Next.js dashboard did (docs/origin.md). No Node build
// step: the files in static/ are what the browser gets.
//
// The page talks only to the gateway's paths on its own origin
// (/order/..., /stock/..., /payment/..., /relays/<name>/status), so the
// same handler works behind the local demo's gateway (which mounts it) and
// behind Kong (compose and Helm run cmd/dashboard as its own container).
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is where the page lives; "/" and "/dashboard" redirect to it.
const Prefix = "/dashboard/"

const bare = "/dashboard"

// Files are the page's files (index.html, app.js, app.css).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// static is embedded at build time; a missing folder is a build bug.
		panic(err)
	}
	return sub
}

// Handler serves the page under /dashboard/, redirects /dashboard and / to
// it, and answers 404 elsewhere. A gateway mounts it for exactly those
// paths (see Owns).
func Handler() http.Handler {
	files := http.StripPrefix(bare, http.FileServerFS(Files()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch p := r.URL.Path; {
		case p == "/" || p == bare:
			// Keep the query: ?api=... points the page at another API.
			target := Prefix
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusFound)
		case strings.HasPrefix(p, Prefix):
			h := w.Header()
			// The files change with the binary, which has no modification
			// time to offer: make the browser ask again each time.
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			// Everything comes from this origin; connect-src also allows
			// http: and https:, for ?api= pointing at another gateway.
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "+
				"connect-src 'self' http: https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// Owns reports whether path belongs to the dashboard: "/" (the redirect),
// "/dashboard" and everything below "/dashboard/".
func Owns(path string) bool {
	return path == "/" || path == bare || strings.HasPrefix(path, Prefix)
}
