package mgmt

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetAlternateExchangeAndReadItBack(t *testing.T) {
	var put struct {
		path, user, pw string
		body           map[string]any
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		switch {
		case r.Method == http.MethodPut:
			put.path, put.user, put.pw = r.URL.EscapedPath(), u, p
			b, _ := io.ReadAll(r.Body)
			require.NoError(t, json.Unmarshal(b, &put.body))
			w.WriteHeader(http.StatusCreated)
		case r.URL.EscapedPath() == "/api/exchanges/%2F/saga":
			w.Write([]byte(`{"name": "saga", "arguments": {}, "effective_policy_definition": {"alternate-exchange": "saga.unroutable"}}`))
		case r.URL.EscapedPath() == "/api/exchanges/%2F/declared":
			w.Write([]byte(`{"name": "declared", "arguments": {"alternate-exchange": "by.argument"}}`))
		case r.URL.EscapedPath() == "/api/exchanges/%2F/plain":
			w.Write([]byte(`{"name": "plain", "arguments": {}}`))
		default:
			http.Error(w, `{"error":"Object Not Found","reason":"Not Found"}`, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := New(srv.URL, "admin", "pw")
	ctx := context.Background()

	require.NoError(t, c.SetAlternateExchange(ctx, "/", "saga.v1", "saga.v1.unroutable"))
	assert.Equal(t, "/api/policies/%2F/cdc-relay-unroutable-saga.v1", put.path)
	assert.Equal(t, "admin", put.user)
	assert.Equal(t, "pw", put.pw)
	assert.Equal(t, `^saga\.v1$`, put.body["pattern"], "matches that exchange alone")
	assert.Equal(t, "exchanges", put.body["apply-to"])
	assert.Equal(t, map[string]any{"alternate-exchange": "saga.v1.unroutable"}, put.body["definition"])

	for x, want := range map[string]string{"saga": "saga.unroutable", "declared": "by.argument", "plain": ""} {
		got, err := c.AlternateExchange(ctx, "/", x)
		require.NoError(t, err)
		assert.Equal(t, want, got, x)
	}
	_, err := c.AlternateExchange(ctx, "/", "missing")
	require.ErrorContains(t, err, "404 Not Found")
	require.ErrorContains(t, New("http://127.0.0.1:1", "u", "p").SetAlternateExchange(ctx, "/", "x", "y"), "RabbitMQ HTTP API")
}
