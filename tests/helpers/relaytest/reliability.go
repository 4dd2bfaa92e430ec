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
	record(t, f, "fault")
}

// record appends v as a JSON line to the EnvReliabilityOut file at the end
// of a passing test.
func record(t testing.TB, v any, what string) {
	t.Helper()
	path := os.Getenv(EnvReliabilityOut)
	if path == "" {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Errorf("record %s figures: %v", what, err)
			return
		}
		recordMu.Lock()
		defer recordMu.Unlock()
		// O_APPEND keeps lines whole when several test binaries append.
		file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("record %s figures: %v", what, err)
			return
		}
		defer file.Close()
		if _, err := file.Write(append(b, '\n')); err != nil {
			t.Errorf("record %s figures: %v", what, err)
		}
	})
}

// Saga is the figures of one chaos run of the whole system (tests/chaos),
// rendered as the saga section of docs/reliability.md.
type Saga struct {
	// Kind is "saga", telling these lines from Fault's.
	Kind   string `json:"kind"`
	Seed   int64  `json:"seed"`
	Orders int    `json:"orders"`
	// Scenarios counts the orders placed per scenario.
	Scenarios map[string]int `json:"scenarios"`
	// Outcomes counts the orders per end state.
	Outcomes map[string]int `json:"outcomes"`
	// Faults counts the faults injected per kind.
	Faults map[string]int `json:"faults"`
	// Duplicates counts, per service, the messages its inbox deduplicated.
	Duplicates map[string]int `json:"duplicates"`
	// Settle is from the end of the last fault to every order settled;
	// Slowest the longest an order took from placed to its end state.
	Settle  time.Duration `json:"settle_ns"`
	Slowest time.Duration `json:"slowest_ns"`
	// Violations of the invariants (0 in a passing run).
	Violations int `json:"violations"`
}

// RecordSaga appends s to the EnvReliabilityOut file, when set and the test passed.
func RecordSaga(t testing.TB, s Saga) {
	t.Helper()
	s.Kind = "saga"
	record(t, s, "saga")
}
