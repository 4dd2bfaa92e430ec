// Package outbox turns an outbox row, as pgoutput sends it, into the AMQP
// message of design §4.4. It does no I/O.
package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/event"
)

// Columns the outbox table must have (design §3).
var Columns = []string{"id", "aggregate_type", "aggregate_id", "event_type", "routing_key", "payload", "headers", "created_at"}

const (
	colID = iota
	colAggregateType
	colAggregateID
	colEventType
	colRoutingKey
	colPayload
	colHeaders
	colCreatedAt
	numCols
)

// HeaderInvalidHeaders carries the raw text of a headers column that is not a
// JSON object, so such a row is still delivered and the problem is visible.
const HeaderInvalidHeaders = "cdc_relay_invalid_headers"

// Row is one outbox row.
type Row struct {
	ID            string
	AggregateType string
	AggregateID   string
	EventType     string
	RoutingKey    string
	Payload       []byte
	Headers       []byte
	CreatedAt     time.Time
}

// Layout maps the outbox columns to their positions in a relation's tuples.
type Layout struct {
	pos [numCols]int
	n   int
}

// ErrSchema reports an outbox table that lacks a column the relay needs.
var ErrSchema = errors.New("outbox table schema")

// NewLayout checks a relation message for the outbox columns.
func NewLayout(rel *pglogrepl.RelationMessage) (Layout, error) {
	var l Layout
	l.n = len(rel.Columns)
	for i := range l.pos {
		l.pos[i] = -1
	}
	for i, c := range rel.Columns {
		for j, name := range Columns {
			if c.Name == name {
				l.pos[j] = i
			}
		}
	}
	var missing []string
	for j, p := range l.pos {
		if p < 0 {
			missing = append(missing, Columns[j])
		}
	}
	if len(missing) > 0 {
		return Layout{}, fmt.Errorf("%w: %s.%s lacks column(s) %s (docs/contracts.md, \"The outbox table\")", ErrSchema, rel.Namespace, rel.RelationName, strings.Join(missing, ", "))
	}
	return l, nil
}

// ErrRow reports a row the relay cannot turn into a message.
var ErrRow = errors.New("bad outbox row")

// Decode reads a row from an insert's tuple. A column without a text value
// (NULL, where the table lacks the outbox's NOT NULL) or a created_at that
// does not parse makes the row a poison row: the error is a *PoisonError
// naming the column, and the row holds every column that could be read.
func (l Layout) Decode(tuple *pglogrepl.TupleData) (Row, error) {
	if tuple == nil || len(tuple.Columns) != l.n {
		return Row{}, fmt.Errorf("%w: tuple has %d columns, relation has %d", ErrRow, lenTuple(tuple), l.n)
	}
	var (
		vals [numCols][]byte
		bad  *PoisonError
	)
	for j, p := range l.pos {
		c := tuple.Columns[p]
		if c.DataType != pglogrepl.TupleDataTypeText {
			if bad == nil {
				bad = &PoisonError{Field: Columns[j], Reason: fmt.Sprintf("column %s is %s, want a text value", Columns[j], dataType(c.DataType))}
			}
			continue
		}
		vals[j] = c.Data
	}
	r := Row{
		ID:            string(vals[colID]),
		AggregateType: string(vals[colAggregateType]),
		AggregateID:   string(vals[colAggregateID]),
		EventType:     string(vals[colEventType]),
		RoutingKey:    string(vals[colRoutingKey]),
		Payload:       vals[colPayload],
		Headers:       vals[colHeaders],
	}
	if vals[colCreatedAt] != nil {
		if err := typeMap.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, vals[colCreatedAt], &r.CreatedAt); err != nil && bad == nil {
			bad = &PoisonError{Field: "created_at", Reason: fmt.Sprintf("created_at %q: %v", vals[colCreatedAt], err)}
		}
	}
	if bad != nil {
		bad.RowID = r.ID
		return r, bad
	}
	return r, nil
}

var typeMap = pgtype.NewMap()

func lenTuple(t *pglogrepl.TupleData) int {
	if t == nil {
		return 0
	}
	return len(t.Columns)
}

func dataType(b uint8) string {
	switch b {
	case pglogrepl.TupleDataTypeNull:
		return "NULL"
	case pglogrepl.TupleDataTypeToast:
		return "an unchanged TOAST value"
	case pglogrepl.TupleDataTypeBinary:
		return "binary"
	}
	return fmt.Sprintf("of kind %q", b)
}

// Source is the CloudEvents source of messages from one database's outbox.
func Source(database string, table string) string {
	return "/cdc-relay/" + database + "/" + table
}

// Message maps a row to its AMQP message (design §4.4). A headers column that
// is not a JSON object does not stop the row: the message is sent with the
// raw text under HeaderInvalidHeaders and the returned warning says why.
func Message(r Row, source string) (msg amqp.Publishing, warning error) {
	headers, warning := headers(r.Headers, 8)
	if warning != nil {
		headers = amqp.Table{HeaderInvalidHeaders: string(r.Headers)}
		warning = fmt.Errorf("%w %s: %v", ErrRow, r.ID, warning)
	}
	created := r.CreatedAt.UTC()
	headers[event.HeaderAggregateType] = r.AggregateType
	headers[event.HeaderAggregateID] = r.AggregateID
	headers[event.HeaderCloudEventsSpecVersion] = event.CloudEventsSpecVersion
	headers[event.HeaderCloudEventsID] = r.ID
	headers[event.HeaderCloudEventsSource] = source
	headers[event.HeaderCloudEventsType] = r.EventType
	headers[event.HeaderCloudEventsTime] = created.Format(time.RFC3339Nano)
	headers[event.HeaderCloudEventsSubject] = r.AggregateID
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  event.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    r.ID,
		Type:         r.EventType,
		Timestamp:    created,
		Body:         r.Payload,
	}, warning
}

// Headers converts the headers column (a JSON object) to an AMQP table:
// strings stay strings, integral numbers become int64 and other numbers
// float64, booleans bool, null a void value, and objects and arrays their
// JSON text.
func Headers(raw []byte) (amqp.Table, error) {
	return headers(raw, 0)
}

// headers is Headers with room for extra more entries.
func headers(raw []byte, extra int) (amqp.Table, error) {
	t := make(amqp.Table, 8+extra)
	if len(bytes.TrimSpace(raw)) == 0 {
		return t, nil
	}
	if err := headersTable(raw, t); err != nil {
		if errors.Is(err, errNotObject) {
			return nil, fmt.Errorf("headers is not a JSON object: %.80s", raw)
		}
		return nil, fmt.Errorf("headers is not a JSON object: %w", err)
	}
	return t, nil
}
