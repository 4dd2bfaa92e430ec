package relaytest

import (
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"
)

// EnvReliabilityOut names the file fault tests append their figures to, one
// JSON object per line, when set: `make reliability` sets it and renders the
// lines as the fault table of docs/reliability.md (go run ./tests/reliability).
const EnvReliabilityOut = "SAGA_RELIABILITY_OUT"

// Fault is one row of the fault table: what a fault test did and measured.
type Fault struct {
	// Order sorts the rows of the table.
	Order int `json:"order"`
	// Fault names it ("broker restart mid-stream"); Setup says how the test
	// drives it.
	Fault string `json:"fault"`
	Setup string `json:"setup"`
	Figures
	// Recovery is from the fault's end (the server back, the queue bound,
	// the relay killed) to the relay streaming again; 0 when not measured.
	Recovery time.Duration `json:"recovery_ns"`
	// Bound is the duplicate bound the test asserts, in words.
	Bound string `json:"bound"`
	// Note adds what the figures do not say.
	Note string `json:"note,omitempty"`
}

var recordMu sync.Mutex

// Record appends f to the EnvReliabilityOut file, when set. A failing test
// records nothing: the table holds only figures of passing tests.
func Record(t testing.TB, f Fault) {
	t.Helper()
	path := os.Getenv(EnvReliabilityOut)
	if path == "" {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		b, err := json.Marshal(f)
		if err != nil {
			t.Errorf("record fault figures: %v", err)
			return
		}
		recordMu.Lock()
		defer recordMu.Unlock()
		// O_APPEND keeps lines whole when several test binaries append.
		file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("record fault figures: %v", err)
			return
		}
		defer file.Close()
		if _, err := file.Write(append(b, '\n')); err != nil {
			t.Errorf("record fault figures: %v", err)
		}
	})
}
