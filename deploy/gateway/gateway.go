// Package gateway is the demo's API gateway for machines without Docker: a
// small reverse proxy that serves the three saga services under /order,
// /stock and /payment the way the demo's Kong does (docs/contracts.md, "HTTP
// contract"), and each relay's /status under /relays/<name>/status, and the
// saga dashboard page (package deploy/dashboard) at /dashboard/, with /
// redirecting to it.
//
// It copies the behaviour of the Kong configuration deploy/kong/kong.yaml
// (the original demo's, docs/origin.md):
//
//   - routes are path prefixes and the prefix is stripped (Kong's default
//     strip_path: true): GET /order/api/v1/orders/ reaches the order service
//     as GET /api/v1/orders/;
//   - the global cors plugin with origins "*", credentials true, methods
//     GET and POST, max_age 3600 (see cors.go);
//   - a path no route matches gets Kong's 404 body, and an upstream that does
//     not answer gets Kong's 502 body.
//
// One difference is deliberate: Kong's prefix /order also matches
// /orders-archive; here a prefix matches only itself or itself followed by
// a slash.
package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Route sends requests under Prefix to Upstream with the prefix stripped.
type Route struct {
	// Prefix is the path prefix, "/order"; it starts with a slash and has
	// none at its end.
	Prefix string
	// Upstream is the base URL requests are sent to, "http://127.0.0.1:8000".
	Upstream *url.URL
	// KeepPath sends the path as it came, prefix included (Kong's
	// strip_path: false): for an upstream served under that prefix, as
	// Jaeger's UI under /jaeger.
	KeepPath bool
}

// Config is what the gateway serves.
type Config struct {
	// Routes are the API routes, Kong's services.
	Routes []Route
	// Relays maps a relay's name ("order") to the base URL of its HTTP
	// server ("http://127.0.0.1:9401"); GET /relays/<name>/status is proxied
	// to <base>/status, and GET /relays/ lists the names.
	Relays map[string]*url.URL
	// CORS is the cors plugin's configuration; the zero value turns CORS off.
	CORS CORS
	// Dashboard, when set, serves "/", "/dashboard" and everything below
	// "/dashboard/" (the dashboard page, dashboard.Handler); nil leaves
	// those paths to the 404.
	Dashboard http.Handler
	// Logger gets one line per request at debug level and upstream errors at
	// warn level.
	Logger *slog.Logger
}

// Validate names the first bad field.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, r := range c.Routes {
		if !strings.HasPrefix(r.Prefix, "/") || len(r.Prefix) < 2 || strings.HasSuffix(r.Prefix, "/") {
			return fmt.Errorf("route prefix %q: want a path like /order, without a trailing slash", r.Prefix)
		}
		if r.Prefix == relaysPrefix || strings.HasPrefix(r.Prefix, relaysPrefix+"/") {
			return fmt.Errorf("route prefix %q: %s is reserved for the relays' status", r.Prefix, relaysPrefix)
		}
		if c.Dashboard != nil && (r.Prefix == dashboardPrefix || strings.HasPrefix(r.Prefix, dashboardPrefix+"/")) {
			return fmt.Errorf("route prefix %q: %s is reserved for the dashboard", r.Prefix, dashboardPrefix)
		}
		if seen[r.Prefix] {
			return fmt.Errorf("route prefix %q is listed twice", r.Prefix)
		}
		seen[r.Prefix] = true
		if err := checkUpstream(r.Upstream); err != nil {
			return fmt.Errorf("route %s: %w", r.Prefix, err)
		}
	}
	for name, u := range c.Relays {
		if name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("relay name %q: want a single path segment", name)
		}
		if err := checkUpstream(u); err != nil {
			return fmt.Errorf("relay %s: %w", name, err)
		}
	}
	return nil
}

func checkUpstream(u *url.URL) error {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("upstream must be an http:// or https:// URL with a host")
	}
	return nil
}

const (
	relaysPrefix    = "/relays"
	dashboardPrefix = "/dashboard"
)

