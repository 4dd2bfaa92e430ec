package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unprocessable", Unprocessable("x"), true},
		{"wrapped unprocessable", fmt.Errorf("a: %w", Unprocessable("x")), true},
		{"value too long", &pgconn.PgError{Code: "22001"}, true},
		{"check violation", fmt.Errorf("update: %w", &pgconn.PgError{Code: "23514"}), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, false},
		{"undefined table", &pgconn.PgError{Code: "42P01"}, false},
		{"connection", errors.New("dial tcp: connection refused"), false},
		{"context", context.DeadlineExceeded, false},
	} {
		assert.Equal(t, tc.want, Permanent(tc.err), tc.name)
	}
}

func TestUnreachable(t *testing.T) {
	assert.True(t, unreachable(errors.New("dial tcp: connection refused")))
	assert.True(t, unreachable(&pgconn.PgError{Code: "57P03"}))
	assert.False(t, unreachable(&pgconn.PgError{Code: "42601"}))
}

func TestMessageID(t *testing.T) {
	assert.Equal(t, "p", MessageID("p", amqp.Table{"dop-msg-id": "h"}))
	assert.Equal(t, "h", MessageID("", amqp.Table{"dop-msg-id": "h"}))
	assert.Equal(t, "b", MessageID("", amqp.Table{"dop-msg-id": []byte("b")}))
	assert.Equal(t, "", MessageID("", amqp.Table{"dop-msg-id": int32(5)}))
	assert.Equal(t, "", MessageID("", nil))
}

func TestBackoffGrowsWithJitterAndResets(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 400*time.Millisecond)
	for _, ceiling := range []time.Duration{100, 200, 400, 400} {
		d := b.next()
		assert.GreaterOrEqual(t, d, ceiling*time.Millisecond/2)
		assert.LessOrEqual(t, d, ceiling*time.Millisecond)
	}
	b.reset()
	assert.LessOrEqual(t, b.next(), 100*time.Millisecond)
}

func TestSleep(t *testing.T) {
	assert.True(t, sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.False(t, sleep(ctx, time.Hour))
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewUUID()
		assert.Regexp(t, re, id)
		assert.False(t, seen[id])
		seen[id] = true
	}
}

type fakeExec struct {
	sql  string
	args []any
	err  error
}

func (f *fakeExec) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	f.sql, f.args = sql, args
	return pgconn.CommandTag{}, f.err
}

func TestOutboxWriter(t *testing.T) {
	w := OutboxWriter{Exchange: "saga", Now: func() time.Time { return time.Date(2026, 11, 25, 8, 45, 23, 870_123_000, time.UTC) }}
	f := &fakeExec{}
	id, err := w.Write(context.Background(), f, Message{AggregateType: "order", AggregateID: "1",
		EventType: "order.status_changed", RoutingKey: "stock.v1", Payload: map[string]int{"order_id": 1}})
	require.NoError(t, err)
	require.Len(t, f.args, 7)
	assert.Equal(t, []any{id, "order", "1", "order.status_changed", "stock.v1"}, f.args[:5])
	assert.JSONEq(t, `{"order_id":1}`, string(f.args[5].([]byte)))
	var headers map[string]string
	require.NoError(t, json.Unmarshal(f.args[6].([]byte), &headers))
	assert.Equal(t, map[string]string{
		"dop-msg-id": id, "dop-msg-destination": "/exchange/saga/stock.v1",
		"dop-msg-type": "Published", "dop-msg-sent-time": "2026-11-25T08:45:23.870Z",
	}, headers)
}

func TestOutboxWriterErrors(t *testing.T) {
	w := OutboxWriter{Exchange: "saga"}
	_, err := w.Write(context.Background(), &fakeExec{}, Message{EventType: "e", Payload: func() {}})
	assert.ErrorContains(t, err, "encode e payload: ")
	_, err = w.Write(context.Background(), &fakeExec{err: errors.New("conn closed")}, Message{EventType: "e", RoutingKey: "k", Payload: 1})
	assert.EqualError(t, err, "insert outbox row e to k: conn closed")
}

type fakeDeclarer struct {
	calls  []string
	failOn string
}

func (f *fakeDeclarer) record(call string) error {
	f.calls = append(f.calls, call)
	if call == f.failOn {
		return errors.New("406 PRECONDITION_FAILED")
	}
	return nil
}

