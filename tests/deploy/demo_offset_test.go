package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SAGA_DEMO_PORT_OFFSET moves every port of the demo by a whole number
// below 50000, read in base 10; anything else stops demo.sh with exit 2
// before it touches anything.
func TestDemoPortOffset(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		offset    string
		wantOrder string // the order service's port in `status`; "" when refused
	}{
		{"", ":8000"},
		{"0", ":8000"},
		{"10", ":8010"},
		{"010", ":8010"},
		{"49999", ":57999"},
		{"50000", ""},
		{"-1", ""},
		{"1.5", ""},
		{"ten", ""},
		{"123456", ""},
		{" 10", ""},
	} {
		t.Run(tc.offset, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			env := append(os.Environ(), "SAGA_DEMO_DIR="+state, "SAGA_DEMO_PORT_OFFSET="+tc.offset)
			out, err := command(root, env, "bash", "deploy/local/demo.sh", "status")
			if tc.wantOrder == "" {
				if code := exitCode(err); code != 2 {
					t.Fatalf("exit %d (%v), want 2; output:\n%s", code, err, out)
				}
				if !strings.Contains(string(out), "SAGA_DEMO_PORT_OFFSET="+tc.offset+": want a whole number below 50000") {
					t.Fatalf("output does not name the offset:\n%s", out)
				}
			} else {
				// status exits 1 when something is not running: here, nothing is.
				if code := exitCode(err); code != 0 && code != 1 {
					t.Fatalf("status: %v\n%s", err, out)
				}
				line, _, _ := strings.Cut(string(out), "\n")
				if f := strings.Fields(line); len(f) < 2 || f[0] != "order" || f[1] != tc.wantOrder {
					t.Fatalf("first line %q, want order at %s", line, tc.wantOrder)
				}
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("status created the state directory %s (%v)", state, err)
			}
		})
	}
}

// exitCode is a command's exit status: 0 for nil, -1 when it did not exit.
func exitCode(err error) int {
	var exit *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
