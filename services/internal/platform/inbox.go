package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/saga-cdc/saga/cdc-relay/event"
	"github.com/saga-cdc/saga/internal/tracing"
)

// ErrUnprocessable marks a message that no retry can process (not JSON, a
// missing field, an unknown order). The consumer moves it to DLQ.<queue>
// with the reason in its HeaderRejectReason header (see deadLetter), and
// logs why.
var ErrUnprocessable = errors.New("unprocessable message")

// Unprocessable returns an error wrapping ErrUnprocessable.
func Unprocessable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnprocessable, fmt.Sprintf(format, args...))
}

// The headers a message moved to its dead-letter queue carries beyond its
// own: why it was refused, and the queue that refused it.
const (
	HeaderRejectReason = "x-saga-reject-reason"
	HeaderRejectQueue  = "x-saga-reject-queue"
)

// deadLetterTimeout bounds the wait for the broker's confirm of a message
// moved to its dead-letter queue.
const deadLetterTimeout = 10 * time.Second

// Delivery is what a Handler sees of a message.
type Delivery struct {
	// MessageID is the dedup key: the AMQP message_id (the outbox row id),
	// else the dop-msg-id header.
	MessageID  string
	Type       string
	RoutingKey string
	Body       []byte
	Headers    amqp.Table
}

// Handler applies one message inside tx, which also holds the message's
// inbox row; the business change, the inbox row and any outbox rows the
// handler writes commit together. An error wrapping ErrUnprocessable, or a
// Postgres data error, sends the message to its DLQ; any other error
// (connection loss, deadlock) requeues it after a backoff.
type Handler func(ctx context.Context, tx pgx.Tx, d Delivery) error

// Consumer reads one queue with manual acks and runs each message through
// Handler exactly once per message id.
type Consumer struct {
	// Pool is the service database, holding the inbox table.
	Pool *pgxpool.Pool
	// AMQPURL is the broker to consume from.
	AMQPURL string
	// Queue is the queue to read.
	Queue string
	// Prefetch is the basic.qos prefetch count. Messages are still handled one
	// at a time, in delivery order.
	Prefetch int
	// Setup runs on every new channel before consuming (topology declaration).
	Setup func(ctx context.Context, ch *amqp.Channel) error
	// Handler processes a message.
	Handler Handler
	// Logger gets one line per rejected message and per reconnect.
	Logger *slog.Logger
	// HandlerTimeout bounds one message's transaction; 0 means 30s. It runs on
	// a context that shutdown does not cancel, so a message in progress
	// commits and is acked before the consumer stops.
	HandlerTimeout time.Duration

	ready atomic.Bool
}

