package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// newmanVersion is installed from the npm registry into .cache/newman when
// no newman is on PATH.
const newmanVersion = "6.2.2"

// newmanBinary finds newman ($SAGA_NEWMAN, PATH, .cache/newman), else
// installs it there with npm.
func newmanBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SAGA_NEWMAN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("newman"); err == nil {
		return p
	}
	prefix := filepath.Join(repoRoot(t), ".cache", "newman")
	bin := filepath.Join(prefix, "node_modules", ".bin", "newman")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("newman not found: npm install newman@%s into %s", newmanVersion, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", prefix, "newman@"+newmanVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install newman@%s: %v\n%s", newmanVersion, err, out)
	}
	return bin
}

// runCollection runs docs/saga.postman_collection.json with newman against
// the gateway at base: every request's pm.test assertions must pass, and
// there must be some (a collection without them checks nothing).
func runCollection(t *testing.T, base string) {
	t.Helper()
	newman := newmanBinary(t)
	report := filepath.Join(t.TempDir(), "newman.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, newman, "run", filepath.Join(repoRoot(t), "docs", "saga.postman_collection.json"),
		"--env-var", "baseUrl="+base, "--delay-request", "250", "--timeout-request", "10000",
		"--reporters", "cli,json", "--reporter-json-export", report, "--disable-unicode", "--color", "off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("newman run docs/saga.postman_collection.json: %v\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Run struct {
			Stats struct {
				Assertions struct{ Total, Failed int } `json:"assertions"`
				Requests   struct{ Total, Failed int } `json:"requests"`
			} `json:"stats"`
		} `json:"run"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("newman's report: %v", err)
	}
	a := r.Run.Stats.Assertions
	if a.Failed > 0 || a.Total < 15 {
		t.Errorf("newman: %d assertions, %d failed (want at least 15, none failed)\n%s", a.Total, a.Failed, out)
	}
	t.Logf("newman: %d requests, %d assertions, all passed", r.Run.Stats.Requests.Total, a.Total)
}
