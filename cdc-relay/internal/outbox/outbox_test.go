package outbox

import (
	"bytes"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeaders(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    amqp.Table
		wantErr string
	}{
		{"empty object", `{}`, amqp.Table{}, ""},
		{"empty column", ``, amqp.Table{}, ""},
		{"string", `{"a":"x"}`, amqp.Table{"a": "x"}, ""},
		{"integer", `{"n":42,"neg":-7}`, amqp.Table{"n": int64(42), "neg": int64(-7)}, ""},
		{"big integer beyond int64 becomes float", `{"n":92233720368547758070}`, amqp.Table{"n": 9.223372036854776e+19}, ""},
		{"float", `{"f":1.5,"e":1e3}`, amqp.Table{"f": 1.5, "e": float64(1000)}, ""},
		{"booleans", `{"t":true,"f":false}`, amqp.Table{"t": true, "f": false}, ""},
		{"null", `{"z":null}`, amqp.Table{"z": nil}, ""},
		{"object and array as JSON text", `{"o":{"k": [1, 2]},"a":[ "x" ]}`, amqp.Table{"o": `{"k":[1,2]}`, "a": `["x"]`}, ""},
		{"jsonb text with spaces", `{"a": "x", "b": 1}`, amqp.Table{"a": "x", "b": int64(1)}, ""},
		{"array is not an object", `["a"]`, nil, "not a JSON object"},
		{"string is not an object", `"a"`, nil, "not a JSON object"},
		{"garbage", `{nope`, nil, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Headers([]byte(tt.raw))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			require.NoError(t, got.Validate(), "the broker library must accept every value")
		})
	}
}

func TestMessage(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 15, 44, 123456000, time.FixedZone("x", 3600))
	row := Row{
		ID:            "0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01",
		AggregateType: "order",
		AggregateID:   "42",
		EventType:     "order.status_changed",
		RoutingKey:    "stock.v1",
		Payload:       []byte(`{"order_id": 42}`),
		Headers:       []byte(`{"dop-msg-id": "0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01", "n": 1}`),
		CreatedAt:     created,
	}
	msg, warn := Message(row, Source("orders", "public.outbox"))
	require.NoError(t, warn)
	assert.Equal(t, row.ID, msg.MessageId)
	assert.Equal(t, "order.status_changed", msg.Type)
	assert.Equal(t, "application/json", msg.ContentType)
	assert.Equal(t, uint8(amqp.Persistent), msg.DeliveryMode)
	assert.True(t, msg.Timestamp.Equal(created))
	assert.Equal(t, row.Payload, msg.Body)
	assert.Equal(t, amqp.Table{
		"dop-msg-id":              row.ID,
		"n":                       int64(1),
		"aggregate_type":          "order",
		"aggregate_id":            "42",
		"cloudEvents_specversion": "1.0",
		"cloudEvents_id":          row.ID,
		"cloudEvents_source":      "/cdc-relay/orders/public.outbox",
		"cloudEvents_type":        "order.status_changed",
		"cloudEvents_time":        "2026-11-25T09:15:44.123456Z",
		"cloudEvents_subject":     "42",
	}, msg.Headers)
}

func TestMessageWithInvalidHeadersIsStillSent(t *testing.T) {
	row := Row{ID: "id-1", AggregateID: "7", EventType: "e", RoutingKey: "k", Payload: []byte(`{}`), Headers: []byte(`[1,2]`)}
	msg, warn := Message(row, "src")
	require.ErrorIs(t, warn, ErrRow)
	require.ErrorContains(t, warn, "id-1")
	assert.Equal(t, "[1,2]", msg.Headers[HeaderInvalidHeaders])
	assert.Equal(t, "7", msg.Headers["aggregate_id"])
	assert.Equal(t, []byte(`{}`), msg.Body)
}

func relation(cols ...string) *pglogrepl.RelationMessage {
	rel := &pglogrepl.RelationMessage{Namespace: "public", RelationName: "outbox"}
	for _, c := range cols {
		rel.Columns = append(rel.Columns, &pglogrepl.RelationMessageColumn{Name: c})
	}
	return rel
}

