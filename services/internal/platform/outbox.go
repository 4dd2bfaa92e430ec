package platform

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/saga-cdc/saga/cdc-relay/event"
	"github.com/saga-cdc/saga/internal/tracing"
)

// Execer is the one method the outbox writer needs: a pgx.Tx has it. Taking a
// transaction (not a pool) is the point of the outbox: the row commits or
// rolls back with the business change.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Message is one message a service sends, as an outbox row
// (docs/contracts.md, "The outbox table").
type Message struct {
	// AggregateType is "order", "reservation" or "payment".
	AggregateType string
	// AggregateID is the order id for every message of a saga, so that the
	// relay's cloudEvents_subject follows one saga across services.
	AggregateID string
	// EventType becomes the AMQP type property, e.g. "order.status_changed".
	EventType string
	// RoutingKey is the topic routing key: "order.v1", "stock.v1", "payment.v1".
	RoutingKey string
	// Payload is marshalled to JSON and becomes the message body.
	Payload any
}

// OutboxWriter inserts outbox rows.
type OutboxWriter struct {
	// Exchange names the exchange in the dop-msg-destination header.
	Exchange string
	// Now is the clock of dop-msg-sent-time; nil means time.Now.
	Now func() time.Time
}

// Write inserts m into the outbox within tx and returns the row id, which
// the relay sends as the AMQP message_id. The id is generated here, not by
// the database, because the dop-msg-id header carries it too.
func (w OutboxWriter) Write(ctx context.Context, tx Execer, m Message) (string, error) {
	payload, err := json.Marshal(m.Payload)
	if err != nil {
		return "", fmt.Errorf("encode %s payload: %w", m.EventType, err)
	}
	id := NewUUID()
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	hdrs := map[string]string{
		event.HeaderDopMsgID:          id,
		event.HeaderDopMsgDestination: "/exchange/" + w.Exchange + "/" + m.RoutingKey,
		event.HeaderDopMsgType:        event.DopMsgTypePublished,
		// Django's DjangoJSONEncoder format: ISO-8601, milliseconds, "Z".
		event.HeaderDopMsgSentTime: now().UTC().Format("2006-01-02T15:04:05.000Z"),
	}
	// With tracing on, traceparent (and tracestate) of the request's or
	// the consumed message's span: the relay copies them to the message.
	tracing.Inject(ctx, hdrs)
	headers, err := json.Marshal(hdrs)
	if err != nil {
		return "", fmt.Errorf("encode %s headers: %w", m.EventType, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox
		(id, aggregate_type, aggregate_id, event_type, routing_key, payload, headers)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, m.AggregateType, m.AggregateID, m.EventType, m.RoutingKey, payload, headers); err != nil {
		return "", fmt.Errorf("insert outbox row %s to %s: %w", m.EventType, m.RoutingKey, err)
	}
	return id, nil
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go 1.24+).
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
