package testenv

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

func TestRandomName(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^t_[0-9a-f]{10}$`)
	seen := map[string]bool{}
	for range 10000 {
		name := RandomName("t_")
		require.Regexp(t, valid, name)
		require.False(t, seen[name], "RandomName returned %q twice", name)
		seen[name] = true
	}
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	got, err := databaseURL("postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable&application_name=x", "t_0123456789")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@127.0.0.1:5432/t_0123456789?sslmode=disable&application_name=x", got)

	got, err = databaseURL("postgresql://u@h", "t_a")
	require.NoError(t, err)
	require.Equal(t, "postgresql://u@h/t_a", got)

	_, err = databaseURL("host=127.0.0.1 user=postgres", "t_a")
	require.ErrorContains(t, err, "is not a postgres:// URL")
}

// A SAGA_TEST_PG_URL that does not answer is reported with the variable's
// name and the way to fix it, and not remembered as good.
func TestCheckURLNamesTheFix(t *testing.T) {
	t.Parallel()
	bad := "postgres://postgres:secret@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"
	for range 2 {
		err := postgres.checkURL(bad)
		require.Error(t, err)
		require.Contains(t, err.Error(), EnvPostgresURL+"=")
		require.Contains(t, err.Error(), "deploy/local/ensure-services.sh")
		require.NotContains(t, err.Error(), "secret", "the password is redacted")
		require.NotContains(t, err.Error(), "\n")
	}
}

// Without the variables and without Docker, a test fails at once with one
// line that says how to provide a server.
func TestNoServerFailsFastWithHint(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if err := dockerAvailable(); err == nil {
		t.Skip("a Docker engine answers; this test is for machines without one")
	}
	require.Less(t, time.Since(start), dockerPingTimeout, "the Docker check must fail fast")

	noEnv := func(string) string { return "" }
	for _, s := range []*server{postgres, rabbitmq} {
		_, err := s.url(noEnv)
		require.Error(t, err)
		msg := err.Error()
		require.Contains(t, msg, "set "+s.env+"="+s.example)
		require.Contains(t, msg, "start a Docker engine")
		require.Contains(t, msg, "bash deploy/local/ensure-services.sh")
		require.NotContains(t, msg, "\n")
	}
	require.Less(t, time.Since(start), dockerPingTimeout)
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	serverURL := PostgresURL(t)

	var name string
	t.Run("in use", func(t *testing.T) {
		dbURL := NewDatabase(t)
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		name = strings.TrimPrefix(u.Path, "/")
		require.Regexp(t, `^t_[0-9a-f]{10}$`, name)
		su, err := url.Parse(serverURL)
		require.NoError(t, err)
		require.Equal(t, su.Query(), u.Query(), "the query is kept")
		require.Equal(t, su.User.String(), u.User.String(), "the user is kept")
		require.Equal(t, su.Host, u.Host, "the host is kept")

		conn := connect(t, dbURL)
		var current string
		var tables int
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT current_database()`).Scan(&current))
		require.Equal(t, name, current)
		require.NoError(t, conn.QueryRow(t.Context(),
			`SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables))
		require.Zero(t, tables, "a new database is empty")
	})

	require.False(t, databaseExists(t, serverURL, name), "database %s is dropped at cleanup", name)
}

func TestNewOutboxDatabase(t *testing.T) {
	t.Parallel()
	conn := connect(t, NewOutboxDatabase(t))
	var table, publication bool
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT to_regclass('public.outbox') IS NOT NULL,
		        EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'cdc_relay_outbox' AND tablename = 'outbox')`,
	).Scan(&table, &publication))
	require.True(t, table, "outbox table")
	require.True(t, publication, "publication cdc_relay_outbox for outbox")
}

// The cleanup of NewDatabase drops a slot whose walsender is still exiting:
// the test's own cleanup closes the streaming connection just before.
func TestNewDatabaseDropsSlotJustReleased(t *testing.T) {
	t.Parallel()
	serverURL := PostgresURL(t)

	var name, slot string
	t.Run("streaming", func(t *testing.T) {
		dbURL := NewOutboxDatabase(t)
		name = databaseName(t, dbURL)
		slot = RandomName("t_slot_")
		repl := startStreaming(t, dbURL, slot)
		// Registered after NewOutboxDatabase, so it runs first: the slot's
		// connection drops, without a goodbye as when a relay is killed,
		// right before the database's cleanup.
		t.Cleanup(func() { _ = repl.Conn().Close() })
		requireSlotActive(t, dbURL, slot)
	})

	require.False(t, slotExists(t, serverURL, slot), "slot %s is dropped at cleanup", slot)
	require.False(t, databaseExists(t, serverURL, name), "database %s is dropped at cleanup", name)
}