func text(vals ...string) *pglogrepl.TupleData {
	td := &pglogrepl.TupleData{}
	for _, v := range vals {
		td.Columns = append(td.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(v)})
	}
	return td
}

func TestLayoutDecode(t *testing.T) {
	// Columns in a different order, with an extra one: matched by name.
	l, err := NewLayout(relation("created_at", "extra", "id", "aggregate_type", "aggregate_id", "event_type", "routing_key", "payload", "headers"))
	require.NoError(t, err)

	row, err := l.Decode(text("2026-11-25 10:15:44.5+00", "x", "id-1", "order", "1", "order.created", "stock.v1", `{"a": 1}`, `{}`))
	require.NoError(t, err)
	assert.Equal(t, Row{
		ID: "id-1", AggregateType: "order", AggregateID: "1", EventType: "order.created", RoutingKey: "stock.v1",
		Payload: []byte(`{"a": 1}`), Headers: []byte(`{}`),
		CreatedAt: time.Date(2026, 11, 25, 10, 15, 44, 500000000, time.UTC),
	}, Row{
		ID: row.ID, AggregateType: row.AggregateType, AggregateID: row.AggregateID, EventType: row.EventType,
		RoutingKey: row.RoutingKey, Payload: row.Payload, Headers: row.Headers, CreatedAt: row.CreatedAt.UTC(),
	})

	// Offsets other than UTC (a server whose TimeZone is not UTC).
	row, err = l.Decode(text("2026-11-25 11:45:44+01:30", "x", "id-2", "o", "1", "e", "k", `{}`, `{}`))
	require.NoError(t, err)
	assert.True(t, row.CreatedAt.Equal(time.Date(2026, 11, 25, 10, 15, 44, 0, time.UTC)))
}

func TestLayoutErrors(t *testing.T) {
	_, err := NewLayout(relation("id", "payload"))
	require.ErrorIs(t, err, ErrSchema)
	require.ErrorContains(t, err, "aggregate_type, aggregate_id, event_type, routing_key, headers, created_at")

	l, err := NewLayout(relation(Columns...))
	require.NoError(t, err)
	good := []string{"id-1", "o", "1", "e", "k", `{}`, `{}`, "2026-11-25 10:15:44+00"}

	tests := []struct {
		name  string
		tuple *pglogrepl.TupleData
		want  string
		field string // the poison row's field, "" for a tuple that does not fit the relation
	}{
		{"nil tuple", nil, "tuple has 0 columns", ""},
		{"short tuple", text("a"), "tuple has 1 columns, relation has 8", ""},
		{"null column", func() *pglogrepl.TupleData {
			td := text(good...)
			td.Columns[4] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}
			return td
		}(), "routing_key is NULL", "routing_key"},
		{"toast column", func() *pglogrepl.TupleData {
			td := text(good...)
			td.Columns[5] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
			return td
		}(), "payload is an unchanged TOAST value", "payload"},
		{"bad timestamp", func() *pglogrepl.TupleData {
			bad := append([]string(nil), good...)
			bad[7] = "yesterday-ish"
			return text(bad...)
		}(), `created_at "yesterday-ish"`, "created_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := l.Decode(tt.tuple)
			require.Error(t, err)
			assert.ErrorContains(t, err, tt.want)
			if tt.field == "" {
				assert.True(t, errors.Is(err, ErrRow))
				return
			}
			// A poison row: named, with what could be read of it.
			var perr *PoisonError
			require.ErrorAs(t, err, &perr)
			assert.True(t, errors.Is(err, ErrPoison))
			assert.Equal(t, tt.field, perr.Field)
			assert.Equal(t, "id-1", perr.RowID)
			assert.Equal(t, "id-1", row.ID)
			assert.Equal(t, "o", row.AggregateType)
		})
	}
}

