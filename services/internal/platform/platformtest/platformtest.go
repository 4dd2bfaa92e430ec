// Package platformtest runs a saga service in-process for integration
// tests, on a database, exchange and queues of its own (tests/helpers/testenv), and
// plays the relay's part by publishing messages straight to RabbitMQ.
package platformtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/event"
	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/tests/helpers/proctest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// RunFunc is a service's run function (cmd/<name>.run).
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Env is the environment of one service under test: a fresh database, a
// random exchange and a random queue prefix. Its queues and DLQs are
// deleted at cleanup.
type Env struct {
	Vars map[string]string
}

// NewEnv makes the environment for a service; exchange may be "" for a new one.
func NewEnv(t testing.TB, exchange string) Env {
	t.Helper()
	amqpURL := testenv.AMQPURL(t)
	if exchange == "" {
		exchange = testenv.NewExchange(t)
	}
	prefix := testenv.RandomName("t_") + "."
	t.Cleanup(func() { DeleteQueues(t, amqpURL, prefix) })
	return Env{Vars: map[string]string{
		"DATABASE_URL":       testenv.NewDatabase(t),
		"AMQP_URL":           amqpURL,
		"HTTP_ADDR":          "127.0.0.1:0",
		"SAGA_EXCHANGE":      exchange,
		"SAGA_QUEUE_PREFIX":  prefix,
		"LOG_LEVEL":          "debug",
		"RETENTION_INTERVAL": "1h",
	}}
}

// Queue is the name of the queue consuming routingKey in this environment.
func (e Env) Queue(routingKey string) string { return e.Vars["SAGA_QUEUE_PREFIX"] + routingKey }

// DeleteQueues deletes the three queues and their DLQs under prefix.
func DeleteQueues(t testing.TB, amqpURL, prefix string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Errorf("delete queues %s*: %v", prefix, err)
		return
	}
	defer conn.Close()
	for _, key := range []string{platform.RoutingKeyOrder, platform.RoutingKeyStock, platform.RoutingKeyPayment} {
		for _, q := range []string{prefix + key, platform.DLQ(prefix + key)} {
			ch, err := conn.Channel()
			if err != nil {
				t.Errorf("delete queue %s: %v", q, err)
				return
			}
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
			_ = ch.Close()
		}
	}
}

// Service is a running service.
type Service struct {
	// URL is the base URL of its HTTP API, "http://127.0.0.1:port".
	URL string
	Env Env
	log *proctest.Output
}

// Logs returns what the service logged so far.
func (s *Service) Logs() string { return s.log.String() }

// Start runs the service in a goroutine and waits until /readyz answers 200.
// At cleanup it cancels the service's context and requires a clean return.
func Start(t testing.TB, run RunFunc, env Env) *Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &proctest.Output{}
	listening := logs.Await("http server listening", "addr")
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"service"}, func(k string) string { return env.Vars[k] }, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("service returned: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("service did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	var addr string
	select {
	case addr = <-listening:
	case err := <-done:
		t.Fatalf("service stopped at start: %v\n%s", err, logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("service did not listen within 90s\n%s", logs.String())
	}
	s := &Service{URL: "http://" + addr, Env: env, log: logs}
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "service not ready")
	return s
}

// Message is a message to publish as the relay would.
type Message struct {
	// ID is the message_id and dop-msg-id; "" means a new UUID.
	ID string
	// NoMessageID leaves the message_id property empty (dop-msg-id only).
	NoMessageID bool
	// NoIDs leaves out both the message_id property and dop-msg-id.
	NoIDs      bool
	RoutingKey string
	Type       string
	Body       string
}

// Publish publishes m to exchange as cdc-relay would, and returns its id.
func Publish(t testing.TB, amqpURL, exchange string, m Message) string {
	t.Helper()
	if m.ID == "" {
		m.ID = platform.NewUUID()
	}
	conn, err := amqp.Dial(amqpURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	msgID := m.ID
	if m.NoMessageID || m.NoIDs {
		msgID = ""
	}
	headers := amqp.Table{
		event.HeaderDopMsgID:          m.ID,
		event.HeaderDopMsgDestination: "/exchange/" + exchange + "/" + m.RoutingKey,
		event.HeaderDopMsgType:        event.DopMsgTypePublished,
	}
	if m.NoIDs {
		delete(headers, event.HeaderDopMsgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.RoutingKey, true, false, amqp.Publishing{
		MessageId:    msgID,
		Type:         m.Type,
		ContentType:  event.ContentType,
		DeliveryMode: amqp.Persistent,
		Headers:      headers,
		Body:         []byte(m.Body),
	})
	require.NoError(t, err)
	ok, err := conf.WaitContext(ctx)
	require.NoError(t, err)
	require.True(t, ok, "broker nacked the message")
	return m.ID
}

// Conn connects to a database for assertions, closed at cleanup.
func Conn(t testing.TB, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Count returns SELECT count(*) FROM table [WHERE where].
func Count(t testing.TB, conn *pgx.Conn, table, where string, args ...any) int {
	t.Helper()
	q := "SELECT count(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), q, args...).Scan(&n))
	return n
}

// OutboxRow is an outbox row as tests check it.
type OutboxRow struct {
	ID, AggregateType, AggregateID, EventType, RoutingKey string
	Payload                                               map[string]any
	Headers                                               map[string]string
}

// Outbox returns the outbox rows in insertion order.
func Outbox(t testing.TB, conn *pgx.Conn) []OutboxRow {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT id::text, aggregate_type, aggregate_id, event_type,
		routing_key, payload, headers FROM outbox ORDER BY created_at, routing_key DESC`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxRow, error) {
		var o OutboxRow
		err := r.Scan(&o.ID, &o.AggregateType, &o.AggregateID, &o.EventType, &o.RoutingKey, &o.Payload, &o.Headers)
		return o, err
	})
	require.NoError(t, err)
	return out
}

// Do sends a request to s and returns the status and body.
func (s *Service) Do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

// DLQMessages drains what is in queue's DLQ within wait and returns the bodies.
func DLQMessages(t testing.TB, amqpURL, queue string, want int, wait time.Duration) []string {
	t.Helper()
	var bodies []string
	for _, d := range DLQDeliveries(t, amqpURL, queue, want, wait) {
		bodies = append(bodies, string(d.Body))
	}
	return bodies
}

// DLQDeliveries is DLQMessages with the whole deliveries: their headers
// say why each was refused.
func DLQDeliveries(t testing.TB, amqpURL, queue string, want int, wait time.Duration) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	var got []amqp.Delivery
	require.Eventually(t, func() bool {
		for {
			d, ok, err := ch.Get(platform.DLQ(queue), true)
			if err != nil || !ok {
				break
			}
			got = append(got, d)
		}
		return len(got) >= want
	}, wait, 20*time.Millisecond, fmt.Sprintf("want %d messages in %s", want, platform.DLQ(queue)))
	return got
}