func TestDropSlot(t *testing.T) {
	t.Parallel()
	serverURL := PostgresURL(t)
	dbURL := NewOutboxDatabase(t)

	t.Run("connection just closed", func(t *testing.T) {
		t.Parallel()
		slot := RandomName("t_slot_")
		repl := startStreaming(t, dbURL, slot)
		requireSlotActive(t, dbURL, slot)
		require.NoError(t, repl.Close(t.Context()))
		DropSlot(t, dbURL, slot)
		require.False(t, slotExists(t, serverURL, slot))
	})

	// A test that forgot to stop its stream: the walsender is terminated
	// after slotTerminateAfter and the slot dropped.
	t.Run("still streaming", func(t *testing.T) {
		t.Parallel()
		slot := RandomName("t_slot_")
		repl := startStreaming(t, dbURL, slot)
		t.Cleanup(func() { _ = repl.Close(context.Background()) })
		requireSlotActive(t, dbURL, slot)
		start := time.Now()
		DropSlot(t, dbURL, slot)
		require.GreaterOrEqual(t, time.Since(start), slotTerminateAfter)
		require.False(t, slotExists(t, serverURL, slot))
	})

	t.Run("missing slot", func(t *testing.T) {
		t.Parallel()
		DropSlot(t, dbURL, RandomName("t_slot_"))
	})

	t.Run("missing database", func(t *testing.T) {
		t.Parallel()
		gone, err := databaseURL(dbURL, RandomName("t_"))
		require.NoError(t, err)
		DropSlot(t, gone, RandomName("t_slot_"))
	})
}

func TestAMQPRoundTrip(t *testing.T) {
	t.Parallel()
	amqpURL := AMQPURL(t)

	var exchange, queue string
	var deliveries <-chan amqp091.Delivery
	t.Run("in use", func(t *testing.T) {
		exchange = NewExchange(t)
		queue = NewQueue(t, exchange, "a.*", "b.#")
		deliveries = Consume(t, queue)
		require.Regexp(t, `^t_x_[0-9a-f]{10}$`, exchange)
		require.Regexp(t, `^t_q_[0-9a-f]{10}$`, queue)

		conn, err := amqp091.Dial(amqpURL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		ch, err := conn.Channel()
		require.NoError(t, err)
		// "c" matches no binding; had it been routed it would arrive first.
		for _, key := range []string{"c", "a.x", "b.y.z"} {
			require.NoError(t, ch.PublishWithContext(t.Context(), exchange, key, false, false,
				amqp091.Publishing{MessageId: key, Body: []byte("body " + key)}))
		}
		for _, want := range []string{"a.x", "b.y.z"} {
			select {
			case d := <-deliveries:
				require.Equal(t, want, d.RoutingKey)
				require.Equal(t, want, d.MessageId)
				require.Equal(t, "body "+want, string(d.Body))
			case <-time.After(10 * time.Second):
				t.Fatalf("no delivery with key %q within 10s", want)
			}
		}
	})

	select {
	case _, open := <-deliveries:
		require.False(t, open, "no delivery is left over")
	case <-time.After(10 * time.Second):
		t.Fatal("deliveries channel not closed at cleanup")
	}
	err := withChannel(amqpURL, func(ch *amqp091.Channel) error {
		return ch.ExchangeDeclarePassive(exchange, amqp091.ExchangeTopic, true, false, false, false, nil)
	})
	requireNotFound(t, err, "exchange %s is deleted at cleanup", exchange)
	err = withChannel(amqpURL, func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err
	})
	requireNotFound(t, err, "queue %s is deleted at cleanup", queue)
}

func requireNotFound(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	var amqpErr *amqp091.Error
	require.True(t, errors.As(err, &amqpErr), msgAndArgs...)
	require.Equal(t, amqp091.NotFound, amqpErr.Code, msgAndArgs...)
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func databaseName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

func databaseExists(t *testing.T, serverURL, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, connect(t, serverURL).QueryRow(t.Context(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	return exists
}

func slotExists(t *testing.T, serverURL, slot string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, connect(t, serverURL).QueryRow(t.Context(),
		`SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot).Scan(&exists))
	return exists
}

func requireSlotActive(t *testing.T, dbURL, slot string) {
	t.Helper()
	conn := connect(t, dbURL)
	require.Eventually(t, func() bool {
		var active bool
		err := conn.QueryRow(t.Context(),
			`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return err == nil && active
	}, 10*time.Second, 20*time.Millisecond, "slot %s active", slot)
}

// startStreaming creates a pgoutput slot in the outbox database at dbURL and
// streams from it, as the relay does, on a replication connection that the
// caller closes.
func startStreaming(t *testing.T, dbURL, slot string) *pgconn.PgConn {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, u.String())
	require.NoError(t, err)
	_, err = pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		_ = conn.Close(context.Background())
		require.NoError(t, err)
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'cdc_relay_outbox'"},
	})
	if err != nil {
		_ = conn.Close(context.Background())
		require.NoError(t, err)
	}
	return conn
}
