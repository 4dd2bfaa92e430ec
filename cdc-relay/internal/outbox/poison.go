package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/event"
)

// ErrPoison matches every *PoisonError.
var ErrPoison = errors.New("poison row: it can never be published")

// PoisonError is an outbox row that can never be published as it is: a field
// over an AMQP limit, a column without a value, a body over the broker's
// max_message_size. Publishing it again would fail again, and holding it
// would stall every row after it, so the relay stops naming it or parks it
// (CDC_RELAY_POISON).
type PoisonError struct {
	RowID  string
	Field  string // the column or header at fault: routing_key, event_type, headers.<key>, payload
	Reason string
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("outbox row %s can never be published: %s: %s", e.RowID, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrPoison) match.
func (e *PoisonError) Is(target error) bool { return target == ErrPoison }

// maxShortString is AMQP 0-9-1's limit on a short string: the routing key,
// the type and message_id properties, and the names of headers.
const maxShortString = 255

// frameOverhead is a content header frame's bytes outside its properties:
// frame type, channel, size and end (8), class, weight, body size and
// property flags (14).
const frameOverhead = 8 + 14

// Check returns a *PoisonError when msg, the message of row r, cannot be
// published: a routing key, type, message_id or header name over 255 bytes
// (AMQP short strings), or properties and headers too large for one frame of
// frameMax bytes (0: no limit). A body over the broker's max_message_size is
// found by the broker (publisher.ErrTooLarge).
func Check(r Row, msg amqp.Publishing, frameMax int) error {
	poison := func(field, reason string) error {
		return &PoisonError{RowID: r.ID, Field: field, Reason: reason}
	}
	switch {
	case len(r.RoutingKey) > maxShortString:
		return poison("routing_key", fmt.Sprintf("%d bytes, over AMQP's limit of %d for a routing key", len(r.RoutingKey), maxShortString))
	case len(msg.Type) > maxShortString:
		return poison("event_type", fmt.Sprintf("%d bytes, over AMQP's limit of %d for the type property", len(msg.Type), maxShortString))
	case len(msg.MessageId) > maxShortString:
		return poison("id", fmt.Sprintf("%d bytes, over AMQP's limit of %d for message_id", len(msg.MessageId), maxShortString))
	}
	size := frameOverhead + 1 + len(msg.ContentType) + 1 + 1 + len(msg.MessageId) + 8 + 1 + len(msg.Type) + 4
	for k, v := range msg.Headers {
		if len(k) > maxShortString {
			return poison("headers."+shorten(k, 40), fmt.Sprintf("header name of %d bytes, over AMQP's limit of %d", len(k), maxShortString))
		}
		size += 1 + len(k) + 1 + fieldSize(v)
	}
	if frameMax > 0 && size > frameMax {
		return poison("headers", fmt.Sprintf("the message's properties and headers take %d bytes, over the connection's frame_max of %d (they must fit in one frame)", size, frameMax))
	}
	return nil
}

// fieldSize is the encoded size of a header value, after its type byte.
func fieldSize(v any) int {
	switch v := v.(type) {
	case string:
		return 4 + len(v)
	case []byte:
		return 4 + len(v)
	case int64, float64, time.Time:
		return 8
	case bool:
		return 1
	case nil:
		return 0
	}
	return 8
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Headers of a parked poison message.
const (
	HeaderPoisonField  = "cdc_relay_poison_field"
	HeaderPoisonReason = "cdc_relay_poison_reason"
	// PoisonType is the type property of a parked poison message.
	PoisonType = "cdc_relay.poison"
)

// PoisonQueue is the durable queue that parked poison rows go to
// (CDC_RELAY_POISON=park): "<exchange>.poison".
func PoisonQueue(exchange string) string { return exchange + ".poison" }

// poisonEnvelope is the body of a parked poison message: what is known of
// the row. Fields are omitted when they are the fault (a payload over the
// broker's limit) or were not readable.
type poisonEnvelope struct {
	ID            string          `json:"id"`
	Field         string          `json:"field"`
	Reason        string          `json:"reason"`
	Source        string          `json:"source"`
	AggregateType string          `json:"aggregate_type,omitempty"`
	AggregateID   string          `json:"aggregate_id,omitempty"`
	EventType     string          `json:"event_type,omitempty"`
	RoutingKey    string          `json:"routing_key,omitempty"`
	CreatedAt     *time.Time      `json:"created_at,omitempty"`
	Headers       json.RawMessage `json:"headers,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBytes  int             `json:"payload_bytes"`
}

// maxParkedPayload is the largest payload copied into an envelope: a parked
// message must not be refused in turn.
const maxParkedPayload = 1 << 20

// PoisonMessage is the message that stands for the poison row r in the
// parking queue: a small JSON envelope (row id, reason, the original fields
// that fit), with the row's id as message_id, so a row parked twice is
// deduplicated like any other message.
func PoisonMessage(r Row, perr *PoisonError, source string) amqp.Publishing {
	env := poisonEnvelope{
		ID: r.ID, Field: perr.Field, Reason: perr.Reason, Source: source,
		AggregateType: r.AggregateType, AggregateID: r.AggregateID, EventType: r.EventType, RoutingKey: r.RoutingKey,
		PayloadBytes: len(r.Payload),
	}
	if !r.CreatedAt.IsZero() {
		t := r.CreatedAt.UTC()
		env.CreatedAt = &t
	}
	if json.Valid(r.Headers) && len(r.Headers) <= maxParkedPayload && perr.Field != "headers" {
		env.Headers = r.Headers
	}
	if json.Valid(r.Payload) && len(r.Payload) <= maxParkedPayload && perr.Field != "payload" {
		env.Payload = r.Payload
	}
	body, err := json.Marshal(env)
	if err != nil { // only RawMessage can fail, and both were checked
		body = []byte(`{}`)
	}
	id := r.ID
	if len(id) > maxShortString {
		id = ""
	}
	return amqp.Publishing{
		ContentType:  event.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         PoisonType,
		Timestamp:    r.CreatedAt.UTC(),
		Headers: amqp.Table{
			HeaderPoisonField:             perr.Field,
			HeaderPoisonReason:            shorten(perr.Reason, 1000),
			event.HeaderCloudEventsSource: source,
		},
		Body: body,
	}
}
