// Package testenv gives integration tests of the relay and the services their
// Postgres and RabbitMQ (docs/contracts.md, "Where Postgres and RabbitMQ come
// from"), and a database, slot, exchange and queue of their own with random
// names, removed again at cleanup, so that tests run in parallel on one
// server and leave nothing behind (a forgotten replication slot holds WAL
// forever).
//
// The servers come from, in order:
//
//  1. SAGA_TEST_PG_URL and SAGA_TEST_AMQP_URL; `bash deploy/local/ensure-services.sh`
//     starts both on a Debian machine and prints the two variables. This path
//     never touches Docker.
//  2. Containers started with testcontainers-go when a Docker engine answers:
//     one Postgres and one RabbitMQ per test binary, removed by testcontainers'
//     reaper (Ryuk) when the binary exits.
//  3. Otherwise the test fails with one line that says how to provide them.
//
// Under `go test -short` every helper that needs a server skips the test, so
// -short runs the unit tests alone.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rabbitmq/amqp091-go"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcrabbitmq "github.com/testcontainers/testcontainers-go/modules/rabbitmq"

	"github.com/saga-cdc/saga/migrations"
)

// Environment variables that name the test servers.
const (
	EnvPostgresURL = "SAGA_TEST_PG_URL"
	EnvAMQPURL     = "SAGA_TEST_AMQP_URL"
)

// Container images and the server settings the relay's tests need: logical
// decoding, and room for one slot and WAL sender per parallel test.
const (
	postgresImage = "postgres:15"
	rabbitmqImage = "rabbitmq:3-management"
)

var postgresArgs = []string{
	"-c", "wal_level=logical",
	"-c", "max_replication_slots=64",
	"-c", "max_wal_senders=64",
}

// Time limits. A Docker engine that does not answer within dockerPingTimeout
// counts as absent, so a machine without one fails fast.
const (
	dockerPingTimeout     = 2 * time.Second
	containerStartTimeout = 5 * time.Minute
	connectTimeout        = 10 * time.Second
	cleanupTimeout        = 2 * time.Minute
	// slotTerminateAfter is how long a slot may stay active before its
	// walsender is terminated: after its client closed the connection, a
	// walsender takes a moment to exit and release the slot.
	slotTerminateAfter = 5 * time.Second
	pollInterval       = 50 * time.Millisecond
)

const hint = "set %s=%s or start a Docker engine; run `bash deploy/local/ensure-services.sh` on Debian"

