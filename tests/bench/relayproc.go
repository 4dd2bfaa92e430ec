package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/saga-cdc/saga/tests/helpers/proctest"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (see proc(5)).
const clockTicks = 100

// Build compiles cdc-relay into dir and returns the binary's path. With
// pprofOverlay, the binary also serves net/http/pprof on
// $CDC_RELAY_BENCH_PPROF_ADDR: testdata/pprof.go is added to its main
// package with `go build -overlay`, so no relay source changes.
func Build(ctx context.Context, dir string, pprofOverlay bool) (string, error) {
	bin := filepath.Join(dir, "cdc-relay")
	args := []string{"build", "-o", bin}
	if pprofOverlay {
		bin += "-pprof"
		args[2] = bin
		overlay, err := writeOverlay(dir)
		if err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	args = append(args, "github.com/saga-cdc/saga/cdc-relay/cmd/cdc-relay")
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// writeOverlay writes the overlay file that places testdata/pprof.go in the
// relay's main package.
func writeOverlay(dir string) (string, error) {
	src, err := filepath.Abs(filepath.Join("testdata", "pprof.go"))
	if err != nil {
		return "", fmt.Errorf("find testdata/pprof.go: %w", err)
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/saga-cdc/saga/cdc-relay/cmd/cdc-relay").Output()
	if err != nil {
		return "", fmt.Errorf("find the relay's main package: %w", err)
	}
	target := filepath.Join(strings.TrimSpace(string(out)), "zz_bench_pprof.go")
	b, err := json.Marshal(map[string]map[string]string{"Replace": {target: src}})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write overlay: %w", err)
	}
	return path, nil
}

// relayProc is a running cdc-relay.
type relayProc struct {
	cmd  *exec.Cmd
	out  *proctest.Output
	done chan struct{}
	addr string // HTTP address it listens on
}

// relaySettings are the CDC_RELAY_* settings of a benchmark relay.
type relaySettings struct {
	dbURL, amqpURL, slot, exchange string
	window                         int
	heartbeat                      time.Duration
	extraEnv                       []string
}

// startRelay runs the relay binary and waits until /readyz answers 200.
// It is stopped with SIGTERM (then killed) at cleanup if still running.
func startRelay(tb testing.TB, bin string, s relaySettings) *relayProc {
	tb.Helper()
	cmd := exec.Command(bin, "run")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"CDC_RELAY_DATABASE_URL=" + s.dbURL,
		"CDC_RELAY_AMQP_URL=" + s.amqpURL,
		"CDC_RELAY_SLOT=" + s.slot,
		"CDC_RELAY_EXCHANGE=" + s.exchange,
		"CDC_RELAY_HTTP_ADDR=127.0.0.1:0",
		"CDC_RELAY_MAX_IN_FLIGHT=" + strconv.Itoa(s.window),
		"CDC_RELAY_HEARTBEAT_INTERVAL=" + s.heartbeat.String(),
	}, s.extraEnv...)
	p := &relayProc{cmd: cmd, out: &proctest.Output{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start cdc-relay: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("cdc-relay output:\n%s", p.out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.ready(ctx); err != nil {
		tb.Fatalf("cdc-relay: %v; output:\n%s", err, p.out.String())
	}
	return p
}

// ready waits for the "http listening" log line, then for /readyz to answer 200.
func (p *relayProc) ready(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.cmd.ProcessState)
		case <-tick.C:
		}
		if p.addr == "" {
			p.addr, _ = p.out.Field("http listening", "addr")
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("readyz request: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
}

// stop sends SIGTERM and waits for the exit, killing after 20 s.
func (p *relayProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procStats is what /proc says of a process.
type procStats struct {
	CPU   time.Duration // utime + stime
	HWMKB int64         // VmHWM: peak resident set size
}

// runTime is the sum of the run times, in nanoseconds, that
// /proc/<pid>/task/*/schedstat gives for the process's live threads (the
// first field; see the kernel's Documentation/scheduler/sched-stats.rst).
func runTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("/proc/%d/task: no schedstat", pid)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited since the glob
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: empty", t)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: run time %q: %w", t, f[0], err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// stats reads /proc/<pid>/stat and /proc/<pid>/status of the relay.
func (p *relayProc) stats() (procStats, error) { return readProc(p.cmd.Process.Pid) }

func readProc(pid int) (procStats, error) {
	var s procStats
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: fields count from after its ')'.
	rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(rest) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(rest))
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(rest[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, rest[11], rest[12])
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	// utime and stime are each cut down to whole ticks, so a short drain
	// can read 0: the threads' run times in nanoseconds are exact, and used
	// whenever the kernel gives them, so that both readings of a delta come
	// from one source. (A thread that exited is missing from them; the Go
	// runtime's and the broker's scheduler threads live as long as their
	// process.)
	if exact, err := runTime(pid); err == nil && exact > 0 {
		s.CPU = exact
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read /proc/%d/status: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) > 0 {
				s.HWMKB, err = strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return s, fmt.Errorf("/proc/%d/status: VmHWM %q: %w", pid, v, err)
				}
			}
		}
	}
	return s, nil
}
