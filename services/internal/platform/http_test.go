package platform

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testRouter(ready error) *gin.Engine {
	r := NewRouter(discard)
	Health(r, func(context.Context) error { return ready })
	r.GET("/api/v1/things/", List(func(context.Context) ([]string, error) { return nil, nil }, discard))
	r.GET("/api/v1/broken/", List(func(context.Context) ([]string, error) { return nil, errors.New("db down") }, discard))
	r.GET("/api/v1/panic/", func(*gin.Context) { panic("boom") })
	r.POST("/api/v1/echo/", func(c *gin.Context) {
		obj, err := ReadObject(c.Request)
		var bad *BadRequest
		if errors.As(err, &bad) {
			c.JSON(http.StatusBadRequest, bad.Body)
			return
		}
		c.JSON(http.StatusOK, obj)
	})
	return r
}

func TestRouter(t *testing.T) {
	r := testRouter(nil)
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/things/", "", 200, `[]`},
		{"HEAD", "/api/v1/things/", "", 405, `{"detail":"Method \"HEAD\" not allowed."}`},
		{"POST", "/api/v1/things/", "", 405, `{"detail":"Method \"POST\" not allowed."}`},
		{"GET", "/api/v1/things", "", 301, "/api/v1/things/"},
		{"POST", "/api/v1/things", "", 307, "/api/v1/things/"},
		{"DELETE", "/api/v1/things?a=b", "", 307, "/api/v1/things/?a=b"},
		{"GET", "/nowhere", "", 404, `{"detail":"Not found."}`},
		{"GET", "/api/v1/broken/", "", 500, `{"detail":"A server error occurred."}`},
		{"GET", "/api/v1/panic/", "", 500, `{"detail":"A server error occurred."}`},
		{"GET", "/livez", "", 200, `{"status":"ok"}`},
		{"GET", "/readyz", "", 200, `{"status":"ok"}`},
		{"POST", "/api/v1/echo/", `{"a": 1}`, 200, `{"a":1}`},
		{"POST", "/api/v1/echo/", "  ", 200, `{}`},
		{"POST", "/api/v1/echo/", `{"a": 1} x`, 400, `{"detail":"JSON parse error - extra data after the JSON value"}`},
		{"POST", "/api/v1/echo/", `{"a": `, 400, `{"detail":"JSON parse error - unexpected EOF"}`},
		{"POST", "/api/v1/echo/", `"s"`, 400, `{"non_field_errors":["Invalid data. Expected a dictionary, but got str."]}`},
		{"POST", "/api/v1/echo/", `1.5`, 400, `{"non_field_errors":["Invalid data. Expected a dictionary, but got float."]}`},
		{"POST", "/api/v1/echo/", `2`, 400, `{"non_field_errors":["Invalid data. Expected a dictionary, but got int."]}`},
		{"POST", "/api/v1/echo/", `true`, 400, `{"non_field_errors":["Invalid data. Expected a dictionary, but got bool."]}`},
		{"POST", "/api/v1/echo/", `null`, 400, `{"non_field_errors":["No data provided"]}`},
		{"POST", "/api/v1/echo/", `{"a":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 400, `{"detail":"Request body is larger than 1 MiB."}`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			r.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			require.Equal(t, tc.code, w.Code, w.Body.String())
			if tc.code/100 == 3 {
				assert.Equal(t, tc.want, w.Header().Get("Location"))
				return
			}
			assert.JSONEq(t, tc.want, w.Body.String())
		})
	}
}

func TestRedirectKeepsTheGatewayPrefix(t *testing.T) {
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/things", nil)
	req.Header.Set("X-Forwarded-Prefix", "/stock")
	testRouter(nil).ServeHTTP(w, req)
	assert.Equal(t, 301, w.Code)
	assert.Equal(t, "/stock/api/v1/things/", w.Header().Get("Location"))
}

func TestReadyzNotReady(t *testing.T) {
	w := httptest.NewRecorder()
	testRouter(errors.New("consumer is not connected to the broker")).ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	assert.Equal(t, 503, w.Code)
	assert.JSONEq(t, `{"status":"unavailable","reason":"consumer is not connected to the broker"}`, w.Body.String())
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadObjectUnreadableBody(t *testing.T) {
	_, err := ReadObject(httptest.NewRequest("POST", "/", failingReader{}))
	var bad *BadRequest
	require.ErrorAs(t, err, &bad)
	assert.Equal(t, map[string]string{"detail": "Request body could not be read."}, bad.Body)
	assert.Contains(t, bad.Error(), "bad request")
}

func TestServeShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, testRouter(nil), time.Second) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/livez")
	require.NoError(t, err)
	_ = resp.Body.Close()
	cancel()
	require.NoError(t, <-done)
}

func TestServeReturnsListenerErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = Serve(context.Background(), ln, testRouter(nil), time.Second)
	assert.ErrorContains(t, err, "serve http: ")
}

func TestServeHardStopsAfterTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	started := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(2 * time.Second)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, slow, 50*time.Millisecond) }()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-started
	cancel()
	assert.ErrorContains(t, <-done, "shut down http server: ")
}

// FuzzReadObject: every handler reads its body through ReadObject; any
// body gives a JSON object or a *BadRequest (a 400 with a detail), never a
// panic nor another error.
func FuzzReadObject(f *testing.F) {
	for _, s := range []string{`{"product_id": "p1", "quantity": 1}`, ``, `   `, `[]`, `null`, `{} {}`, `{"a":`, "\xff", `{"a": 1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := ReadObject(httptest.NewRequest("POST", "/", bytes.NewReader(body)))
		if err != nil {
			var bad *BadRequest
			if !errors.As(err, &bad) {
				t.Fatalf("%q: %T %v, want a *BadRequest", body, err, err)
			}
			return
		}
		if obj == nil {
			t.Fatalf("%q: no object and no error", body)
		}
	})
}
