package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a Postgres server of the test's own: a cluster in a temporary
// directory on a free loopback port, for tests that restart, stop or
// reconfigure their server (the shared one of PostgresURL must stay up for
// the other tests). It runs as the postgres user when the test runs as root
// (Postgres refuses root). Cleanup stops it and removes its directory,
// whether the test passed or not.
type Postgres struct {
	// Port is the server's port on 127.0.0.1.
	Port int
	// Dir holds the data directory, the log and the socket.
	Dir string
	bin string
	run []string // the prefix that runs a command as the server's owner
}

// PostgresOptions configure StartPostgres.
type PostgresOptions struct {
	// Settings are extra postgresql.conf settings (name → value), on top of
	// the relay's: wal_level=logical, track_commit_timestamp=on, and room
	// for slots and WAL senders.
	Settings map[string]string
}

// StartPostgres initialises and starts a cluster of Debian's Postgres (the
// major of the machine's server) and returns it once it accepts
// connections. Under `go test -short` it skips the test.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a Postgres server; run without -short")
	}
	bin, err := debianPostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{bin: bin}
	p.Dir, err = os.MkdirTemp("", "saga-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p.Dir) })
	if err := os.Chmod(p.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if p.run, err = asPostgres(p.Dir); err != nil {
		t.Fatal(err)
	}
	p.mustRun(t, "initdb", "-D", p.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	if p.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"port":                    strconv.Itoa(p.Port),
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": p.Dir,
		"wal_level":               "logical",
		"track_commit_timestamp":  "on",
		"max_replication_slots":   "16",
		"max_wal_senders":         "16",
		"fsync":                   "off",
		"full_page_writes":        "off",
		"shared_buffers":          "32MB",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	if err := appendFile(filepath.Join(p.data(), "postgresql.conf"), conf.String()); err != nil {
		t.Fatal(err)
	}
	p.Start(t)
	t.Cleanup(func() { _ = p.ctl("stop", "-m", "immediate") })
	return p
}

func (p *Postgres) data() string { return filepath.Join(p.Dir, "data") }

// URL is the URL of database db (postgres when empty) as user postgres.
func (p *Postgres) URL(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// NewDatabase creates a database with a random name and returns its URL.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := RandomName("t_")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL(""))
	if err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return p.URL(name)
}

// Start starts the server and waits until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.mustRun(t, "pg_ctl", "-D", p.data(), "-l", filepath.Join(p.Dir, "log"), "-w", "-t", "60", "start")
}

// Stop stops the server with pg_ctl's mode: smart, fast or immediate.
func (p *Postgres) Stop(t testing.TB, mode string) {
	t.Helper()
	p.mustRun(t, "pg_ctl", "-D", p.data(), "-m", mode, "-w", "-t", "60", "stop")
}

// Restart is Stop then Start.
func (p *Postgres) Restart(t testing.TB, mode string) {
	t.Helper()
	p.Stop(t, mode)
	p.Start(t)
}

// Log is the server's log so far, for a failing test's message.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "log"))
	return string(b)
}

func (p *Postgres) ctl(args ...string) error {
	_, err := p.exec("pg_ctl", append([]string{"-D", p.data()}, args...)...)
	return err
}

func (p *Postgres) mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := p.exec(name, args...); err != nil {
		t.Fatalf("%s %s: %v\n%s\nserver log:\n%s", name, strings.Join(args, " "), err, out, tail(p.Log(), 30))
	}
}

func (p *Postgres) exec(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, p.run...), filepath.Join(p.bin, name)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// asPostgres returns the command prefix that runs the server's programs as
// the postgres user when the test runs as root, and gives that user dir.
func asPostgres(dir string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user to run a test's own Postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return []string{"runuser", "-u", "postgres", "--"}, nil
}

// debianPostgresBin finds the directory of initdb and pg_ctl of the
// machine's Postgres server.
func debianPostgresBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("initdb not found: install the Postgres server (bash deploy/local/ensure-services.sh does) to run this test")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
