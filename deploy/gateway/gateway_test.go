package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// upstream echoes the method, path and query it received, and sets its own
// CORS header, which the gateway must replace.
func upstream(t *testing.T) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
			"xff": r.Header.Get("X-Forwarded-Host"),
		})
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newGateway(t *testing.T, cors CORS) (http.Handler, *url.URL) {
	t.Helper()
	up := upstream(t)
	down, _ := url.Parse("http://127.0.0.1:1") // nothing listens on port 1
	h, err := New(Config{
		Routes: []Route{{Prefix: "/order", Upstream: up}, {Prefix: "/stock", Upstream: down}},
		Relays: map[string]*url.URL{"order": up},
		CORS:   cors,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, up
}

func do(h http.Handler, method, target string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(""))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func body(t *testing.T, rec *httptest.ResponseRecorder) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return m
}

func TestPrefixIsStripped(t *testing.T) {
	h, _ := newGateway(t, CORS{})
	for _, tc := range []struct{ target, path string }{
		{"/order/api/v1/orders/", "/api/v1/orders/"},
		{"/order/api/v1/orders/?x=1", "/api/v1/orders/"},
		{"/order", "/"},
		{"/order/", "/"},
	} {
		rec := do(h, http.MethodGet, tc.target, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d", tc.target, rec.Code)
		}
		if got := body(t, rec)["path"]; got != tc.path {
			t.Errorf("GET %s reached upstream as %q, want %q", tc.target, got, tc.path)
		}
	}
	if got := body(t, do(h, http.MethodGet, "/order/api/v1/orders/?x=1", nil))["query"]; got != "x=1" {
		t.Errorf("query = %q, want x=1", got)
	}
}

func TestUnknownPathIsKongs404(t *testing.T) {
	h, _ := newGateway(t, CORS{})
	for _, target := range []string{"/", "/orders", "/orderx/api", "/payment/api/v1/payments/", "/relays/nope/status", "/relays/order/metrics"} {
		rec := do(h, http.MethodGet, target, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", target, rec.Code)
			continue
		}
		if m := body(t, rec); m["message"] != "no Route matched with those values" || m["request_id"] == "" {
			t.Errorf("GET %s: body %v", target, m)
		}
	}
}

func TestUpstreamDownIs502(t *testing.T) {
	h, _ := newGateway(t, CORS{})
	rec := do(h, http.MethodGet, "/stock/api/v1/stocks/", nil)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	if m := body(t, rec); !strings.Contains(m["message"], "upstream") {
		t.Errorf("body %v", m)
	}
}

func TestRelayStatus(t *testing.T) {
	h, _ := newGateway(t, CORS{})
	rec := do(h, http.MethodGet, "/relays/order/status?ignored=1", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if m := body(t, rec); m["path"] != "/status" || m["query"] != "" {
		t.Errorf("relay saw %v, want path /status without query", m)
	}
	if rec := do(h, http.MethodPost, "/relays/order/status", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", rec.Code)
	}
	rec = do(h, http.MethodGet, "/relays/", nil)
	var list []map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 1 || list[0]["status"] != "/relays/order/status" {
		t.Errorf("GET /relays/: %d %s (%v)", rec.Code, rec.Body.String(), err)
	}
}

func TestCORSPreflightLikeKong(t *testing.T) {
	h, _ := newGateway(t, KongCORS())
	rec := do(h, http.MethodOptions, "/order/api/v1/orders/", map[string]string{
		"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "content-type",
	})
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Fatalf("preflight: status %d body %q, want 200 and no body", rec.Code, rec.Body.String())
	}
	want := map[string]string{
		"Access-Control-Allow-Origin":      "http://localhost:3000",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET,POST",
		"Access-Control-Allow-Headers":     "Accept,Accept-Version,Content-Length,Content-MD5,Content-Type,Date,Idempotency-Key,X-Auth-Token",
		"Access-Control-Max-Age":           "3600",
		"Vary":                             "Origin",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// An OPTIONS without Access-Control-Request-Method is no preflight: it
	// goes to the upstream.
	rec = do(h, http.MethodOptions, "/order/api/v1/orders/", map[string]string{"Origin": "http://localhost:3000"})
	if m := body(t, rec); m["method"] != http.MethodOptions {
		t.Errorf("plain OPTIONS did not reach the upstream: %v", m)
	}
}

func TestCORSOnResponses(t *testing.T) {
	h, _ := newGateway(t, KongCORS())
	rec := do(h, http.MethodGet, "/order/api/v1/orders/", map[string]string{"Origin": "http://localhost:3000"})
	if got := rec.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "http://localhost:3000" {
		t.Errorf("Access-Control-Allow-Origin = %q, want only the request's origin", got)
	}
	if got := rec.Header().Get("Access-Control-Expose-Headers"); got != "Idempotent-Replayed,X-Auth-Token" {
		t.Errorf("Access-Control-Expose-Headers = %q", got)
	}
	rec = do(h, http.MethodGet, "/order/api/v1/orders/", nil)
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("without Origin: Access-Control-Allow-Origin = %q, want *", got)
	}
	if got := rec.Header().Get("Access-Control-Allow-Credentials"); got != "" {
		t.Errorf("without Origin: Access-Control-Allow-Credentials = %q, want none", got)
	}
	rec = do(h, http.MethodGet, "/nowhere", map[string]string{"Origin": "http://a.example"})
	if rec.Code != http.StatusNotFound || rec.Header().Get("Access-Control-Allow-Origin") != "http://a.example" {
		t.Errorf("404 without CORS headers: %d %v", rec.Code, rec.Header())
	}
	_, _ = io.Copy(io.Discard, rec.Body)
}

func TestValidate(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8000")
	for _, cfg := range []Config{
		{Routes: []Route{{Prefix: "order", Upstream: u}}},
		{Routes: []Route{{Prefix: "/order/", Upstream: u}}},
		{Routes: []Route{{Prefix: "/relays", Upstream: u}}},
		{Routes: []Route{{Prefix: "/order", Upstream: u}, {Prefix: "/order", Upstream: u}}},
		{Routes: []Route{{Prefix: "/order"}}},
		{Relays: map[string]*url.URL{"a/b": u}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func TestParseTargets(t *testing.T) {
	names, urls, err := ParseTargets(" order=http://127.0.0.1:8000 , stock=http://h:8001/,")
	if err != nil || len(names) != 2 || names[1] != "stock" || urls[0].Host != "127.0.0.1:8000" {
		t.Fatalf("got %v %v %v", names, urls, err)
	}
	for _, bad := range []string{"order", "=http://h", "order=h:8000", "order=ftp://h"} {
		if _, _, err := ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) = nil error", bad)
		}
	}
	if r := Routes(names, urls); r[0].Prefix != "/order" || r[1].Prefix != "/stock" {
		t.Errorf("Routes = %+v", r)
	}
}

func TestDashboardIsMounted(t *testing.T) {
	up := upstream(t)
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "page "+r.URL.Path)
	})
	h, err := New(Config{Routes: []Route{{Prefix: "/order", Upstream: up}}, Dashboard: page, CORS: KongCORS()})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/", "/dashboard", "/dashboard/", "/dashboard/app.js"} {
		rec := do(h, http.MethodGet, target, nil)
		if rec.Code != http.StatusOK || rec.Body.String() != "page "+target {
			t.Errorf("GET %s: %d %q, want the dashboard", target, rec.Code, rec.Body.String())
		}
	}
	// Everything else is routed as before.
	if rec := do(h, http.MethodGet, "/dashboards", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /dashboards: %d, want 404", rec.Code)
	}
	if rec := do(h, http.MethodGet, "/order/x", nil); body(t, rec)["path"] != "/x" {
		t.Errorf("GET /order/x: %s", rec.Body.String())
	}
	if _, err := New(Config{Routes: []Route{{Prefix: "/dashboard", Upstream: up}}, Dashboard: page}); err == nil {
		t.Error("a route /dashboard beside the dashboard: nil error")
	}
	if _, err := New(Config{Routes: []Route{{Prefix: "/dashboard", Upstream: up}}}); err != nil {
		t.Errorf("a route /dashboard without the dashboard: %v", err)
	}
}

// A route with KeepPath (Kong's strip_path: false) sends the path whole:
// Jaeger's UI is served under /jaeger.
func TestKeepPath(t *testing.T) {
	up := upstream(t)
	h, err := New(Config{Routes: []Route{{Prefix: "/order", Upstream: up}, {Prefix: "/jaeger", Upstream: up, KeepPath: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"/jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736": "/jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736",
		"/jaeger":                "/jaeger",
		"/order/api/v1/sagas/1/": "/api/v1/sagas/1/",
	} {
		if got := body(t, do(h, http.MethodGet, target, nil))["path"]; got != want {
			t.Errorf("GET %s reached upstream as %q, want %q", target, got, want)
		}
	}
	if rec := do(h, http.MethodGet, "/jaegerx", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /jaegerx: %d, want 404", rec.Code)
	}
}
