// Package proctest runs the module's commands as processes in tests, as
// users and Kubernetes do: it builds a command once per test binary and
// collects a process's output where the test can read it while it runs.
package proctest

import (
	"bytes"
	"encoding/json"
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
// writes while the test reads. The module's commands log JSON lines, and a
// test finds a value in them (the address a port-0 listener got) with Field
// or Await.
type Output struct {
	mu       sync.Mutex
	b        bytes.Buffer
	scanned  int // bytes of b whose whole lines were given to watchers
	watchers []watcher
}

type watcher struct {
	msg, key string
	ch       chan string
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.b.Write(p)
	o.notify()
	return n, err
}

// Field returns the string value of key in the first JSON log line whose
// "msg" is msg.
func (o *Output) Field(msg, key string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, line := range bytes.Split(o.b.Bytes(), []byte("\n")) {
		if v, ok := field(line, msg, key); ok {
			return v, true
		}
	}
	return "", false
}

// Await returns a channel that receives the value Field would return, once
// such a line has been written (at once if it already has).
func (o *Output) Await(msg, key string) <-chan string {
	ch := make(chan string, 1)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, line := range bytes.Split(o.b.Bytes()[:o.scanned], []byte("\n")) {
		if v, ok := field(line, msg, key); ok {
			ch <- v
			return ch
		}
	}
	o.watchers = append(o.watchers, watcher{msg: msg, key: key, ch: ch})
	o.notify()
	return ch
}

// notify hands the whole lines written since the last call to the watchers.
func (o *Output) notify() {
	end := bytes.LastIndexByte(o.b.Bytes(), '\n') + 1
	if end <= o.scanned {
		return
	}
	lines := bytes.Split(o.b.Bytes()[o.scanned:end], []byte("\n"))
	o.scanned = end
	kept := o.watchers[:0]
	for _, w := range o.watchers {
		found := false
		for _, line := range lines {
			if v, ok := field(line, w.msg, w.key); ok {
				w.ch <- v
				found = true
				break
			}
		}
		if !found {
			kept = append(kept, w)
		}
	}
	o.watchers = kept
}

func field(line []byte, msg, key string) (string, bool) {
	if !bytes.Contains(line, []byte(msg)) {
		return "", false
	}
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil || rec["msg"] != msg {
		return "", false
	}
	v, ok := rec[key].(string)
	return v, ok
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
