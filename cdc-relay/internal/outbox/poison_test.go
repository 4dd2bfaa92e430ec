package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckFindsRowsThatCanNeverBePublished(t *testing.T) {
	long := strings.Repeat("k", 256)
	base := Row{ID: "2b1f7a1e-0000-4000-8000-000000000001", AggregateType: "order", AggregateID: "1", EventType: "order.created",
		RoutingKey: "stock.v1", Payload: []byte(`{"a":1}`), Headers: []byte(`{}`), CreatedAt: time.Unix(1700000000, 0)}
	tests := []struct {
		name     string
		edit     func(*Row)
		frameMax int
		field    string // "" when the row is fine
	}{
		{"a plain row", func(*Row) {}, 131072, ""},
		{"a routing key of 255 bytes fits", func(r *Row) { r.RoutingKey = long[:255] }, 131072, ""},
		{"a routing key of 256 bytes", func(r *Row) { r.RoutingKey = long }, 131072, "routing_key"},
		{"an event type of 256 bytes", func(r *Row) { r.EventType = long }, 131072, "event_type"},
		{"a header name of 256 bytes", func(r *Row) { r.Headers = []byte(`{"` + long + `": 1}`) }, 131072, "headers." + long[:40] + "…"},
		{"a long header value is a long string and fits", func(r *Row) { r.Headers = []byte(`{"k": "` + strings.Repeat("v", 5000) + `"}`) }, 131072, ""},
		{"headers over frame_max", func(r *Row) { r.Headers = []byte(`{"k": "` + strings.Repeat("v", 5000) + `"}`) }, 4096, "headers"},
		{"no frame limit", func(r *Row) { r.Headers = []byte(`{"k": "` + strings.Repeat("v", 5000) + `"}`) }, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.edit(&r)
			msg, warn := Message(r, "/cdc-relay/db/public.outbox")
			require.NoError(t, warn)
			err := Check(r, msg, tt.frameMax)
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var perr *PoisonError
			require.ErrorAs(t, err, &perr)
			assert.True(t, errors.Is(err, ErrPoison))
			assert.Equal(t, tt.field, perr.Field)
			assert.Equal(t, r.ID, perr.RowID)
			assert.Contains(t, err.Error(), "outbox row "+r.ID+" can never be published: "+tt.field)
		})
	}
}

func TestPoisonMessageCarriesWhatFits(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := Row{ID: "2b1f7a1e-0000-4000-8000-000000000001", AggregateType: "order", AggregateID: "7", EventType: "order.created",
		RoutingKey: strings.Repeat("k", 300), Payload: []byte(`{"a": 1}`), Headers: []byte(`{"h": "v"}`), CreatedAt: created}
	msg := PoisonMessage(r, &PoisonError{RowID: r.ID, Field: "routing_key", Reason: "300 bytes"}, "/cdc-relay/db/public.outbox")
	assert.Equal(t, r.ID, msg.MessageId)
	assert.Equal(t, PoisonType, msg.Type)
	assert.Equal(t, "routing_key", msg.Headers[HeaderPoisonField])
	assert.Equal(t, "300 bytes", msg.Headers[HeaderPoisonReason])
	assert.Equal(t, created, msg.Timestamp)
	var env map[string]any
	require.NoError(t, json.Unmarshal(msg.Body, &env))
	assert.Equal(t, r.ID, env["id"])
	assert.Equal(t, r.RoutingKey, env["routing_key"], "the body has no short-string limit")
	assert.Equal(t, map[string]any{"a": 1.0}, env["payload"])
	assert.Equal(t, map[string]any{"h": "v"}, env["headers"])
	assert.Equal(t, "2026-12-01T10:00:00Z", env["created_at"])

	// A payload that is the fault stays out; its size is kept.
	r.Payload = []byte(`{"big": "` + strings.Repeat("x", 100) + `"}`)
	msg = PoisonMessage(r, &PoisonError{RowID: r.ID, Field: "payload", Reason: "over max_message_size"}, "s")
	env = nil
	require.NoError(t, json.Unmarshal(msg.Body, &env))
	assert.NotContains(t, env, "payload")
	assert.Equal(t, float64(len(r.Payload)), env["payload_bytes"])

	// A row whose columns could not all be read (a NULL created_at).
	r = Row{ID: "x", RoutingKey: "k"}
	msg = PoisonMessage(r, &PoisonError{RowID: "x", Field: "created_at", Reason: "NULL"}, "s")
	env = nil
	require.NoError(t, json.Unmarshal(msg.Body, &env))
	assert.NotContains(t, env, "created_at")
	assert.NotContains(t, env, "payload")
}
