// Package proctest runs the module's commands as processes in tests, as
// users and Kubernetes do: it builds a command once per test binary and
// collects a process's output where the test can read it while it runs.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Main builds the main package pkg into a temporary directory, sets *bin to
// its path, runs the tests and removes the directory; TestMain returns it
// to os.Exit.
func Main(m *testing.M, pkg string, bin *string) int {
	dir, err := os.MkdirTemp("", "proctest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest: make temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-o", *bin, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "proctest: build %s: %v\n", pkg, err)
		return 1
	}
	return m.Run()
}

// Output collects what a process writes; the process's copying goroutine
// writes while the test reads.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
