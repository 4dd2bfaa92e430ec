package publisher

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

// countHandler counts outcomes and checks that confirms come in order.
type countHandler struct {
	mu        sync.Mutex
	confirmed []uint64
	n         atomic.Int64
	keep      bool
}

func (h *countHandler) Confirmed(tag uint64, _, _ time.Time) {
	if h.keep {
		h.mu.Lock()
		h.confirmed = append(h.confirmed, tag)
		h.mu.Unlock()
	}
	h.n.Add(1)
}
func (h *countHandler) Failed(*Failure)      {}
func (h *countHandler) Blocked(bool, string) {}

// openFake is a Publisher on a fake broker, its confirm loop running.
func openFake(tb testing.TB, window, channels int, h Handler) *Publisher {
	tb.Helper()
	pipe, _ := serveFake()
	sock := cork(pipe)
	conn, err := amqp.Open(sock, amqp.Config{Locale: "en_US", SASL: []amqp.Authentication{&amqp.PlainAuth{Username: "guest", Password: "guest"}}})
	require.NoError(tb, err)
	p, err := open(conn, "saga", window, channels)
	require.NoError(tb, err)
	p.sock = sock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Confirms(ctx, h) }()
	tb.Cleanup(func() {
		cancel()
		assert.NoError(tb, <-done)
		_ = p.Close()
	})
	return p
}

// sagaRow is an outbox row as the demo's services write them.
func sagaRow() outbox.Row {
	return outbox.Row{
		ID: "0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01", AggregateType: "order", AggregateID: "42",
		EventType: "order.status_changed", RoutingKey: "stock.v1",
		Payload:   []byte(`{"amount": "1", "status": "created", "order_id": 42, "quantity": 1, "product_id": "1", "customer_id": "1"}`),
		Headers:   []byte(`{"dop-msg-id": "0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01", "dop-msg-type": "Published", "dop-msg-sent-time": "2026-11-25T10:15:44.123456Z", "dop-msg-destination": "/exchange/saga/stock.v1"}`),
		CreatedAt: time.Date(2026, 11, 25, 10, 15, 44, 123456000, time.UTC),
	}
}

// The fake broker acks what the publisher sends, and the confirms reach
// the handler with the publisher's sequence numbers, in order.
func TestPublishOnFakeBroker(t *testing.T) {
	for _, channels := range []int{1, 3} {
		h := &countHandler{keep: true}
		p := openFake(t, 16, channels, h)
		m := outbox.Mapper{Source: "/cdc-relay/db/public.outbox", Groups: outbox.AllGroups}
		ctx := context.Background()
		const n = 200
		for i := range n {
			require.NoError(t, p.Acquire(ctx))
			msg, warn := m.Map(sagaRow())
			require.NoError(t, warn)
			seq, err := p.PublishTo(ctx, "saga", "stock.v1", string(rune('a'+i%7)), msg, time.Now())
			require.NoError(t, err)
			require.Equal(t, uint64(i+1), seq)
		}
		require.Eventually(t, func() bool { return h.n.Load() == n }, 10*time.Second, time.Millisecond)
		require.Zero(t, p.InFlight())
		if channels == 1 {
			h.mu.Lock()
			for i, tag := range h.confirmed {
				require.Equal(t, uint64(i+1), tag, "confirms in publishing order on one channel")
			}
			h.mu.Unlock()
		}
	}
}

// A multiple ack past the last published tag (amqp091 expands it without
// checking) must not confirm anything: the confirm loop ends with
// ErrProtocol, and the window keeps the unconfirmed places.
func TestConfirmOfAnUnpublishedTagEndsTheSession(t *testing.T) {
	pipe, _ := serveFakeBogus(2, 20)
	sock := cork(pipe)
	conn, err := amqp.Open(sock, amqp.Config{Locale: "en_US", SASL: []amqp.Authentication{&amqp.PlainAuth{Username: "guest", Password: "guest"}}})
	require.NoError(t, err)
	p, err := open(conn, "saga", 16, 1)
	require.NoError(t, err)
	p.sock = sock
	defer p.Close()
	h := &countHandler{keep: true}
	done := make(chan error, 1)
	go func() { done <- p.Confirms(context.Background(), h) }()
	m := outbox.Mapper{Source: "/cdc-relay/db/public.outbox", Groups: 0}
	for range 2 {
		require.NoError(t, p.Acquire(context.Background()))
		msg, _ := m.Map(sagaRow())
		_, err := p.PublishTo(context.Background(), "saga", "stock.v1", "a", msg, time.Now())
		require.NoError(t, err)
	}
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrProtocol)
		assert.Contains(t, err.Error(), "delivery tag 3")
	case <-time.After(10 * time.Second):
		t.Fatal("the confirm loop took a confirm for a tag never published")
	}
	assert.LessOrEqual(t, h.n.Load(), int64(2), "confirmed more than was published")
}

// BenchmarkPublish is the relay's publish path from a mapped message to
// the bytes on the broker's socket (amqp091's encoding of the method,
// header and body frames, the window, the flight record, the cork), with a
// fake broker that acks every message, so only the client's cost counts.
// One sub-benchmark per header set.
func BenchmarkPublish(b *testing.B) {
	for _, g := range []outbox.HeaderGroups{outbox.AllGroups, outbox.GroupAggregate, 0} {
		b.Run("headers="+g.String(), func(b *testing.B) {
			h := &countHandler{}
			p := openFake(b, 1000, 1, h)
			m := outbox.Mapper{Source: "/cdc-relay/db/public.outbox", Groups: g}
			row := sagaRow()
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Acquire(ctx); err != nil {
					b.Fatal(err)
				}
				msg, _ := m.Map(row)
				if _, err := p.PublishTo(ctx, "saga", row.RoutingKey, "", msg, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