// PostgresURL returns the URL of a Postgres server (wal_level=logical) for
// tests: SAGA_TEST_PG_URL if set; else a postgres:15 container started with
// testcontainers-go (-c wal_level=logical -c max_replication_slots=64
// -c max_wal_senders=64) when a Docker engine answers, started once per test
// binary and removed by testcontainers' reaper; else the test fails with one
// line that says how to provide one. Under `go test -short` it skips the test.
//
// The URL is of the server's maintenance database; tests should make their
// own with NewDatabase.
func PostgresURL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Postgres; run without -short")
	}
	u, err := postgres.url(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// AMQPURL returns the URL of a RabbitMQ server for tests: SAGA_TEST_AMQP_URL
// if set; else a rabbitmq:3-management container started with
// testcontainers-go when a Docker engine answers (once per test binary); else
// the test fails with one line that says how to provide one. Under
// `go test -short` it skips the test.
func AMQPURL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs RabbitMQ; run without -short")
	}
	u, err := rabbitmq.url(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// server is one kind of test server: where its URL comes from, and the
// container that stands in when the environment names none.
type server struct {
	name    string // for messages: "Postgres"
	env     string // SAGA_TEST_*
	example string // a URL for the hint

	// check tells whether the server at a URL from the environment answers
	// and is fit for the tests. A success is remembered per URL; a failure is
	// not, so a server that comes up later is found.
	check   func(ctx context.Context, rawURL string) error
	checked sync.Map // URL → struct{}

	// start runs the container; once per test binary.
	start     func(ctx context.Context) (string, error)
	startOnce sync.Once
	startURL  string
	startErr  error
}

func (s *server) url(getenv func(string) string) (string, error) {
	if u := getenv(s.env); u != "" {
		return u, s.checkURL(u)
	}
	s.startOnce.Do(func() {
		if err := dockerAvailable(); err != nil {
			s.startErr = fmt.Errorf("%s is not set and no Docker engine answers (testcontainers: %s): "+hint,
				s.env, oneLine(err), s.env, s.example)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
		defer cancel()
		s.startURL, s.startErr = s.start(ctx)
		if s.startErr != nil {
			s.startErr = fmt.Errorf("start %s container (%s is not set): %s", s.name, s.env, oneLine(s.startErr))
		}
	})
	return s.startURL, s.startErr
}

func (s *server) checkURL(rawURL string) error {
	if _, ok := s.checked.Load(rawURL); ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := s.check(ctx, rawURL); err != nil {
		return fmt.Errorf("%s=%s: %s; run `bash deploy/local/ensure-services.sh` on Debian, or unset it to use a Docker engine",
			s.env, redact(rawURL), oneLine(err))
	}
	s.checked.Store(rawURL, struct{}{})
	return nil
}

var postgres = &server{
	name:    "Postgres",
	env:     EnvPostgresURL,
	example: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	check: func(ctx context.Context, rawURL string) error {
		if err := checkPostgresURL(rawURL); err != nil {
			return err
		}
		conn, err := pgx.Connect(ctx, rawURL)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close(context.Background())
		var walLevel string
		if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
			return fmt.Errorf("show wal_level: %w", err)
		}
		if walLevel != "logical" {
			return fmt.Errorf("wal_level is %s, the relay needs logical", walLevel)
		}
		return nil
	},
	start: func(ctx context.Context) (string, error) {
		ctr, err := tcpostgres.Run(ctx, postgresImage,
			testcontainers.WithCmdArgs(postgresArgs...),
			tcpostgres.BasicWaitStrategies(),
		)
		if err != nil {
			return "", err
		}
		return ctr.ConnectionString(ctx, "sslmode=disable")
	},
}

var rabbitmq = &server{
	name:    "RabbitMQ",
	env:     EnvAMQPURL,
	example: "amqp://guest:guest@127.0.0.1:5672/",
	check: func(ctx context.Context, rawURL string) error {
		conn, err := dialAMQP(ctx, rawURL)
		if err != nil {
			return err
		}
		return conn.Close()
	},
	start: func(ctx context.Context) (string, error) {
		ctr, err := tcrabbitmq.Run(ctx, rabbitmqImage)
		if err != nil {
			return "", err
		}
		return ctr.AmqpURL(ctx)
	},
}

// dockerAvailable reports whether a Docker engine answers, once per test
// binary. testcontainers looks for the engine (DOCKER_HOST, the Docker
// context, the default and rootless sockets, ~/.testcontainers.properties)
// and calls Info on each candidate, so a client without an error means an
// engine answered. Without a socket it fails at once; the timeout bounds an
// engine that hangs.
var dockerAvailable = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), dockerPingTimeout)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	return cli.Close()
})

// NewDatabase creates a database with a random name (prefix "t_") on the
// PostgresURL server and returns its URL: the server's URL with the path
// replaced and the query kept. At cleanup, which runs whether the test passed
// or not, it drops every replication slot of the database (waiting for each to
// become inactive, as DropSlot does) and then the database WITH (FORCE).
func NewDatabase(t testing.TB) string {
	t.Helper()
	serverURL := PostgresURL(t)
	name := RandomName("t_")
	dbURL, err := databaseURL(serverURL, name)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("create database %q: connect to %s: %v", name, redact(serverURL), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %q: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := dropDatabase(ctx, serverURL, name); err != nil {
			t.Error(err)
		}
	})
	return dbURL
}

