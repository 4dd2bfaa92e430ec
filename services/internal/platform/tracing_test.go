package platform

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/saga-cdc/saga/internal/tracing"
)

// tracingOn installs a recording tracer provider and the W3C propagator for
// the test, as tracing.Setup does when an endpoint is set.
func tracingOn(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(tracing.Propagator)
	// Back to what the process has with tracing off (the global delegates
	// cannot be set back to themselves).
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	return rec
}

// captureExec is an Execer that keeps the outbox row's headers.
type captureExec struct{ headers map[string]string }

func (c *captureExec) Exec(_ context.Context, _ string, args ...any) (pgconn.CommandTag, error) {
	c.headers = map[string]string{}
	if err := json.Unmarshal(args[6].([]byte), &c.headers); err != nil {
		return pgconn.CommandTag{}, err
	}
	return pgconn.NewCommandTag("INSERT 0 1"), nil
}

func attr(kv []attribute.KeyValue, key string) string {
	for _, a := range kv {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// A request's span is a child of the caller's traceparent, named by its
// route, with its status; the outbox row its handler writes carries the
// span's trace context.
func TestRequestSpanReachesTheOutboxRow(t *testing.T) {
	rec := tracingOn(t)
	r := NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var row captureExec
	r.POST("/api/v1/orders/", func(c *gin.Context) {
		_, err := OutboxWriter{Exchange: "saga"}.Write(c.Request.Context(), &row, Message{
			AggregateType: "order", AggregateID: "1", EventType: "order.created", RoutingKey: "order.v1", Payload: map[string]int{"a": 1}})
		require.NoError(t, err)
		c.JSON(http.StatusCreated, gin.H{})
	})
	r.GET("/boom/", func(c *gin.Context) { c.JSON(http.StatusInternalServerError, gin.H{}) })

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders/", strings.NewReader(`{}`))
	req.Header.Set("traceparent", parent)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	require.Equal(t, http.StatusCreated, w.Code)

	spans := rec.Ended()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "POST /api/v1/orders/", s.Name())
	assert.Equal(t, trace.SpanKindServer, s.SpanKind())
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext().TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
	assert.Equal(t, "201", attr(s.Attributes(), "http.response.status_code"))
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+s.SpanContext().SpanID().String()+"-01", row.headers["traceparent"],
		"the outbox row carries the request span's context")
	assert.NotEmpty(t, row.headers["dop-msg-id"])

	w = httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boom/", nil))
	spans = rec.Ended()
	require.Len(t, spans, 2)
	assert.Equal(t, codes.Error, spans[1].Status().Code, "a 5xx marks its span failed")
	assert.False(t, spans[1].Parent().IsValid(), "no traceparent: a root span")
}

// With tracing off nothing is written to the row but the headers the
// contract names.
func TestOutboxRowWithoutTracing(t *testing.T) {
	var row captureExec
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}))
	_, err := OutboxWriter{Exchange: "saga"}.Write(ctx, &row, Message{AggregateType: "order", AggregateID: "1", EventType: "e", RoutingKey: "order.v1"})
	require.NoError(t, err)
	assert.NotContains(t, row.headers, "traceparent")
	assert.Len(t, row.headers, 4)
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OutcomeAck: "ack", OutcomeDuplicate: "duplicate", OutcomeReject: "reject", OutcomeRetry: "retry", Outcome(9): "Outcome(9)"} {
		assert.Equal(t, want, o.String())
	}
}

func TestTraceparentID(t *testing.T) {
	for tp, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "",
		"00-4bf92f35-00f067aa0ba902b7-01":                         "",
		"":                                                        "",
	} {
		assert.Equal(t, want, traceparentID(tp), tp)
	}
}

func TestAggregateID(t *testing.T) {
	assert.Equal(t, "7", AggregateID(amqp.Table{"aggregate_id": "7", "cloudEvents_subject": "8"}))
	assert.Equal(t, "8", AggregateID(amqp.Table{"aggregate_id": "", "cloudEvents_subject": []byte("8")}))
	assert.Equal(t, "", AggregateID(amqp.Table{"aggregate_id": int32(7)}))
	assert.Equal(t, "", AggregateID(nil))
}
