package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// profile drains a batched backlog again with the pprof variant of the
// relay and takes a CPU profile over most of the drain; `go tool pprof -top`
// of it goes into the report.
func (h *Harness) profile(tb testing.TB) {
	ctx := h.ctx(tb)
	slot := testenv.RandomName("bench_relay_")
	db := outboxDB(tb, slot)
	n := h.Cfg.Backlog
	if err := writeBulk(ctx, db, 1, n, h.Cfg.BulkTxn); err != nil {
		tb.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	// Profile for 80% of the drain the measured step took.
	secs := max(1, int(0.8*h.Res.DrainBatched.Elapsed.Seconds()))
	var (
		prof []byte
		err2 error
	)
	h.drain(tb, ctx, db, slot, n, h.BinPprof, []string{"CDC_RELAY_BENCH_PPROF_ADDR=" + addr}, func(*relayProc) func() {
		got := make(chan struct{})
		go func() {
			defer close(got)
			prof, err2 = fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
		}()
		return func() { <-got } // the relay stays up until the profile is in
	})
	if err2 != nil {
		tb.Fatalf("cpu profile: %v", err2)
	}
	if err := os.WriteFile(h.ProfileTo, prof, 0o644); err != nil {
		tb.Fatalf("write cpu profile: %v", err)
	}
	var top strings.Builder
	for _, args := range [][]string{{"-top", "-nodecount=25"}, {"-top", "-cum", "-nodecount=40"}} {
		out, err := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, args...), h.BinPprof, h.ProfileTo)...).CombinedOutput()
		if err != nil {
			tb.Fatalf("go tool pprof %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		fmt.Fprintf(&top, "$ go tool pprof %s cdc-relay %s\n%s\n", strings.Join(args, " "), h.ProfileTo, out)
	}
	h.mu.Lock()
	h.Res.Profile = top.String()
	h.mu.Unlock()
}

func fetch(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s: %s", u, resp.Status, b)
	}
	return b, nil
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
