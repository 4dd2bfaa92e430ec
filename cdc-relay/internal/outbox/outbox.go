// Package outbox turns an outbox row, as pgoutput sends it, into the AMQP
// message of docs/contracts.md, "Message mapping". It does no I/O.
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

// Columns the outbox table must have (docs/contracts.md, "The outbox table").
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

	// The last created_at read and its value: the rows of a transaction
	// share it (DEFAULT now() is the transaction's start).
	lastCreated []byte
	lastTime    time.Time
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
func (l *Layout) Decode(tuple *pglogrepl.TupleData) (Row, error) {
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
	if raw := vals[colCreatedAt]; raw != nil {
		if l.lastCreated != nil && bytes.Equal(raw, l.lastCreated) {
			r.CreatedAt = l.lastTime
		} else if t, err := parseTimestamptz(raw); err != nil {
			if bad == nil {
				bad = &PoisonError{Field: "created_at", Reason: fmt.Sprintf("created_at %q: %v", raw, err)}
			}
		} else {
			r.CreatedAt = t
			l.lastCreated, l.lastTime = append(l.lastCreated[:0], raw...), t
		}
	}
	if bad != nil {
		bad.RowID = r.ID
		return r, bad
	}
	return r, nil
}

var typeMap = pgtype.NewMap()

// isoTimestamptz is how the walsender prints a timestamptz with DateStyle
// ISO and TimeZone UTC, which the relay sets on its replication connection:
// 2026-11-25 10:15:44.123456+00.
const isoTimestamptz = "2006-01-02 15:04:05.999999999Z07"

// walsenderShape reports whether raw is exactly the walsender's layout:
// YYYY-MM-DD HH:MM:SS, an optional fraction of 1 to 6 digits, then a
// whole-hour offset (+00). Anything looser goes to pgx, which is stricter
// than time.Parse (a one-digit hour, year 0000).
func walsenderShape(raw []byte) bool {
	const fixed = "dddd-dd-dd dd:dd:dd"
	if len(raw) < len(fixed)+3 {
		return false
	}
	for i := range len(fixed) {
		if c := raw[i]; fixed[i] == 'd' && (c < '0' || c > '9') || fixed[i] != 'd' && c != fixed[i] {
			return false
		}
	}
	if string(raw[:4]) == "0000" {
		return false
	}
	rest := raw[len(fixed):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && n <= 7 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 7 {
			return false
		}
		rest = rest[n:]
	}
	return len(rest) == 3 && (rest[0] == '+' || rest[0] == '-') &&
		rest[1] >= '0' && rest[1] <= '9' && rest[2] >= '0' && rest[2] <= '9'
}

// parseTimestamptz reads a timestamptz in text format: that layout at
// once, anything else (infinity, BC, years past 9999, another zone
// format) as pgx reads it.
func parseTimestamptz(raw []byte) (time.Time, error) {
	if walsenderShape(raw) {
		if t, err := time.Parse(isoTimestamptz, string(raw)); err == nil {
			return t, nil
		}
	}
	var t time.Time
	if err := typeMap.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, raw, &t); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

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

// HeaderGroups picks the headers a message carries beyond its properties
// (message_id, type, timestamp, content type, persistent), in groups that
// can be left out to make messages lighter for the broker
// (CDC_RELAY_HEADERS).
type HeaderGroups uint8

const (
	// GroupRow is the outbox row's headers column (and, for a column that
	// is not a JSON object, HeaderInvalidHeaders).
	GroupRow HeaderGroups = 1 << iota
	// GroupAggregate is aggregate_type and aggregate_id.
	GroupAggregate
	// GroupCloudEvents is the CloudEvents AMQP binary-mode attributes
	// (cloudEvents_specversion, _id, _source, _type, _time, _subject).
	GroupCloudEvents

	// AllGroups is the default: every header the message mapping names.
	AllGroups = GroupRow | GroupAggregate | GroupCloudEvents
)

var groupNames = []struct {
	name  string
	group HeaderGroups
}{{"row", GroupRow}, {"aggregate", GroupAggregate}, {"cloudevents", GroupCloudEvents}}

// ParseHeaderGroups reads a comma-separated list of groups (row, aggregate,
// cloudevents), "all" or "none".
func ParseHeaderGroups(s string) (HeaderGroups, error) {
	switch strings.TrimSpace(s) {
	case "all":
		return AllGroups, nil
	case "none", "":
		return 0, nil
	}
	var g HeaderGroups
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		found := false
		for _, n := range groupNames {
			if n.name == part {
				g |= n.group
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("%q is not a header group: use row, aggregate, cloudevents (comma-separated), all or none", part)
		}
	}
	return g, nil
}

// String is the groups as ParseHeaderGroups reads them.
func (g HeaderGroups) String() string {
	if g == 0 {
		return "none"
	}
	var parts []string
	for _, n := range groupNames {
		if g&n.group != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// Mapper maps rows to messages for one source and set of header groups. It
// reuses one headers table: a message it returns is valid until the next
// call (the publisher encodes it before it returns), which keeps the hot
// path from allocating a map per row. A Mapper is not safe for concurrent use.
type Mapper struct {
	Source string
	Groups HeaderGroups

	table       amqp.Table
	lastCreated time.Time
	lastTime    string // lastCreated in RFC 3339: rows of a transaction share it
}

// Message maps a row to its AMQP message (docs/contracts.md, "Message
// mapping") with every header group, in a table of its own.
func Message(r Row, source string) (msg amqp.Publishing, warning error) {
	m := Mapper{Source: source, Groups: AllGroups}
	return m.Map(r)
}

// Map maps r with m's groups. A headers column that is not a JSON object
// does not stop the row: the message is sent with the raw text under
// HeaderInvalidHeaders and the returned warning says why.
func (m *Mapper) Map(r Row) (msg amqp.Publishing, warning error) {
	if m.table == nil {
		m.table = make(amqp.Table, 16)
	} else {
		clear(m.table)
	}
	headers := m.table
	if m.Groups&GroupRow != 0 && len(bytes.TrimSpace(r.Headers)) > 0 {
		if err := headersTable(r.Headers, headers); err != nil {
			clear(headers)
			headers[HeaderInvalidHeaders] = string(r.Headers)
			if errors.Is(err, errNotObject) {
				err = fmt.Errorf("headers is not a JSON object: %.80s", r.Headers)
			} else {
				err = fmt.Errorf("headers is not a JSON object: %w", err)
			}
			warning = fmt.Errorf("%w %s: %v", ErrRow, r.ID, err)
		}
	}
	created := r.CreatedAt.UTC()
	if m.Groups&GroupAggregate != 0 {
		headers[event.HeaderAggregateType] = r.AggregateType
		headers[event.HeaderAggregateID] = r.AggregateID
	}
	if m.Groups&GroupCloudEvents != 0 {
		if !created.Equal(m.lastCreated) || m.lastTime == "" {
			m.lastCreated, m.lastTime = created, created.Format(time.RFC3339Nano)
		}
		headers[event.HeaderCloudEventsSpecVersion] = event.CloudEventsSpecVersion
		headers[event.HeaderCloudEventsID] = r.ID
		headers[event.HeaderCloudEventsSource] = m.Source
		headers[event.HeaderCloudEventsType] = r.EventType
		headers[event.HeaderCloudEventsTime] = m.lastTime
		headers[event.HeaderCloudEventsSubject] = r.AggregateID
	}
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