// Ready reports whether the consumer has a channel open and is consuming.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Run consumes until ctx is done, reconnecting with exponential backoff and
// jitter whenever the broker connection is lost. It returns nil on shutdown.
func (c *Consumer) Run(ctx context.Context) error {
	backoff := newBackoff(500*time.Millisecond, 5*time.Second)
	for {
		err := c.consume(ctx, backoff.reset)
		if ctx.Err() != nil {
			return nil
		}
		wait := backoff.next()
		c.Logger.Warn("consumer disconnected, reconnecting", LogQueue, c.Queue, LogError, err, "retry_in", wait.String())
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

func (c *Consumer) consume(ctx context.Context, connected func()) error {
	conn, err := amqp.DialConfig(c.AMQPURL, amqp.Config{
		Properties: amqp.Table{"connection_name": "saga consumer " + c.Queue},
		Heartbeat:  10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("dial broker: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if c.Setup != nil {
		if err := c.Setup(ctx, ch); err != nil {
			return err
		}
	}
	if err := ch.Qos(c.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch on %q: %w", c.Queue, err)
	}
	dead, err := c.deadLetterChannel(conn)
	if err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, c.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %q: %w", c.Queue, err)
	}
	connected()
	c.ready.Store(true)
	defer c.ready.Store(false)
	c.Logger.Info("consuming", LogQueue, c.Queue)
	retries := newBackoff(200*time.Millisecond, 30*time.Second)
	for {
		select {
		case <-ctx.Done():
			// Unacked prefetched messages go back to the queue when the
			// channel closes; the one in progress was finished above.
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("delivery channel of %q closed: %w", c.Queue, closeReason(conn))
			}
			c.deliver(ctx, d, retries, dead)
		}
	}
}

// deadLetterChannel opens the confirm-mode channel a refused message is
// moved to its dead-letter queue on.
func (c *Consumer) deadLetterChannel(conn *amqp.Connection) (*deadLetterer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open the dead-letter channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("dead-letter channel: confirm mode: %w", err)
	}
	// The reader hands a return over before the ack that follows it, so
	// after the confirm a return, if any, is already here.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	return &deadLetterer{ch: ch, returns: returns, queue: DLQ(c.Queue), from: c.Queue}, nil
}

// deadLetterer moves refused messages to a dead-letter queue.
type deadLetterer struct {
	ch          *amqp.Channel
	returns     chan amqp.Return
	queue, from string
}

// move publishes a copy of d to the dead-letter queue, through the default
// exchange, with reason in HeaderRejectReason, and waits for the broker's
// confirm. The caller then acks d; on an error it rejects d instead, and
// the queue's dead-letter exchange takes it there without the reason: a
// message is never lost for want of its reason.
func (l *deadLetterer) move(ctx context.Context, d amqp.Delivery, reason string) error {
	headers := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderRejectReason] = reason
	headers[HeaderRejectQueue] = l.from
	// A return left from an earlier move (one that timed out or was
	// nacked) must not be taken for this one's.
	for drained := false; !drained; {
		select {
		case <-l.returns:
		default:
			drained = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	conf, err := l.ch.PublishWithDeferredConfirmWithContext(ctx, "", l.queue, true, false, amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: "", MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, UserId: "", AppId: d.AppId, Body: d.Body,
	})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", l.queue, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm from %s: %w", l.queue, err)
	}
	if !ok {
		return fmt.Errorf("%s: the broker nacked the message", l.queue)
	}
	select {
	case r := <-l.returns:
		if r.MessageId == d.MessageId {
			return fmt.Errorf("%s: returned: %d %s (is the queue declared?)", l.queue, r.ReplyCode, r.ReplyText)
		}
	default:
	}
	return nil
}

func closeReason(conn *amqp.Connection) error {
	if conn.IsClosed() {
		return errors.New("connection closed")
	}
	return errors.New("channel closed")
}

// Outcome is what the consumer does with a message once handled.
type Outcome int

const (
	OutcomeAck       Outcome = iota // committed: ack
	OutcomeDuplicate                // inbox row exists: ack, change nothing
	OutcomeReject                   // cannot be processed: reject to the DLQ
	OutcomeRetry                    // transient failure: requeue after a backoff
)

