// Package relay_test drives the cdc-relay binary as users and Kubernetes do:
// a real process, configured by environment, killed with signals.
package relay_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/proctest"
)

var relayBin string

func TestMain(m *testing.M) {
	os.Exit(proctest.Main(m, "github.com/saga-cdc/saga/cdc-relay/cmd/cdc-relay", &relayBin))
}

// proc is a running cdc-relay.
type proc struct {
	cmd  *exec.Cmd
	out  *proctest.Output
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// relayEnv is the environment of a relay on the test's database and exchange.
func relayEnv(dbURL, amqpURL, slot, exchange string, extra ...string) []string {
	return append([]string{
		"CDC_RELAY_DATABASE_URL=" + dbURL,
		"CDC_RELAY_AMQP_URL=" + amqpURL,
		"CDC_RELAY_SLOT=" + slot,
		"CDC_RELAY_EXCHANGE=" + exchange,
		"CDC_RELAY_HTTP_ADDR=127.0.0.1:0",
		"CDC_RELAY_HEARTBEAT_INTERVAL=1s",
	}, extra...)
}

// start runs cdc-relay with args and env (and nothing of the test's own
// environment but PATH and HOME). It is killed at cleanup if still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(relayBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p := &proc{cmd: cmd, out: &proctest.Output{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("cdc-relay output:\n%s", p.out.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("cdc-relay still running after %s; output:\n%s", within, p.out.String())
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// addr is the address the relay's HTTP server listens on, from its log.
func (p *proc) addr(t *testing.T) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		var ok bool
		addr, ok = p.out.Field("http listening", "addr")
		return ok
	}, 10*time.Second, 10*time.Millisecond, "no 'http listening' line; output:\n%s", p.out.String())
	return addr
}

// get fetches path from the relay's HTTP server.
func (p *proc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr(t)+path, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, _ := p.get(t, "/readyz")
		return code == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "relay never ready; output:\n%s", p.out.String())
}
