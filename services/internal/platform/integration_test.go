package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// migratedPool is a pool on a new database with the order service's schema.
func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := testenv.NewDatabase(t)
	require.NoError(t, Migrate(context.Background(), url, migrations.Order()))
	pool, err := NewPool(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

func TestHandleOutcomes(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	var calls int
	var fail error
	c := &Consumer{Pool: pool, Queue: "q", Logger: discard, Handler: func(ctx context.Context, tx pgx.Tx, d Delivery) error {
		calls++
		if _, err := tx.Exec(ctx, `INSERT INTO orders (customer_id, product_id, amount) VALUES ('c', 'p', '1')`); err != nil {
			return err
		}
		return fail
	}}
	ctx := context.Background()

	out, err := c.Handle(ctx, Delivery{MessageID: "m1", Type: "t"})
	require.NoError(t, err)
	assert.Equal(t, OutcomeAck, out)
	out, err = c.Handle(ctx, Delivery{MessageID: "m1"})
	require.NoError(t, err)
	assert.Equal(t, OutcomeDuplicate, out)
	assert.Equal(t, 1, calls)

	out, err = c.Handle(ctx, Delivery{})
	assert.Equal(t, OutcomeReject, out)
	assert.ErrorIs(t, err, ErrUnprocessable)

	// A failed handler rolls back its writes and the inbox row.
	fail = Unprocessable("unknown order 9")
	out, err = c.Handle(ctx, Delivery{MessageID: "m2"})
	assert.Equal(t, OutcomeReject, out)
	assert.EqualError(t, err, "unprocessable message: unknown order 9")
	fail = errors.New("conn reset")
	out, err = c.Handle(ctx, Delivery{MessageID: "m2"})
	assert.Equal(t, OutcomeRetry, out)
	assert.EqualError(t, err, "conn reset")
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM orders`))
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM inbox`))

	// Postgres refusing the data is permanent.
	c.Handler = func(ctx context.Context, tx pgx.Tx, d Delivery) error {
		_, err := tx.Exec(ctx, `INSERT INTO orders (customer_id, product_id, amount) VALUES ($1, 'p', '1')`, "123456789012345678901")
		return err
	}
	out, err = c.Handle(ctx, Delivery{MessageID: "m3"})
	assert.Equal(t, OutcomeReject, out)
	assert.True(t, Permanent(err))

	// A database that is gone is worth a retry.
	pool.Close()
	out, err = c.Handle(ctx, Delivery{MessageID: "m4"})
	assert.Equal(t, OutcomeRetry, out)
	assert.Error(t, err)
}

func TestRetentionPrunesOldRows(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, age := range []time.Duration{8 * 24 * time.Hour, 7*24*time.Hour + time.Minute, 6 * 24 * time.Hour, time.Minute} {
		_, err := pool.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, created_at)
			VALUES ('order', '1', 'e', 'k', '{}', $1)`, now.Add(-age))
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `INSERT INTO inbox (message_id, queue, received_at) VALUES ($1, 'q', $2)`, age.String(), now.Add(-age))
		require.NoError(t, err)
	}
	r := Retention{Pool: pool, OutboxAge: 7 * 24 * time.Hour, InboxAge: 2 * 24 * time.Hour, Interval: time.Hour,
		Logger: discard, Now: func() time.Time { return now }}
	outbox, inbox, err := r.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), outbox)
	assert.Equal(t, int64(3), inbox)
	assert.Equal(t, 2, count(t, pool, `SELECT count(*) FROM outbox`))
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM inbox`))
	outbox, inbox, err = r.Prune(ctx)
	require.NoError(t, err)
	assert.Zero(t, outbox+inbox)
}

