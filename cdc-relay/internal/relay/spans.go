package relay

import (
	"context"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/internal/tracing"
)

// spanSet holds, while tracing is on, the span of each published message
// until the broker confirms it: a span runs from the row's commit to the
// confirm, a child of the trace context the row's headers carry. A session
// without tracing has none (nil), and pays one nil check per message.
type spanSet struct {
	tracer trace.Tracer
	slot   string

	mu   sync.Mutex
	open map[uint64]trace.Span
	// early holds the outcome of tags the broker confirmed (or refused)
	// before their span was started: the confirm loop can see a confirm
	// before PublishTo returned its tag.
	early map[uint64]error
}

func newSpanSet(tracer trace.Tracer, slot string) *spanSet {
	if tracer == nil {
		return nil
	}
	return &spanSet{tracer: tracer, slot: slot, open: map[uint64]trace.Span{}, early: map[uint64]error{}}
}

// start opens the span of the message published with delivery tag tag.
func (p *spanSet) start(tag uint64, exchange, key string, msg amqp.Publishing, lsn checkpoint.LSN, committed time.Time) {
	parent := tracing.Propagator.Extract(context.Background(), tracing.AMQPCarrier(msg.Headers))
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "rabbitmq"),
		attribute.String("messaging.operation.type", "publish"),
		attribute.String("messaging.destination.name", exchange),
		attribute.String("messaging.rabbitmq.destination.routing_key", key),
		attribute.String("messaging.message.id", msg.MessageId),
		attribute.String("cdc_relay.slot", p.slot),
		attribute.Int64("messaging.rabbitmq.delivery_tag", int64(tag)),
	}
	if lsn != 0 {
		attrs = append(attrs, attribute.String("cdc_relay.lsn", lsn.String()))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...)}
	if !committed.IsZero() {
		opts = append(opts, trace.WithTimestamp(committed))
	}
	_, span := p.tracer.Start(parent, "publish "+exchange, opts...)
	p.mu.Lock()
	err, done := p.early[tag]
	if done {
		delete(p.early, tag)
	} else {
		p.open[tag] = span
	}
	p.mu.Unlock()
	if done {
		finish(span, err)
	}
}

func finish(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// end closes the span of tag: confirmed when err is nil, failed otherwise.
func (p *spanSet) end(tag uint64, err error) {
	p.mu.Lock()
	span, ok := p.open[tag]
	if ok {
		delete(p.open, tag)
	} else {
		p.early[tag] = err
	}
	p.mu.Unlock()
	if ok {
		finish(span, err)
	}
}

// endAll closes what the broker did not confirm before the session ended:
// those messages are published again by the next session.
func (p *spanSet) endAll(why string) {
	p.mu.Lock()
	open := p.open
	p.open, p.early = map[uint64]trace.Span{}, map[uint64]error{}
	p.mu.Unlock()
	for _, span := range open {
		span.SetStatus(codes.Error, why)
		span.End()
	}
}