// New returns the gateway's handler.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &gateway{cors: cfg.CORS, logger: logger, relays: map[string]*httputil.ReverseProxy{}, dashboard: cfg.Dashboard}
	for _, r := range cfg.Routes {
		g.routes = append(g.routes, route{prefix: r.Prefix, keep: r.KeepPath, proxy: g.proxy(r.Upstream, "")})
	}
	// Longest prefix first, so that /order/admin would win over /order.
	sort.Slice(g.routes, func(i, j int) bool { return len(g.routes[i].prefix) > len(g.routes[j].prefix) })
	for name, u := range cfg.Relays {
		g.relays[name] = g.proxy(u, "/status")
		g.relayNames = append(g.relayNames, name)
	}
	sort.Strings(g.relayNames)
	return g, nil
}

type route struct {
	prefix string
	keep   bool
	proxy  *httputil.ReverseProxy
}

type gateway struct {
	routes     []route
	relays     map[string]*httputil.ReverseProxy
	relayNames []string
	dashboard  http.Handler
	cors       CORS
	logger     *slog.Logger
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		g.logger.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rw.status,
			"duration_ms", time.Since(start).Milliseconds())
	}()

	// Kong's cors plugin answers a preflight itself, before routing, and adds
	// its headers to every other response (also to the 404 of an unknown
	// path), so this is done first for every request.
	if g.cors.enabled() {
		if g.cors.preflight(rw, r) {
			return
		}
		g.cors.decorate(rw.Header(), r)
	}

	path := r.URL.Path
	if rest, ok := matchPrefix(path, relaysPrefix); ok {
		g.serveRelay(rw, r, rest)
		return
	}
	if g.dashboard != nil {
		if _, ok := matchPrefix(path, dashboardPrefix); ok || path == "/" {
			g.dashboard.ServeHTTP(rw, r)
			return
		}
	}
	for _, rt := range g.routes {
		rest, ok := matchPrefix(path, rt.prefix)
		if !ok {
			continue
		}
		if rt.keep {
			rt.proxy.ServeHTTP(rw, r)
			return
		}
		out := r.Clone(r.Context())
		out.URL.Path = rest
		out.URL.RawPath = ""
		if r.URL.RawPath != "" {
			if raw, ok := matchPrefix(r.URL.RawPath, rt.prefix); ok {
				out.URL.RawPath = raw
			}
		}
		rt.proxy.ServeHTTP(rw, out)
		return
	}
	writeKongError(rw, http.StatusNotFound, "no Route matched with those values")
}

// serveRelay serves GET /relays/ (the names) and GET /relays/<name>/status.
func (g *gateway) serveRelay(w http.ResponseWriter, r *http.Request, rest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeKongError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	if rest == "/" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		list := make([]map[string]string, 0, len(g.relayNames))
		for _, name := range g.relayNames {
			list = append(list, map[string]string{"name": name, "status": relaysPrefix + "/" + name + "/status"})
		}
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	name, tail, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	proxy, ok := g.relays[name]
	if !ok || tail != "status" {
		writeKongError(w, http.StatusNotFound, "no Route matched with those values")
		return
	}
	out := r.Clone(r.Context())
	out.URL.Path = ""
	out.URL.RawPath = ""
	out.URL.RawQuery = ""
	proxy.ServeHTTP(w, out)
}

// matchPrefix reports whether path is prefix or lies below it, and returns
// the rest with a leading slash ("/" when path is the prefix itself, as
// Kong's strip_path does).
func matchPrefix(path, prefix string) (string, bool) {
	if path == prefix {
		return "/", true
	}
	if strings.HasPrefix(path, prefix+"/") {
		return path[len(prefix):], true
	}
	return "", false
}

// proxy returns a reverse proxy to upstream. The request's path (already
// stripped of its route prefix) is appended to upstream's path; a non-empty
// fixed path replaces it.
func (g *gateway) proxy(upstream *url.URL, fixed string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			if fixed != "" {
				pr.Out.URL.Path = fixed
			}
			// SetURL also sends the upstream's own Host, like Kong's
			// default preserve_host: false.
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			// The upstream's own CORS headers would clash with ours.
			if g.cors.enabled() {
				for _, h := range corsResponseHeaders {
					resp.Header.Del(h)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.logger.Warn("upstream error", "method", r.Method, "upstream", upstream.String(), "error", err)
			writeKongError(w, http.StatusBadGateway, "An invalid response was received from the upstream server")
		},
	}
}

// writeKongError writes Kong's error body: {"message": ..., "request_id": ...}.
func writeKongError(w http.ResponseWriter, status int, message string) {
	id := requestID()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Request-Id", id)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": message, "request_id": id})
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