// NewOutboxDatabase is NewDatabase with the outbox table and its publication
// (migrations.Outbox) applied.
func NewOutboxDatabase(t testing.TB) string {
	t.Helper()
	dbURL := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("apply outbox migrations: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if err := migrations.Apply(ctx, conn, migrations.Outbox()); err != nil {
		t.Fatalf("apply outbox migrations: %v", err)
	}
	return dbURL
}

// DropSlot drops the replication slot named slot, connecting to the database
// at dbURL. It waits until the slot is inactive first: a walsender takes a
// moment to exit after its client closed the connection, and dropping an
// active slot fails with SQLSTATE 55006. After 5 s it terminates the
// walsender. A missing slot (or database) is not an error. Tests that create
// slots register t.Cleanup(func() { testenv.DropSlot(t, url, slot) }).
func DropSlot(t testing.TB, dbURL, slot string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if isCode(err, codeInvalidCatalogName) {
		return // the database and with it its slots are gone
	}
	if err != nil {
		t.Fatalf("drop replication slot %q: connect: %v", slot, err)
	}
	defer conn.Close(context.Background())
	if err := dropSlot(ctx, conn, slot); err != nil {
		t.Fatal(err)
	}
}

// SQLSTATE codes this package branches on.
const (
	codeObjectInUse        = "55006"
	codeUndefinedObject    = "42704"
	codeInvalidCatalogName = "3D000"
)

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// dropSlot drops slot once it is inactive; see DropSlot.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	start := time.Now()
	for {
		var activePID *int32
		err := conn.QueryRow(ctx,
			`SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&activePID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drop replication slot %q: look it up: %w", slot, err)
		}
		if activePID == nil {
			_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
			switch {
			case err == nil, isCode(err, codeUndefinedObject):
				return nil
			case !isCode(err, codeObjectInUse):
				return fmt.Errorf("drop replication slot %q: %w", slot, err)
			}
			// A walsender took the slot between the look-up and the drop.
		} else if time.Since(start) > slotTerminateAfter {
			if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, *activePID); err != nil {
				return fmt.Errorf("drop replication slot %q: terminate walsender %d: %w", slot, *activePID, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop replication slot %q: still active (pid %v): %w", slot, activePID, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// dropDatabase drops every slot of database name and then the database.
// DROP DATABASE refuses while a slot of it is active (55006), which happens
// when a relay that the test left running takes a slot again; it retries
// until ctx ends.
func dropDatabase(ctx context.Context, serverURL, name string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("drop database %q: connect to %s: %w", name, redact(serverURL), err)
	}
	defer conn.Close(context.Background())
	for {
		rows, err := conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE database = $1`, name)
		if err != nil {
			return fmt.Errorf("drop database %q: list its replication slots: %w", name, err)
		}
		slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("drop database %q: list its replication slots: %w", name, err)
		}
		for _, slot := range slots {
			if err := dropSlot(ctx, conn, slot); err != nil {
				return fmt.Errorf("drop database %q: %w", name, err)
			}
		}
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err == nil {
			return nil
		}
		if !isCode(err, codeObjectInUse) {
			return fmt.Errorf("drop database %q: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop database %q: %w (last: %w)", name, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// RandomName returns prefix followed by 10 random lowercase hex characters,
// valid unquoted as a Postgres identifier (for a prefix that is) and as an
// AMQP exchange or queue name.
func RandomName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b) // never returns an error (crypto/rand docs)
	return prefix + hex.EncodeToString(b)
}

// NewExchange declares a durable topic exchange with a random name on the
// AMQPURL server and deletes it at cleanup.
func NewExchange(t testing.TB) string {
	t.Helper()
	return NewExchangeOn(t, AMQPURL(t))
}

