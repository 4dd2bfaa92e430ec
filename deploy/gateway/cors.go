package gateway

import (
	"net/http"
	"strconv"
	"strings"
)

// CORS is the configuration of Kong's cors plugin, which the demo's Kong
// enables globally; KongCORS returns the demo's values. Only the allow-all
// origin ("*" or no origins) is supported: it is all the demo uses.
type CORS struct {
	// Methods answer a preflight's Access-Control-Allow-Methods.
	Methods []string
	// Headers answer a preflight's Access-Control-Allow-Headers; when empty,
	// the request's Access-Control-Request-Headers are echoed.
	Headers []string
	// ExposedHeaders go into Access-Control-Expose-Headers.
	ExposedHeaders []string
	// Credentials allows credentials: the request's Origin is echoed instead
	// of "*", which browsers refuse together with credentials.
	Credentials bool
	// MaxAge is the preflight's Access-Control-Max-Age in seconds; 0 omits it.
	MaxAge int
	// Enabled turns the plugin on.
	Enabled bool
}

// KongCORS is the global cors plugin of the demo's Kong (deploy/kong/kong.yaml).
func KongCORS() CORS {
	return CORS{
		Enabled:        true,
		Methods:        []string{"GET", "POST"},
		Headers:        []string{"Accept", "Accept-Version", "Content-Length", "Content-MD5", "Content-Type", "Date", "Idempotency-Key", "X-Auth-Token"},
		ExposedHeaders: []string{"Idempotent-Replayed", "X-Auth-Token"},
		Credentials:    true,
		MaxAge:         3600,
	}
}

// corsResponseHeaders are removed from upstream responses so that only the
// gateway's own values reach the client.
var corsResponseHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age",
}

func (c CORS) enabled() bool { return c.Enabled }

// preflight answers a CORS preflight the way Kong's cors plugin does with
// preflight_continue false (kong/plugins/cors/handler.lua, access phase): an
// OPTIONS request with Origin and Access-Control-Request-Method gets 200 and
// no body, and never reaches the upstream. It reports whether it answered.
func (c CORS) preflight(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if r.Method != http.MethodOptions || origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h := w.Header()
	c.origin(h, origin)
	if len(c.Headers) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(c.Headers, ","))
	} else if acrh := r.Header.Get("Access-Control-Request-Headers"); acrh != "" {
		h.Set("Access-Control-Allow-Headers", acrh)
	}
	methods := "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
	if len(c.Methods) > 0 {
		methods = strings.Join(c.Methods, ",")
	}
	h.Set("Access-Control-Allow-Methods", methods)
	if c.MaxAge > 0 {
		h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return true
}

// decorate adds the headers of Kong's header_filter phase to a response
// that is not a preflight. Kong 3's allow_origin_absent defaults to true, so
// a request without Origin gets them too (with "*").
func (c CORS) decorate(h http.Header, r *http.Request) {
	c.origin(h, r.Header.Get("Origin"))
	if len(c.ExposedHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposedHeaders, ","))
	}
}

// origin sets Access-Control-Allow-Origin: "*", or with credentials the
// request's own origin, varying on it.
func (c CORS) origin(h http.Header, origin string) {
	if c.Credentials && origin != "" {
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		return
	}
	h.Set("Access-Control-Allow-Origin", "*")
}
