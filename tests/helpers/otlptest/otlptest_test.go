package otlptest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// What the OpenTelemetry SDK's own OTLP/HTTP exporter sends arrives, with
// its service, kind, parent link and attributes; a request that is not an
// OTLP export is refused.
func TestReceiver(t *testing.T) {
	r := Start(t)
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(r.URL+"/v1/traces"))
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "svc"))))
	tr := tp.Tracer("test")
	pctx, parent := tr.Start(ctx, "parent", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(pctx, "child", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("s", "x"), attribute.Int("n", 3), attribute.Bool("b", true)))
	child.End()
	parent.End()
	require.NoError(t, tp.Shutdown(ctx))

	id := parent.SpanContext().TraceID().String()
	spans := r.Trace(id)
	require.Len(t, spans, 2)
	c, ok := r.Find(func(s Span) bool { return s.Name == "child" })
	require.True(t, ok)
	assert.Equal(t, "svc", c.Service)
	assert.Equal(t, "CONSUMER", c.Kind)
	assert.Equal(t, parent.SpanContext().SpanID().String(), c.Parent)
	assert.Equal(t, map[string]string{"s": "x", "n": "3", "b": "true"}, c.Attrs)
	assert.False(t, c.End.Before(c.Start))
	p, _ := r.Find(func(s Span) bool { return s.Name == "parent" })
	assert.Empty(t, p.Parent)
	assert.Equal(t, "SERVER", p.Kind)
	_, ok = r.Find(func(s Span) bool { return s.Name == "nothing" })
	assert.False(t, ok)

	for _, req := range []struct{ path, ctype, body string }{
		{"/v1/metrics", "application/x-protobuf", ""},
		{"/v1/traces", "application/json", "{}"},
		{"/v1/traces", "application/x-protobuf", "\xff\xff"},
	} {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Post(r.URL+req.path, req.ctype, strings.NewReader(req.body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %s", req.path, req.ctype)
	}
}
