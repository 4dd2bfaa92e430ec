package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		location     string
		contains     string
		contentType  string
	}{
		{"GET", "/", http.StatusFound, "/dashboard/", "", ""},
		{"GET", "/?api=http://127.0.0.1:8080", http.StatusFound, "/dashboard/?api=http://127.0.0.1:8080", "", ""},
		{"GET", "/dashboard", http.StatusFound, "/dashboard/", "", ""},
		{"GET", "/dashboard/", http.StatusOK, "", `id="scenario-confirmed"`, "text/html"},
		{"HEAD", "/dashboard/", http.StatusOK, "", "", "text/html"},
		{"GET", "/dashboard/app.js", http.StatusOK, "", "/relays/", "text/javascript"},
		{"GET", "/dashboard/app.css", http.StatusOK, "", ".pill", "text/css"},
		{"GET", "/dashboard/missing.js", http.StatusNotFound, "", "", ""},
		{"GET", "/elsewhere", http.StatusNotFound, "", "", ""},
		{"POST", "/dashboard/", http.StatusMethodNotAllowed, "", "", ""},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
			continue
		}
		if got := res.Header.Get("Location"); got != tc.location {
			t.Errorf("%s %s: Location %q, want %q", tc.method, tc.path, got, tc.location)
		}
		if tc.contains != "" && !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.contains)
		}
		if ct := res.Header.Get("Content-Type"); tc.contentType != "" && !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.contentType)
		}
		if tc.status == http.StatusOK && res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s %s: no Content-Security-Policy", tc.method, tc.path)
		}
	}
}

func TestOwns(t *testing.T) {
	for path, want := range map[string]bool{
		"/": true, "/dashboard": true, "/dashboard/": true, "/dashboard/app.js": true,
		"/dashboards": false, "/order/": false, "/relays/": false, "": false,
	} {
		if got := Owns(path); got != want {
			t.Errorf("Owns(%q) = %v, want %v", path, got, want)
		}
	}
}

// The page uses only the gateway's paths, which the gateway, Kong (compose)
// and the HTTPRoutes (Helm) all serve.
func TestPageUsesTheGatewayPaths(t *testing.T) {
	b, err := io.ReadAll(mustOpen(t, "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/order/api/v1/orders/", "/stock/api/v1/reservations/", "/stock/api/v1/stocks/",
		"/payment/api/v1/payments/", "'/relays/' + name + '/status'", "'/api/v1/sagas/'"} {
		if !strings.Contains(string(b), p) {
			t.Errorf("app.js does not use %s", p)
		}
	}
}

func mustOpen(t *testing.T, name string) io.Reader {
	t.Helper()
	f, err := Files().Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
