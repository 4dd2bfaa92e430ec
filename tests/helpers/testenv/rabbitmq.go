package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RabbitMQ is a RabbitMQ node of the test's own, from the machine's
// installation, with its own node name, ports and data directory: for tests
// that restart the broker or raise its alarms (the shared broker of AMQPURL
// must stay up and unblocked for the other tests). When the test runs as
// root it runs as the rabbitmq user, as Debian's scripts do. Cleanup stops
// it and removes its directory, whether the test passed or not.
type RabbitMQ struct {
	// Node is the Erlang node name, for rabbitmqctl -n.
	Node string
	// Port is the AMQP port and ManagementPort the HTTP API's, on 127.0.0.1.
	Port, ManagementPort int
	Dir                  string
	run                  []string
}

// rabbitmqStartTimeout bounds a node's start (about 10 s here).
const rabbitmqStartTimeout = 90 * time.Second

// StartRabbitMQ starts a node with the management plugin and returns it once
// it accepts connections. Under `go test -short` it skips the test.
func StartRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a RabbitMQ node; run without -short")
	}
	server := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(server); err != nil {
		if server, err = exec.LookPath("rabbitmq-server"); err != nil {
			t.Fatal("rabbitmq-server not found: install RabbitMQ (bash deploy/local/ensure-services.sh does) to run this test")
		}
	}
	b := &RabbitMQ{Node: RandomName("t_") + "@localhost"}
	var err error
	if b.Dir, err = os.MkdirTemp("", "saga-rabbitmq-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b.Dir) })
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			t.Fatal(err)
		}
	}
	b.Port, b.ManagementPort = ports[0], ports[1]
	conf := fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\nmanagement.tcp.port = %d\nmanagement.tcp.ip = 127.0.0.1\nloopback_users = none\n", b.Port, b.ManagementPort)
	for name, text := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[rabbitmq_management].\n"} {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home := os.Getenv("HOME")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("rabbitmq")
		if err != nil {
			t.Fatalf("running as root needs the rabbitmq user to run a test's own node: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := chownAll(b.Dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		b.run, home = []string{"runuser", "-u", "rabbitmq", "--"}, u.HomeDir
	}
	env := []string{
		"HOME=" + home,
		"RABBITMQ_NODENAME=" + b.Node,
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(ports[2]),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(b.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(b.Dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(b.Dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(b.Dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE=" + filepath.Join(b.Dir, "pid"),
	}
	argv := append(append(append([]string{}, b.run...), "env"), append(env, server, "-detached")...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = b.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start RabbitMQ node %s: %v\n%s", b.Node, err, out)
	}
	t.Cleanup(func() { _, _ = b.Ctl("stop") })
	b.awaitStartup(t)
	return b
}

// URL is the node's AMQP URL (guest/guest).
func (b *RabbitMQ) URL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", b.Port) }

// ManagementURL is the node's HTTP API.
func (b *RabbitMQ) ManagementURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", b.ManagementPort)
}

// Ctl runs rabbitmqctl on the node and returns its output.
func (b *RabbitMQ) Ctl(args ...string) (string, error) {
	argv := append(append(append([]string{}, b.run...), "rabbitmqctl", "-n", b.Node), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustCtl is Ctl that fails the test on an error.
func (b *RabbitMQ) MustCtl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := b.Ctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// StopApp stops the broker application in place (connections drop, the
// node stays up): a broker restart's first half.
func (b *RabbitMQ) StopApp(t testing.TB) {
	t.Helper()
	b.MustCtl(t, "stop_app")
}

// StartApp starts the broker application again and waits until it accepts
// connections.
func (b *RabbitMQ) StartApp(t testing.TB) {
	t.Helper()
	b.MustCtl(t, "start_app")
	b.awaitStartup(t)
}

func (b *RabbitMQ) awaitStartup(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(rabbitmqStartTimeout)
	for {
		_, err := b.Ctl("await_startup", "--timeout", "10")
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			conn, derr := dialAMQP(ctx, b.URL())
			cancel()
			if derr == nil {
				_ = conn.Close()
				return
			}
			err = derr
		}
		if time.Now().After(deadline) {
			logs, _ := filepath.Glob(filepath.Join(b.Dir, "log", "*.log"))
			var text string
			for _, l := range logs {
				c, _ := os.ReadFile(l)
				text += tail(string(c), 20)
			}
			t.Fatalf("RabbitMQ node %s did not start within %s: %v\n%s", b.Node, rabbitmqStartTimeout, err, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func chownAll(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}
