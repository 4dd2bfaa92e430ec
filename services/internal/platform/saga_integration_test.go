package platform

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

// One order's messages in a service: the outbox rows it wrote (with the
// trace id of their traceparent) and the messages it consumed, a duplicate
// delivery counted, not applied; another order's and bad ids are not mixed
// in.
func TestSagaRoute(t *testing.T) {
	tracingOn(t)
	pool := migratedPool(t)
	ctx := context.Background()
	w := OutboxWriter{Exchange: "saga"}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, m := range []Message{
			{AggregateType: "order", AggregateID: "7", EventType: "order.created", RoutingKey: "order.v1"},
			{AggregateType: "order", AggregateID: "8", EventType: "order.created", RoutingKey: "order.v1"},
		} {
			if _, err := w.Write(trace.ContextWithSpanContext(ctx, sc), tx, m); err != nil {
				return err
			}
		}
		return nil
	}))
	c := &Consumer{Pool: pool, Queue: "order.v1", Logger: discard, Handler: func(context.Context, pgx.Tx, Delivery) error { return nil }}
	for _, d := range []Delivery{
		{MessageID: "r1", Type: "stock.reserved", Headers: amqp.Table{"aggregate_id": "7"}},
		{MessageID: "r1", Type: "stock.reserved", Headers: amqp.Table{"aggregate_id": "7"}},
		{MessageID: "p1", Type: "payment.confirmed", Headers: amqp.Table{"cloudEvents_subject": []byte("7")}},
		{MessageID: "x1", Type: "stock.reserved", Headers: amqp.Table{"aggregate_id": "8"}},
		{MessageID: "n1", Type: "stock.reserved"},
	} {
		_, err := c.Handle(ctx, d)
		require.NoError(t, err)
	}

	r := NewRouter(discard)
	SagaRoute(r, pool, "order", discard)
	get := func(path string) (int, []byte) {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, w.Body.Bytes()
	}
	code, body := get("/api/v1/sagas/7/")
	require.Equal(t, http.StatusOK, code, string(body))
	var got SagaMessages
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "order", got.Service)
	assert.Equal(t, "7", got.OrderID)
	require.Len(t, got.Outbox, 1)
	assert.Equal(t, "order.created", got.Outbox[0].EventType)
	assert.Equal(t, sc.TraceID().String(), got.Outbox[0].TraceID)
	require.Len(t, got.Inbox, 2)
	assert.Equal(t, "r1", got.Inbox[0].MessageID)
	assert.Equal(t, 1, got.Inbox[0].Duplicates, "the second delivery was counted")
	assert.NotNil(t, got.Inbox[0].LastDuplicateAt)
	assert.Equal(t, "p1", got.Inbox[1].MessageID, "the aggregate from cloudEvents_subject")
	assert.Zero(t, got.Inbox[1].Duplicates)
	assert.Nil(t, got.Inbox[1].LastDuplicateAt)

	code, body = get("/api/v1/sagas/9/")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"service": "order", "order_id": "9", "outbox": [], "inbox": []}`, string(body))
	for _, bad := range []string{"/api/v1/sagas/x/", "/api/v1/sagas/-1/", "/api/v1/sagas/12345678901234567890/"} {
		code, body = get(bad)
		assert.Equal(t, http.StatusBadRequest, code, bad)
		assert.JSONEq(t, `{"detail": "order_id must be a whole number"}`, string(body))
	}
	pool.Close()
	code, _ = get("/api/v1/sagas/7/")
	assert.Equal(t, http.StatusInternalServerError, code)
}