func TestMapperHeaderGroups(t *testing.T) {
	r := Row{ID: "id-1", AggregateType: "order", AggregateID: "7", EventType: "order.created", RoutingKey: "k",
		Payload: []byte(`{}`), Headers: []byte(`{"dop-msg-id": "id-1", "n": 2}`), CreatedAt: time.Date(2026, 12, 1, 10, 0, 0, 5000, time.UTC)}
	keys := func(t amqp.Table) []string {
		var out []string
		for k := range t {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		groups string
		want   []string
	}{
		{"all", []string{"aggregate_id", "aggregate_type", "cloudEvents_id", "cloudEvents_source", "cloudEvents_specversion", "cloudEvents_subject", "cloudEvents_time", "cloudEvents_type", "dop-msg-id", "n"}},
		{"row", []string{"dop-msg-id", "n"}},
		{"aggregate", []string{"aggregate_id", "aggregate_type"}},
		{"row,cloudevents", []string{"cloudEvents_id", "cloudEvents_source", "cloudEvents_specversion", "cloudEvents_subject", "cloudEvents_time", "cloudEvents_type", "dop-msg-id", "n"}},
		{"none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.groups, func(t *testing.T) {
			g, err := ParseHeaderGroups(tt.groups)
			require.NoError(t, err)
			m := Mapper{Source: "/s", Groups: g}
			msg, warn := m.Map(r)
			require.NoError(t, warn)
			assert.Equal(t, tt.want, keys(msg.Headers))
			// The properties do not depend on the groups.
			assert.Equal(t, "id-1", msg.MessageId)
			assert.Equal(t, "order.created", msg.Type)
			assert.Equal(t, r.CreatedAt, msg.Timestamp)
			assert.Equal(t, amqp.Persistent, msg.DeliveryMode)
		})
	}
	g, err := ParseHeaderGroups(" row , aggregate ")
	require.NoError(t, err)
	assert.Equal(t, "row,aggregate", g.String())
	_, err = ParseHeaderGroups("row,dop")
	assert.ErrorContains(t, err, `"dop" is not a header group`)
}

// The mapper reuses its table: the second row's message has only its own
// headers, and the cached time follows the row.
func TestMapperReusesItsTable(t *testing.T) {
	m := Mapper{Source: "/s", Groups: AllGroups}
	a := Row{ID: "a", Headers: []byte(`{"only-a": 1}`), CreatedAt: time.Unix(100, 0)}
	b := Row{ID: "b", Headers: []byte(`{}`), CreatedAt: time.Unix(200, 0)}
	_, _ = m.Map(a)
	msg, _ := m.Map(b)
	assert.NotContains(t, msg.Headers, "only-a")
	assert.Equal(t, "b", msg.Headers["cloudEvents_id"])
	assert.Equal(t, time.Unix(200, 0).UTC().Format(time.RFC3339Nano), msg.Headers["cloudEvents_time"])
	msg, warn := m.Map(Row{ID: "c", Headers: []byte(`[1]`), CreatedAt: time.Unix(200, 0)})
	require.Error(t, warn)
	assert.Equal(t, "[1]", msg.Headers[HeaderInvalidHeaders])
}

// BenchmarkMap maps a saga row to its message, per header set
// (CDC_RELAY_HEADERS).
func BenchmarkMap(b *testing.B) {
	r := Row{ID: "2b1f7a1e-0000-4000-8000-000000000001", AggregateType: "order", AggregateID: "42", EventType: "order.status_changed",
		RoutingKey: "stock.v1", Payload: []byte(`{"order_id": 42, "status": "created"}`),
		Headers:   []byte(`{"dop-msg-id": "2b1f7a1e-0000-4000-8000-000000000001", "dop-msg-destination": "/exchange/saga/stock.v1", "dop-msg-type": "Published", "dop-msg-sent-time": "2026-12-01T10:00:00Z"}`),
		CreatedAt: time.Now()}
	for _, g := range []struct {
		name   string
		groups HeaderGroups
	}{{"all", AllGroups}, {"none", 0}, {"row", GroupRow}, {"aggregate", GroupAggregate}, {"cloudevents", GroupCloudEvents}} {
		b.Run(g.name, func(b *testing.B) {
			m := Mapper{Source: "/cdc-relay/db/public.outbox", Groups: g.groups}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = m.Map(r)
			}
		})
	}
}

