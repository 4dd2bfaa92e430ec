package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// exposition is what /metrics shows once every metric has a value.
func exposition(t *testing.T) string {
	t.Helper()
	m := New("orders")
	m.Published("stock.v1")
	m.Confirmed(time.Millisecond, 2*time.Millisecond)
	m.Failed("unroutable")
	m.Failed("nacked")
	m.InvalidRow()
	m.Parked("poison")
	m.Positions(3, 2, 4)
	size := int64(1 << 30)
	m.SlotHealth(replication.SlotHealth{Exists: true, WALStatus: "reserved", SafeWALSize: &size, RetainedWALBytes: 10, LagBytes: 5})
	m.HeartbeatSeen(time.Now())
	m.Reconnect("broker")
	m.Ready(true)
	m.Blocked(false)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return string(b)
}

var metricName = regexp.MustCompile(`\bcdc_relay_[a-z_]+`)

// The alert rules (deploy/prometheus) and the Grafana dashboard
// (deploy/grafana) query only metrics and labels the relay exports: a
// renamed metric fails here, not in a silent panel or an alert that never
// fires.
func TestDashboardsAndRulesQueryWhatTheRelayExports(t *testing.T) {
	out := exposition(t)
	exported := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			exported[strings.Fields(name)[0]] = true
		}
	}
	require.NotEmpty(t, exported)
	root := filepath.Join("..", "..", "..")
	files := []string{filepath.Join(root, "deploy", "prometheus", "cdc-relay-rules.yaml")}
	dash, err := filepath.Glob(filepath.Join(root, "deploy", "grafana", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, dash, "no Grafana dashboard under deploy/grafana")
	files = append(files, dash...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var used []string
		for _, n := range metricName.FindAllString(string(b), -1) {
			used = append(used, n)
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && exported[b] {
					base = b
				}
			}
			assert.True(t, exported[base], "%s queries %s, which the relay does not export", filepath.Base(f), n)
		}
		sort.Strings(used)
		assert.NotEmpty(t, used, "%s queries no cdc_relay metric", f)
	}
	for _, label := range []string{`slot="orders"`, `reason="poison"`, `target="broker"`, `status="reserved"`} {
		assert.Contains(t, out, label, "a label the rules and the dashboard use")
	}
}
