package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Processes are the system's processes, in deploy/local/demo.sh's names.
var (
	Services  = []string{"order", "stock", "payment"}
	Relays    = []string{"relay-order", "relay-stock", "relay-payment"}
	Processes = append(append(append([]string{}, Services...), Relays...), "gateway")
)

// Demo is the system run by deploy/local/demo.sh as processes, on the
// test's own Postgres and RabbitMQ, in a state directory of its own and on
// ports of its own (SAGA_DEMO_PORT_OFFSET), so it shares nothing with a
// demo a user runs, nor with other tests.
type Demo struct {
	Root, Dir, Name string
	// Host is the address the processes listen on (SAGA_DEMO_HOST).
	Host   string
	Offset int
	env    []string
}

// Demo's base ports (deploy/local/demo.sh); the demo adds Offset.
const (
	gatewayPort = 8080
	firstPort   = 8000
)

// NewDemo prepares a demo on pgURL and amqpURL whose processes listen on
// host; extra environment lines (SAGA_DEMO_AMQP_URL_RELAY_STOCK, say) are
// passed to demo.sh.
func NewDemo(t *testing.T, root, host, pgURL, amqpURL string, extra ...string) *Demo {
	t.Helper()
	d := &Demo{Root: root, Host: host, Name: fmt.Sprintf("chaos%d", time.Now().UnixNano()%1_000_000)}
	d.Dir = t.TempDir()
	d.Offset = freeOffset(t, host)
	d.env = append([]string{
		"SAGA_DEMO_DIR=" + d.Dir,
		"SAGA_DEMO_NAME=" + d.Name,
		"SAGA_DEMO_PG_URL=" + pgURL,
		"SAGA_DEMO_AMQP_URL=" + amqpURL,
		"SAGA_DEMO_PORT_OFFSET=" + strconv.Itoa(d.Offset),
		"SAGA_DEMO_HOST=" + host,
	}, extra...)
	t.Cleanup(func() {
		if out, err := d.run(context.Background(), "down"); err != nil {
			t.Logf("demo.sh down: %v\n%s", err, out)
		}
	})
	return d
}

// freeOffset finds an offset at which every port of the demo is free.
func freeOffset(t *testing.T, host string) int {
	t.Helper()
	ports := []int{8000, 8001, 8002, 8080, 9401, 9402, 9403}
	for try := 0; try < 50; try++ {
		// Below the ephemeral range (32768 and up), where the system's own
		// outgoing connections could take a port before a process binds it.
		offset := 10000 + (int(time.Now().UnixNano()/1000)+try*731)%13000
		free := true
		for _, p := range ports {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p+offset)))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return offset
		}
	}
	t.Fatal("no free range of ports for the demo")
	return 0
}

// GatewayURL is the demo's gateway.
func (d *Demo) GatewayURL() string { return fmt.Sprintf("http://%s:%d", d.Host, gatewayPort+d.Offset) }

// Up runs demo.sh up: it starts what does not run and leaves the rest.
func (d *Demo) Up(ctx context.Context) error {
	out, err := d.run(ctx, "up")
	if err != nil {
		return fmt.Errorf("demo.sh up: %w\n%s", err, tailLines(out, 30))
	}
	return nil
}

func (d *Demo) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(d.Root, "deploy", "local", "demo.sh")}, args...)...)
	cmd.Env = append(os.Environ(), d.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Pid is the pid of a running process, 0 when it does not run.
func (d *Demo) Pid(name string) int {
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", name+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Signal sends sig to process name.
func (d *Demo) Signal(name string, sig syscall.Signal) error {
	pid := d.Pid(name)
	if pid == 0 {
		return fmt.Errorf("%s does not run", name)
	}
	return syscall.Kill(pid, sig)
}

// WaitGone waits until process pid has exited.
func WaitGone(pid int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still runs after %s", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Log is a process's log so far.
func (d *Demo) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "log", name+".log"))
	return string(b)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