// parseTimestamptz reads what pgx reads, the same instant, on the layout
// the walsender prints and on every other.
func TestParseTimestamptzAgreesWithPgx(t *testing.T) {
	for _, in := range []string{
		"2026-11-25 10:15:44.123456+00", "2026-11-25 10:15:44+00", "2026-11-25 10:15:44.1+00",
		"2026-11-25 10:15:44.123456+05:30", "2026-11-25 10:15:44.123456-08", "1999-12-31 23:59:59.999999+00",
		"0001-01-01 00:00:00+00", "2026-11-25 10:15:44.123456+00 BC", "infinity", "-infinity",
		"12026-11-25 10:15:44+00", "2026-02-30 10:15:44+00", "not a time", "",
	} {
		var want time.Time
		wantErr := typeMap.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, []byte(in), &want)
		got, err := parseTimestamptz([]byte(in))
		if wantErr != nil {
			assert.Error(t, err, "%q", in)
			continue
		}
		if assert.NoError(t, err, "%q", in) {
			assert.True(t, want.Equal(got), "%q: got %v, pgx reads %v", in, got, want)
		}
	}
}

// FuzzParseTimestamptz: for any text, the fast path never disagrees with pgx.
func FuzzParseTimestamptz(f *testing.F) {
	for _, s := range []string{"2026-11-25 10:15:44.123456+00", "2026-11-25 10:15:44+05:30", "infinity"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var want time.Time
		wantErr := typeMap.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, []byte(in), &want)
		got, err := parseTimestamptz([]byte(in))
		if (wantErr == nil) != (err == nil) {
			t.Fatalf("%q: pgx error %v, ours %v", in, wantErr, err)
		}
		if err == nil && !want.Equal(got) {
			t.Fatalf("%q: got %v, pgx reads %v", in, got, want)
		}
	})
}

// FuzzMap: whatever a row holds, Map never panics, the message carries the
// row's id and payload untouched, every header value is one AMQP can
// encode, and a headers column that is not an object is kept, whole, in
// HeaderInvalidHeaders with a warning rather than lost.
func FuzzMap(f *testing.F) {
	f.Add("2b1f7a1e-0000-4000-8000-000000000001", "order", "42", "order.status_changed", "stock.v1",
		[]byte(`{"order_id": 42}`), []byte(`{"dop-msg-id": "x", "n": 1, "b": true, "o": {"a": [1, "2"]}}`), int64(1764660000))
	f.Add("", "", "", "", "", []byte{}, []byte(`[1]`), int64(0))
	f.Add("id", "t", "a", "e", "k", []byte(`null`), []byte(`{"a": 1e999}`), int64(-1))
	f.Add("id", "t", "a", "e", "k", []byte(`{}`), []byte("{\"\xff\": \"\x00\"}"), int64(253402300799))
	f.Fuzz(func(t *testing.T, id, aggType, aggID, eventType, key string, payload, headers []byte, created int64) {
		r := Row{ID: id, AggregateType: aggType, AggregateID: aggID, EventType: eventType, RoutingKey: key,
			Payload: payload, Headers: headers, CreatedAt: time.Unix(created, 0)}
		for _, groups := range []HeaderGroups{AllGroups, 0, GroupRow} {
			m := Mapper{Source: "/cdc-relay/db/public.outbox", Groups: groups}
			msg, warning := m.Map(r)
			if msg.MessageId != id {
				t.Fatalf("message_id %q, want the row's %q", msg.MessageId, id)
			}
			if !bytes.Equal(msg.Body, payload) {
				t.Fatalf("body %q, want the payload %q", msg.Body, payload)
			}
			if err := msg.Headers.Validate(); err != nil {
				t.Fatalf("headers AMQP cannot encode: %v (%#v)", err, msg.Headers)
			}
			if warning != nil && groups&GroupRow != 0 {
				if got, _ := msg.Headers[HeaderInvalidHeaders].(string); got != string(headers) {
					t.Fatalf("warning %v, but %s holds %q, want the column %q", warning, HeaderInvalidHeaders, got, headers)
				}
			}
		}
	})
}
