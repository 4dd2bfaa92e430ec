// Package httpserver serves the relay's health, readiness, status and
// metrics endpoints (docs/contracts.md, "Observability").
package httpserver

import (
	"encoding/json"
	"net/http"

	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
)

// Handler routes /livez, /readyz, /status and /metrics for the relay whose
// status is given (the sidecar mode).
func Handler(status func() relay.Status, metrics http.Handler) http.Handler {
	return MultiHandler(func() []relay.Status { return []relay.Status{status()} }, metrics)
}

// MultiHandler serves several relays of one process (the config-file mode).
// /readyz is ready when every relay is; /status is the one relay's document
// when there is one, else {"ready": ..., "relays": [...]}.
func MultiHandler(statuses func() []relay.Status, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		all := statuses()
		code := http.StatusOK
		if !allReady(all) {
			code = http.StatusServiceUnavailable
		}
		if len(all) == 1 {
			st := all[0]
			writeJSON(w, code, readiness{Ready: st.Ready, Phase: st.Phase, Reason: st.Reason, LastError: st.LastError})
			return
		}
		out := map[string]readiness{}
		for _, st := range all {
			out[st.Name] = readiness{Ready: st.Ready, Phase: st.Phase, Reason: st.Reason, LastError: st.LastError}
		}
		writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "relays": out})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		all := statuses()
		if len(all) == 1 {
			writeJSON(w, http.StatusOK, all[0])
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": allReady(all), "relays": all})
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}

type readiness struct {
	Ready     bool        `json:"ready"`
	Phase     relay.Phase `json:"phase"`
	Reason    string      `json:"reason"`
	LastError string      `json:"last_error"`
}

func allReady(all []relay.Status) bool {
	for _, st := range all {
		if !st.Ready {
			return false
		}
	}
	return len(all) > 0
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
