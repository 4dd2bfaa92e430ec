package deploy

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// promtoolVersion is the Prometheus release whose promtool checks the rules
// (built with go install when none is found).
const promtoolVersion = "v0.316.0"

// The relay's alert rules are what Prometheus accepts (promtool check
// rules), and each alert fires on the series that should fire it and not on
// a healthy relay (promtool test rules); the compose demo's Prometheus
// config is one Prometheus loads (promtool check config). The metric names they use are
// checked against the relay's exports in cdc-relay/internal/metrics.
func TestPrometheusRules(t *testing.T) {
	promtool := toolBinary(t, "promtool", "SAGA_PROMTOOL", "github.com/prometheus/prometheus/cmd/promtool", promtoolVersion)
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "cdc-relay-rules.yaml"},
		{"test", "rules", "cdc-relay-rules.test.yaml"},
		// The compose demo's Prometheus (its observability profile); this
		// checks the rule files it names too.
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		t.Logf("promtool %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
}