// String names the outcome: ack, duplicate, reject, retry.
func (o Outcome) String() string {
	switch o {
	case OutcomeAck:
		return "ack"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeReject:
		return "reject"
	case OutcomeRetry:
		return "retry"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

func (c *Consumer) deliver(ctx context.Context, d amqp.Delivery, retries *backoff, dead *deadLetterer) {
	msg := Delivery{
		MessageID:  MessageID(d.MessageId, d.Headers),
		Type:       d.Type,
		RoutingKey: d.RoutingKey,
		Body:       d.Body,
		Headers:    d.Headers,
	}
	log := c.Logger.With(LogQueue, c.Queue, LogMessageID, msg.MessageID, LogRoutingKey, msg.RoutingKey, LogEventType, msg.Type)
	out, err := c.Handle(ctx, msg)
	switch out {
	case OutcomeAck, OutcomeDuplicate:
		retries.reset()
		if out == OutcomeDuplicate {
			log.Info("duplicate message acked without effect")
		}
		if err := d.Ack(false); err != nil {
			// The commit stands; the redelivery will be a duplicate.
			log.Warn("ack after commit", LogError, err)
		}
	case OutcomeReject:
		retries.reset()
		log.Warn("message rejected to the dead-letter queue", LogReason, err.Error(), "dead_letter_queue", DLQ(c.Queue))
		if merr := dead.move(context.WithoutCancel(ctx), d, err.Error()); merr != nil {
			log.Warn("moving the message to its dead-letter queue failed: rejecting it, the queue's dead-letter exchange takes it there without its reason", LogError, merr)
			if err := d.Reject(false); err != nil {
				log.Warn("reject", LogError, err)
			}
			return
		}
		if err := d.Ack(false); err != nil {
			// The copy is in the DLQ; the redelivery would be refused again.
			log.Warn("ack after moving to the dead-letter queue", LogError, err)
		}
	case OutcomeRetry:
		wait := retries.next()
		log.Error("message requeued after a transient failure", LogError, err, "retry_in", wait.String())
		sleep(ctx, wait)
		if err := d.Nack(false, true); err != nil {
			log.Warn("requeue", LogError, err)
		}
	}
}

// Handle runs msg through the inbox and the handler in one transaction and
// says what to do with it. It is the consumer's core, exported for tests.
// With tracing on, it records a span per message, a child of the trace
// context the message's headers carry, with the inbox's dedup result; the
// outbox rows the handler writes carry that span's context on.
func (c *Consumer) Handle(ctx context.Context, msg Delivery) (Outcome, error) {
	ctx, span := tracing.Tracer().Start(tracing.Extract(ctx, msg.Headers), "process "+c.Queue, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	out, err := c.handle(ctx, msg)
	if span.IsRecording() { // tracing off: no attributes built per message
		span.SetAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", c.Queue),
			attribute.String("messaging.message.id", msg.MessageID),
			attribute.String("messaging.rabbitmq.destination.routing_key", msg.RoutingKey),
			attribute.String("saga.event_type", msg.Type),
			attribute.String("saga.outcome", out.String()), attribute.Bool("saga.inbox.duplicate", out == OutcomeDuplicate))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	return out, err
}

func (c *Consumer) handle(ctx context.Context, msg Delivery) (Outcome, error) {
	if msg.MessageID == "" {
		return OutcomeReject, Unprocessable("no message_id property and no %s header", event.HeaderDopMsgID)
	}
	timeout := c.HandlerTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	duplicate := false
	err := pgx.BeginFunc(hctx, c.Pool, func(tx pgx.Tx) error {
		// A delivery whose message is in the inbox already only counts
		// itself there (the saga timeline shows it), and changes nothing else.
		var dups int
		err := tx.QueryRow(hctx, `INSERT INTO inbox (message_id, queue, event_type, aggregate_id) VALUES ($1, $2, $3, NULLIF($4, ''))
			ON CONFLICT (message_id) DO UPDATE SET duplicates = inbox.duplicates + 1, last_duplicate_at = now()
			RETURNING duplicates`, msg.MessageID, c.Queue, msg.Type, AggregateID(msg.Headers)).Scan(&dups)
		if err != nil {
			return fmt.Errorf("insert inbox row: %w", err)
		}
		if dups > 0 {
			duplicate = true
			return nil
		}
		return c.Handler(hctx, tx, msg)
	})
	switch {
	case err == nil && duplicate:
		return OutcomeDuplicate, nil
	case err == nil:
		return OutcomeAck, nil
	case Permanent(err):
		return OutcomeReject, err
	default:
		return OutcomeRetry, err
	}
}

// Permanent reports whether err means the message can never be processed:
// it wraps ErrUnprocessable, or Postgres refused the data itself (class 22,
// data exception, or class 23, integrity violation, except a unique
// violation, which a concurrent duplicate can cause and a retry resolves).
// Everything else (connection loss, timeouts, deadlocks, serialization
// failures) is worth a retry.
func Permanent(err error) bool {
	if errors.Is(err, ErrUnprocessable) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "23505" {
			return false
		}
		return len(pgErr.Code) == 5 && (pgErr.Code[:2] == "22" || pgErr.Code[:2] == "23")
	}
	return false
}

// MessageID is the dedup key of a message: the message_id property, else
// the dop-msg-id header of django-outbox-pattern.
func MessageID(property string, headers amqp.Table) string {
	if property != "" {
		return property
	}
	return headerText(headers, event.HeaderDopMsgID)
}

// headerText is the text of header key: a string or byte-array value; ""
// for any other type or none.
func headerText(headers amqp.Table, key string) string {
	switch v := headers[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// AggregateID is the order a message belongs to: its aggregate_id header,
// else its cloudEvents_subject (the relay sets both to the outbox row's
// aggregate_id); "" when it carries neither.
func AggregateID(headers amqp.Table) string {
	if id := headerText(headers, event.HeaderAggregateID); id != "" {
		return id
	}
	return headerText(headers, event.HeaderCloudEventsSubject)
}

// backoff is exponential with full jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// sleep waits d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
