// Package tracing sets up OpenTelemetry tracing for the services and the
// relay, from the standard OTEL_* environment, and carries the W3C trace
// context (traceparent, tracestate) in outbox headers and AMQP headers.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then nothing is recorded,
// nothing is exported and no trace context is written, and the global
// OpenTelemetry providers stay the no-op ones.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the W3C trace context, the only format carried.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is the result of Setup.
type Tracing struct {
	// Enabled is whether spans are recorded and exported.
	Enabled bool
	// Endpoint is where they go, its password masked (for the start-up log).
	Endpoint string
	// Shutdown flushes what is buffered and stops the exporter.
	Shutdown func(context.Context) error
}

// Setup reads the environment through getenv. When an OTLP endpoint is
// set and OTEL_SDK_DISABLED is not true, it installs a tracer provider
// that batches spans to that endpoint over OTLP/HTTP (protobuf), with
// service.name OTEL_SERVICE_NAME or service, and the W3C trace context as
// the global propagator. The exporter reads the rest of the standard
// variables itself (headers, timeout, OTEL_BSP_*, OTEL_TRACES_SAMPLER).
func Setup(ctx context.Context, getenv func(string) string, service string) (Tracing, error) {
	off := Tracing{Shutdown: func(context.Context) error { return nil }}
	// The traces endpoint is the whole URL; the general one is a base, to
	// which /v1/traces is appended (as every OpenTelemetry SDK does).
	variable := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	endpoint := getenv(variable)
	if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); endpoint == "" && base != "" {
		variable, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimRight(base, "/")+"/v1/traces"
	}
	if endpoint == "" || strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return off, nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" {
		return off, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: only http/protobuf is supported (Jaeger and the OpenTelemetry Collector take it on :4318)", protocol)
	}
	// Errors and logs show the URL without a password it may carry.
	u, err := url.Parse(endpoint)
	if err != nil {
		return off, fmt.Errorf("%s is not a URL", variable)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return off, fmt.Errorf("%s: %q is not an http:// or https:// URL", variable, u.Redacted())
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return off, fmt.Errorf("%s: OTLP exporter for %s: %w", variable, u.Redacted(), err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = service
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return off, fmt.Errorf("tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	return Tracing{Enabled: true, Endpoint: u.Redacted(), Shutdown: func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}}, nil
}

// Tracer is the tracer of the project's instrumentation, from the global
// provider (a no-op one unless Setup enabled tracing).
func Tracer() trace.Tracer { return otel.Tracer("github.com/saga-cdc/saga") }

// AMQPCarrier carries the trace context in an AMQP header table: string
// values under their W3C names.
type AMQPCarrier amqp.Table

// Get returns the value of key, when it is a string.
func (c AMQPCarrier) Get(key string) string {
	switch v := c[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// Set sets key to value.
func (c AMQPCarrier) Set(key, value string) { c[key] = value }

// Keys lists the table's keys.
func (c AMQPCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx's span into headers (traceparent,
// and tracestate when set), when that span is valid and tracing is on (the
// global propagator is then the W3C one; otherwise it writes nothing).
func Inject(ctx context.Context, headers map[string]string) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(headers))
}

// Extract returns ctx with the remote span context carried by an AMQP
// header table, when tracing is on and there is one.
func Extract(ctx context.Context, headers amqp.Table) context.Context {
	if headers == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, AMQPCarrier(headers))
}