// NewExchangeOn is NewExchange on the broker at amqpURL.
func NewExchangeOn(t testing.TB, amqpURL string) string {
	t.Helper()
	name := RandomName("t_x_")
	err := withChannel(amqpURL, func(ch *amqp091.Channel) error {
		return ch.ExchangeDeclare(name, amqp091.ExchangeTopic, true, false, false, false, nil)
	})
	if err != nil {
		t.Fatalf("declare exchange %q: %v", name, err)
	}
	t.Cleanup(func() {
		err := withChannel(amqpURL, func(ch *amqp091.Channel) error {
			return ch.ExchangeDelete(name, false, false)
		})
		if err != nil {
			t.Errorf("delete exchange %q: %v", name, err)
		}
	})
	return name
}

// NewQueue declares a durable queue with a random name on the AMQPURL server,
// binds it to exchange with each of keys, and deletes it at cleanup.
func NewQueue(t testing.TB, exchange string, keys ...string) string {
	t.Helper()
	return NewQueueOn(t, AMQPURL(t), exchange, keys...)
}

// NewQueueOn is NewQueue on the broker at amqpURL.
func NewQueueOn(t testing.TB, amqpURL, exchange string, keys ...string) string {
	t.Helper()
	name := RandomName("t_q_")
	err := withChannel(amqpURL, func(ch *amqp091.Channel) error {
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			return err
		}
		for _, key := range keys {
			if err := ch.QueueBind(name, key, exchange, false, nil); err != nil {
				return fmt.Errorf("bind to exchange %q with key %q: %w", exchange, key, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("declare queue %q: %v", name, err)
	}
	t.Cleanup(func() {
		err := withChannel(amqpURL, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDelete(name, false, false, false)
			return err
		})
		if err != nil {
			t.Errorf("delete queue %q: %v", name, err)
		}
	})
	return name
}

// Consume returns the deliveries of queue, acknowledged automatically, on a
// connection of its own. At cleanup it closes the connection, which closes
// the channel returned.
func Consume(t testing.TB, queue string) <-chan amqp091.Delivery {
	t.Helper()
	return ConsumeOn(t, AMQPURL(t), queue)
}

// ConsumeOn is Consume on the broker at amqpURL. The consumer does not
// outlive a broker restart: its channel closes.
func ConsumeOn(t testing.TB, amqpURL, queue string) <-chan amqp091.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := dialAMQP(ctx, amqpURL)
	if err != nil {
		t.Fatalf("consume queue %q: %v", queue, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("consume queue %q: open channel: %v", queue, err)
	}
	// Consume, not ConsumeWithContext: the latter cancels the consumer when
	// its context ends, and this one ends when Consume returns.
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume queue %q: %v", queue, err)
	}
	return deliveries
}

// withChannel runs fn on a channel of a new connection, then closes both.
func withChannel(amqpURL string, fn func(ch *amqp091.Channel) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := dialAMQP(ctx, amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := fn(ch); err != nil {
		return err
	}
	return ch.Close()
}

// dialAMQP connects with a deadline: amqp091.Dial has only a fixed 30 s
// timeout per connection attempt.
func dialAMQP(ctx context.Context, amqpURL string) (*amqp091.Connection, error) {
	cfg := amqp091.Config{Locale: "en_US", Properties: amqp091.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName("saga-testenv")
	if deadline, ok := ctx.Deadline(); ok {
		cfg.Dial = amqp091.DefaultDial(time.Until(deadline))
	}
	conn, err := amqp091.DialConfig(amqpURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", redact(amqpURL), err)
	}
	return conn, nil
}

// databaseURL is serverURL with its path (the database) replaced by name.
func databaseURL(serverURL, name string) (string, error) {
	if err := checkPostgresURL(serverURL); err != nil {
		return "", fmt.Errorf("%s: %w", EnvPostgresURL, err)
	}
	u, _ := url.Parse(serverURL)
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// checkPostgresURL accepts URLs only, not key=value connection strings: the
// helpers derive a database's URL by replacing the path.
func checkPostgresURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%q is not a postgres:// URL", redact(rawURL))
	}
	return nil
}

// redact hides the password of a URL for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
