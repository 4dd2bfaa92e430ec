package tracing

import (
	"context"
	"slices"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// restore puts back, after a test that set them, the global providers a
// process has with tracing off (the global delegates cannot be set back to
// themselves).
func restore(t *testing.T) {
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
}

func TestSetup(t *testing.T) {
	tests := []struct {
		name     string
		getenv   func(string) string
		enabled  bool
		endpoint string
		wantErr  string
	}{
		{name: "off by default", getenv: env()},
		{name: "off when the SDK is disabled", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "OTEL_SDK_DISABLED", "true")},
		{name: "on: the base endpoint gets /v1/traces", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
			enabled: true, endpoint: "http://127.0.0.1:4318/v1/traces"},
		{name: "on: the traces endpoint is taken whole", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://b:443/otlp/traces", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
			enabled: true, endpoint: "https://b:443/otlp/traces"},
		{name: "grpc is refused", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
			wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: only http/protobuf is supported"},
		{name: "no scheme", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318"),
			wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT is not a URL"},
		{name: "not a URL, named by its variable", getenv: env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a b:secret@x\x7f"),
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is not a URL"},
		{name: "a password is masked", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://u:secret@collector:4318"),
			wantErr: `"ftp://u:xxxxx@collector:4318/v1/traces" is not an http:// or https:// URL`},
		{name: "on, the password masked in Endpoint", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:secret@127.0.0.1:4318"),
			enabled: true, endpoint: "http://u:xxxxx@127.0.0.1:4318/v1/traces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore(t)
			otel.SetTracerProvider(noop.NewTracerProvider())
			otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
			tr, err := Setup(context.Background(), tt.getenv, "order")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "secret")
				return
			}
			require.NoError(t, err)
			defer tr.Shutdown(context.Background())
			assert.Equal(t, tt.enabled, tr.Enabled)
			assert.Equal(t, tt.endpoint, tr.Endpoint)
			_, span := Tracer().Start(context.Background(), "x")
			defer span.End()
			assert.Equal(t, tt.enabled, span.IsRecording(), "spans are recorded only when on")
			h := map[string]string{}
			Inject(trace.ContextWithSpan(context.Background(), span), h)
			if tt.enabled {
				assert.Contains(t, h["traceparent"], span.SpanContext().TraceID().String())
			} else {
				assert.Empty(t, h, "off: no trace context is written")
			}
		})
	}
}

// The trace context travels from outbox headers (a map) to AMQP headers
// (a table, as the relay maps them) and back out of it.
func TestCarriers(t *testing.T) {
	restore(t)
	otel.SetTextMapPropagator(Propagator)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	row := map[string]string{"dop-msg-id": "x"}
	Inject(trace.ContextWithSpanContext(context.Background(), sc), row)
	require.Equal(t, "00-01020300000000000000000000000000-0405000000000000-01", row["traceparent"])

	table := amqp.Table{"dop-msg-id": "x", "traceparent": row["traceparent"], "n": int32(1)}
	got := trace.SpanContextFromContext(Extract(context.Background(), table))
	assert.Equal(t, sc.TraceID(), got.TraceID())
	assert.Equal(t, sc.SpanID(), got.SpanID())
	assert.True(t, got.IsRemote())

	c := AMQPCarrier(table)
	assert.Empty(t, c.Get("n"), "a value that is not text is no trace context")
	c.Set("tracestate", "a=1")
	assert.Equal(t, "a=1", c.Get("tracestate"))
	c["bytes"] = []byte("b")
	assert.Equal(t, "b", c.Get("bytes"))
	keys := c.Keys()
	slices.Sort(keys)
	assert.Equal(t, []string{"bytes", "dop-msg-id", "n", "traceparent", "tracestate"}, keys)
	assert.Equal(t, context.Background(), Extract(context.Background(), nil))
}