func TestRetentionDeletesInBatches(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, created_at)
		SELECT 'order', g::text, 'e', 'k', '{}', now() - interval '30 days' FROM generate_series(1, $1) g`, retentionBatch+10)
	require.NoError(t, err)
	outbox, _, err := Retention{Pool: pool, OutboxAge: time.Hour, InboxAge: time.Hour}.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(retentionBatch+10), outbox)
}

func TestRetentionRunLogsAndStops(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	_, err := pool.Exec(context.Background(), `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, created_at)
		VALUES ('order', '1', 'e', 'k', '{}', now() - interval '8 days')`)
	require.NoError(t, err)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Retention{Pool: pool, OutboxAge: 7 * 24 * time.Hour, InboxAge: time.Hour, Interval: 10 * time.Millisecond,
			Logger: NewLogger(&logs, "info", "json")}.Run(ctx)
	}()
	require.Eventually(t, func() bool { return bytes.Contains(logs.Bytes(), []byte(`"outbox_deleted":1`)) }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestRetentionErrors(t *testing.T) {
	t.Parallel()
	url := testenv.NewDatabase(t)
	pool, err := NewPool(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	r := Retention{Pool: pool, OutboxAge: time.Hour, InboxAge: time.Hour, Interval: 10 * time.Millisecond}
	_, _, err = r.Prune(context.Background())
	assert.ErrorContains(t, err, "prune outbox: ")
	require.NoError(t, migrations.Apply(context.Background(), mustConn(t, url), migrations.Outbox()))
	_, _, err = r.Prune(context.Background())
	assert.ErrorContains(t, err, "prune inbox: ")

	var logs syncBuffer
	r.Logger = NewLogger(&logs, "info", "json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return bytes.Contains(logs.Bytes(), []byte(`prune inbox: `)) }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func mustConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestNewPoolAndMigrateErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewPool(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	assert.ErrorContains(t, err, "ping database: ")
	_, err = NewPool(ctx, "::not a url")
	assert.ErrorContains(t, err, "open database pool: ")
	err = Migrate(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", migrations.Order())
	assert.ErrorContains(t, err, "connect for migrations: ")
	url := testenv.NewDatabase(t)
	err = Migrate(ctx, url, migrations.Set{{Version: "bad/0001.sql", SQL: "SELEKT 1"}})
	assert.ErrorContains(t, err, "migrate: apply migration bad/0001.sql: ")
}

func testService() Service {
	return Service{Name: "order", DefaultAddr: ":0", Migrations: migrations.Order(), RoutingKey: RoutingKeyOrder,
		Routes:  func(*gin.Engine, Deps) {},
		Handler: func(Deps) Handler { return func(context.Context, pgx.Tx, Delivery) error { return nil } }}
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	url := testenv.NewDatabase(t)
	vars := map[string]string{"DATABASE_URL": url, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
	var out bytes.Buffer
	require.NoError(t, Run(context.Background(), testService(), []string{"order", "migrate"}, env(vars), &out))
	assert.Contains(t, out.String(), `"msg":"migrations applied"`)
	conn := mustConn(t, url)
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n))
	assert.Equal(t, len(migrations.Order()), n)

	out.Reset()
	require.NoError(t, Run(context.Background(), testService(), []string{"order", "-h"}, env(vars), &out))
	assert.Contains(t, out.String(), "usage: order [migrate]")
	assert.EqualError(t, Run(context.Background(), testService(), []string{"order", "serve"}, env(vars), &out),
		`unknown command "serve" (want none or migrate)`)
	assert.ErrorContains(t, Run(context.Background(), testService(), []string{"order", "--bogus"}, env(vars), &out),
		"flag provided but not defined")
	assert.EqualError(t, Run(context.Background(), testService(), []string{"order"}, env(map[string]string{}), &out),
		"configuration: DATABASE_URL is required")
	vars["HTTP_ADDR"] = "127.0.0.1:-1"
	assert.ErrorContains(t, Run(context.Background(), testService(), []string{"order"}, env(vars), &out), "listen on 127.0.0.1:-1: ")
	bad := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", "AMQP_URL": "amqp://x"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	assert.ErrorContains(t, Run(ctx, testService(), []string{"order"}, env(bad), &out), "connect for migrations: ")
}

// TestRunWithoutBrokerIsNotReady: the service serves HTTP and keeps
// retrying the broker; /readyz says why it is not ready.
func TestRunWithoutBrokerIsNotReady(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"DATABASE_URL": testenv.NewDatabase(t), "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "HTTP_ADDR": "127.0.0.1:0"}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, testService(), []string{"order"}, env(vars), &logs) }()
	require.Eventually(t, func() bool {
		return bytes.Contains(logs.Bytes(), []byte(`"msg":"consumer disconnected, reconnecting"`))
	}, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, logs.String(), "dial broker: ")
	cancel()
	require.NoError(t, <-done)
}

// A refused message whose dead-letter queue cannot take the copy (here it
// was never declared) is rejected instead, so the queue's dead-letter
// exchange, when it has one, still takes it; the consumer says why and goes
// on with the next message.
func TestRejectWhenTheDeadLetterQueueRefuses(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	amqpURL := testenv.AMQPURL(t)
	ex := testenv.NewExchange(t)
	q := testenv.NewQueue(t, ex, "k") // no DLQ.<q>, no dead-letter exchange
	var logs syncBuffer
	handled := make(chan string, 4)
	c := &Consumer{Pool: pool, AMQPURL: amqpURL, Queue: q, Prefetch: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Handler: func(ctx context.Context, tx pgx.Tx, d Delivery) error {
			handled <- string(d.Body)
			if string(d.Body) == "poison" {
				return Unprocessable("poison")
			}
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, c.Ready, 10*time.Second, 10*time.Millisecond)

	conn, err := amqp.Dial(amqpURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	for i, body := range []string{"poison", "good"} {
		require.NoError(t, ch.PublishWithContext(ctx, ex, "k", false, false, amqp.Publishing{MessageId: fmt.Sprint("m", i), Body: []byte(body)}))
	}
	for _, want := range []string{"poison", "good"} {
		select {
		case got := <-handled:
			assert.Equal(t, want, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not handled", want)
		}
	}
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "moving the message to its dead-letter queue failed: rejecting it")
	}, 10*time.Second, 10*time.Millisecond, logs.String())
	assert.Contains(t, logs.String(), "DLQ."+q+": returned: 312 NO_ROUTE")
	// Rejected, not requeued: nothing comes back.
	select {
	case got := <-handled:
		t.Fatalf("%s was delivered again", got)
	case <-time.After(300 * time.Millisecond):
	}
}
