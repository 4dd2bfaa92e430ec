package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// tracedInsert is an insert whose headers carry traceparent.
func tracedInsert(id, traceparent string) *pglogrepl.InsertMessage {
	m := insert(outboxOID, id, "order.v1")
	m.Tuple.Columns[slices.Index(outbox.Columns, "headers")].Data = []byte(`{"traceparent": "` + traceparent + `"}`)
	return m
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if a.Key == attribute.Key(key) {
			return a.Value.String()
		}
	}
	return ""
}

// With tracing on, each published message gets a producer span, a child of
// the row's traceparent, from the commit time to the broker's confirm, with
// the slot, the insert's WAL position and the routing key; a message the
// broker refused ends its span failed, and what is unconfirmed at the end
// of a session is closed as such.
func TestPublishSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s, _, br, _ := newTestSession(t)
	s.spans = newSpanSet(tp.Tracer("test"), s.cfg.Slot)
	commit := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const parentA = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	const parentB = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
	require.NoError(t, handleAll(t, s,
		data(0x1100, outboxRelation()),
		data(0x1100, &pglogrepl.BeginMessage{Xid: 5, CommitTime: commit}),
		data(0x1110, tracedInsert("a", parentA)),
		data(0x1120, tracedInsert("b", parentB)),
		data(0x1125, insert(outboxOID, "c", "order.v1")),
		data(0x1130, &pglogrepl.CommitMessage{TransactionEndLSN: 0x1140, CommitTime: commit}),
	))
	require.Len(t, br.published, 3)
	assert.Empty(t, rec.Ended(), "no span ends before its confirm")

	s.Confirmed(1, time.Now(), commit)
	s.Failed(&publisher.Failure{Err: publisher.ErrNacked, Tag: 2, MessageID: "b"})
	ended := rec.Ended()
	require.Len(t, ended, 2)
	a, b := ended[0], ended[1]
	assert.Equal(t, "publish "+s.cfg.Exchange, a.Name())
	assert.Equal(t, trace.SpanKindProducer, a.SpanKind())
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", a.SpanContext().TraceID().String())
	assert.Equal(t, "b7ad6b7169203331", a.Parent().SpanID().String())
	assert.Equal(t, commit, a.StartTime(), "the span starts at the commit")
	assert.Equal(t, "s1", spanAttr(a, "cdc_relay.slot"))
	assert.Equal(t, replication.LSN(0x1110).String(), spanAttr(a, "cdc_relay.lsn"))
	assert.Equal(t, "order.v1", spanAttr(a, "messaging.rabbitmq.destination.routing_key"))
	assert.Equal(t, "a", spanAttr(a, "messaging.message.id"))
	assert.Equal(t, codes.Unset, a.Status().Code)
	assert.Equal(t, codes.Error, b.Status().Code, "a nacked message's span fails")
	assert.Equal(t, "1bf7651916cd43dd8448eb211c80319c", b.SpanContext().TraceID().String())

	s.spans.endAll("session ended")
	ended = rec.Ended()
	require.Len(t, ended, 3)
	c := ended[2]
	assert.False(t, c.Parent().IsValid(), "a row without traceparent: a root span")
	assert.Equal(t, codes.Error, c.Status().Code)
	assert.Equal(t, "session ended", c.Status().Description)
	s.spans.end(3, nil) // after endAll: nothing left to end
	assert.Len(t, rec.Ended(), 3)
}

// A confirm that the confirm loop sees before PublishTo returned its tag
// ends the span as soon as it starts, with that outcome.
func TestSpanConfirmedBeforeItStarted(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := newSpanSet(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test"), "s1")
	p.end(7, nil)
	p.end(8, publisher.ErrNacked)
	assert.Empty(t, rec.Ended())
	p.start(7, "saga", "k", amqp.Publishing{MessageId: "a"}, 0x10, time.Now())
	p.start(8, "saga", "k", amqp.Publishing{MessageId: "b"}, 0x20, time.Now())
	ended := rec.Ended()
	require.Len(t, ended, 2)
	assert.Equal(t, codes.Unset, ended[0].Status().Code)
	assert.Equal(t, codes.Error, ended[1].Status().Code)
	assert.Empty(t, p.open)
	assert.Empty(t, p.early)
}

// Tracing off: no span set, nothing recorded, the message unchanged.
func TestNoSpansWhenTracingOff(t *testing.T) {
	assert.Nil(t, newSpanSet(nil, "s1"))
	s, _, br, _ := newTestSession(t)
	require.NoError(t, handleAll(t, s,
		data(0x1100, outboxRelation()),
		data(0x1100, &pglogrepl.BeginMessage{Xid: 5, CommitTime: time.Now()}),
		data(0x1110, tracedInsert("a", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
	))
	s.Confirmed(1, time.Now(), time.Now())
	require.Len(t, br.published, 1)
	assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", br.published[0].msg.Headers["traceparent"], "passed through")
}

// BenchmarkSessionInsert is the session's work per outbox row (decode, map,
// publish to a fake broker, confirm) with tracing off (no span set: what
// every relay without OTEL_EXPORTER_OTLP_ENDPOINT runs) and on (a span per
// message, recorded and dropped), so that the cost of each shows in one
// command:
//
//	go test -run '^$' -bench SessionInsert ./cdc-relay/internal/relay/
func BenchmarkSessionInsert(b *testing.B) {
	for _, mode := range []string{"tracing off", "tracing on"} {
		b.Run(mode, func(b *testing.B) {
			s, _, br, _ := newTestSession(&testing.T{})
			if mode == "tracing on" {
				s.spans = newSpanSet(sdktrace.NewTracerProvider().Tracer("bench"), s.cfg.Slot)
			}
			ctx := b.Context()
			require.NoError(b, s.dispatch(ctx, data(0x1100, outboxRelation())))
			require.NoError(b, s.dispatch(ctx, data(0x1100, &pglogrepl.BeginMessage{Xid: 1, CommitTime: time.Now()})))
			row := data(0x1110, tracedInsert("a", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				br.room = 1
				if err := s.dispatch(ctx, row); err != nil {
					b.Fatal(err)
				}
				s.Confirmed(uint64(i+1), time.Now(), time.Now())
			}
		})
	}
}
