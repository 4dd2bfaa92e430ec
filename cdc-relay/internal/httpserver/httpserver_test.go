package httpserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
)

func TestEndpoints(t *testing.T) {
	ready := relay.Status{Name: "a", Slot: "a", Phase: relay.PhaseStreaming, Ready: true}
	standby := relay.Status{Name: "b", Slot: "b", Phase: relay.PhaseStandby, Reason: "slot is busy"}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
	tests := []struct {
		name     string
		statuses []relay.Status
		path     string
		code     int
		want     map[string]any // top-level keys and values to find
	}{
		{"live", []relay.Status{standby}, "/livez", 200, map[string]any{"status": "alive"}},
		{"one ready", []relay.Status{ready}, "/readyz", 200, map[string]any{"ready": true, "phase": "streaming"}},
		{"one standby", []relay.Status{standby}, "/readyz", 503, map[string]any{"ready": false, "phase": "standby", "reason": "slot is busy"}},
		{"one status is the relay's document", []relay.Status{ready}, "/status", 200, map[string]any{"name": "a", "ready": true}},
		{"several: ready only when all are", []relay.Status{ready, standby}, "/readyz", 503, map[string]any{"ready": false}},
		{"several all ready", []relay.Status{ready, ready}, "/readyz", 200, map[string]any{"ready": true}},
		{"several statuses", []relay.Status{ready, standby}, "/status", 200, map[string]any{"ready": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := MultiHandler(func() []relay.Status { return tt.statuses }, metrics)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			require.Equal(t, tt.code, rec.Code)
			var got map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			for k, v := range tt.want {
				assert.Equal(t, v, got[k], k)
			}
		})
	}
	h := Handler(func() relay.Status { return ready }, metrics)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, "m 1\n", rec.Body.String())
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}