func (f *fakeDeclarer) ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error {
	return f.record(fmt.Sprintf("exchange %s %s durable=%v", name, kind, durable))
}

func (f *fakeDeclarer) QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error) {
	call := fmt.Sprintf("queue %s durable=%v dlx=%q dlrk=%s", name, durable, args["x-dead-letter-exchange"], args["x-dead-letter-routing-key"])
	if qt, ok := args["x-queue-type"]; ok {
		call += fmt.Sprintf(" type=%s strategy=%s overflow=%s", qt, args["x-dead-letter-strategy"], args["x-overflow"])
	}
	return amqp.Queue{}, f.record(call)
}

func (f *fakeDeclarer) QueueBind(name, key, exchange string, noWait bool, args amqp.Table) error {
	return f.record(fmt.Sprintf("bind %s %s %s", name, key, exchange))
}

func TestTopologyDeclare(t *testing.T) {
	f := &fakeDeclarer{}
	require.NoError(t, Topology{Exchange: "saga"}.Declare(context.Background(), f))
	assert.Equal(t, []string{
		"exchange saga topic durable=true",
		`queue DLQ.order.v1 durable=true dlx="" dlrk=DLQ.DLQ.order.v1`,
		`queue order.v1 durable=true dlx="" dlrk=DLQ.order.v1`,
		"bind order.v1 order.v1 saga",
		`queue DLQ.stock.v1 durable=true dlx="" dlrk=DLQ.DLQ.stock.v1`,
		`queue stock.v1 durable=true dlx="" dlrk=DLQ.stock.v1`,
		"bind stock.v1 stock.v1 saga",
		`queue DLQ.payment.v1 durable=true dlx="" dlrk=DLQ.DLQ.payment.v1`,
		`queue payment.v1 durable=true dlx="" dlrk=DLQ.payment.v1`,
		"bind payment.v1 payment.v1 saga",
	}, f.calls)
	assert.Equal(t, "t.stock.v1", Topology{QueuePrefix: "t."}.Queue("stock.v1"))
}

// Quorum queues, for a cluster: every queue and DLQ is one, and dead-letters
// at least once.
func TestTopologyDeclareQuorum(t *testing.T) {
	f := &fakeDeclarer{}
	require.NoError(t, Topology{Exchange: "saga", QueueType: QueueQuorum}.Declare(context.Background(), f))
	assert.Contains(t, f.calls, `queue DLQ.order.v1 durable=true dlx="" dlrk=DLQ.DLQ.order.v1 type=quorum strategy=at-least-once overflow=reject-publish`)
	assert.Contains(t, f.calls, `queue payment.v1 durable=true dlx="" dlrk=DLQ.payment.v1 type=quorum strategy=at-least-once overflow=reject-publish`)
	for _, c := range f.calls {
		if strings.HasPrefix(c, "queue ") {
			assert.Contains(t, c, "type=quorum", c)
		}
	}
}

func TestTopologyDeclareErrors(t *testing.T) {
	topo := Topology{Exchange: "saga", QueuePrefix: "p."}
	for failOn, want := range map[string]string{
		"exchange saga topic durable=true":                                 `declare exchange "saga": 406 PRECONDITION_FAILED`,
		`queue DLQ.p.order.v1 durable=true dlx="" dlrk=DLQ.DLQ.p.order.v1`: `declare queue "DLQ.p.order.v1": 406 PRECONDITION_FAILED`,
		`queue p.stock.v1 durable=true dlx="" dlrk=DLQ.p.stock.v1`:         `declare queue "p.stock.v1": 406 PRECONDITION_FAILED`,
		"bind p.payment.v1 payment.v1 saga":                                `bind queue "p.payment.v1" to "saga" with "payment.v1": 406 PRECONDITION_FAILED`,
	} {
		err := topo.Declare(context.Background(), &fakeDeclarer{failOn: failOn})
		assert.EqualError(t, err, want)
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct{ level, format string }{{"debug", "json"}, {"info", "text"}, {"warn", "json"}, {"error", "json"}} {
		l := NewLogger(io.Discard, tc.level, tc.format)
		require.NotNil(t, l)
	}
	assert.False(t, NewLogger(io.Discard, "warn", "json").Enabled(context.Background(), -4))
	assert.True(t, NewLogger(io.Discard, "debug", "text").Enabled(context.Background(), -4))
}
