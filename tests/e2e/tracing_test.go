package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// span is one span an OTLP receiver got.
type span struct {
	service, name, kind string
	trace, id, parent   string
	start, end          time.Time
	attrs               map[string]string
}

// otlpReceiver is an OTLP/HTTP traces endpoint (protobuf), as Jaeger and
// the OpenTelemetry Collector serve on :4318.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []span
}

func startOTLP(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces, application/x-protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		var export coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &export)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(&export)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func attrMap(kv []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, a := range kv {
		switch v := a.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[a.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[a.GetKey()] = fmt.Sprint(v.IntValue)
		case *commonpb.AnyValue_BoolValue:
			m[a.GetKey()] = fmt.Sprint(v.BoolValue)
		}
	}
	return m
}

func (r *otlpReceiver) add(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		service := attrMap(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, span{
					service: service, name: s.GetName(), kind: strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_"),
					trace: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
					parent: hex.EncodeToString(s.GetParentSpanId()),
					start:  time.Unix(0, int64(s.GetStartTimeUnixNano())), end: time.Unix(0, int64(s.GetEndTimeUnixNano())),
					attrs: attrMap(s.GetAttributes()),
				})
			}
		}
	}
}

// trace is every span of trace id.
func (r *otlpReceiver) trace(id string) []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []span
	for _, s := range r.spans {
		if s.trace == id {
			out = append(out, s)
		}
	}
	return out
}

// find is the first span of the services' POST of an order.
func (r *otlpReceiver) find(match func(span) bool) (span, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if match(s) {
			return s, true
		}
	}
	return span{}, false
}

// One order's saga is one trace: the order service's request span is its
// root; every relay's publish span is a child of the span that wrote its
// row (the request, or a consumer's message span); every consumer's span is
// a child of the span that wrote the message it handles; and the three
// services and the three relays are all in it.
func TestSagaIsOneTrace(t *testing.T) {
	t.Parallel()
	otlp := startOTLP(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.srv.URL, "OTEL_BSP_SCHEDULE_DELAY": "100"}
	s := StartSystemWith(t, env, env)
	o := s.CreateOrder(t, `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`)
	require.Eventually(t, func() bool { return ended(s.State(t), o.OrderID) }, 60*time.Second, 50*time.Millisecond, "the saga did not end")

	root, ok := span{}, false
	require.Eventually(t, func() bool {
		root, ok = otlp.find(func(sp span) bool { return sp.service == "order" && sp.name == "POST /api/v1/orders/" })
		return ok
	}, 15*time.Second, 50*time.Millisecond, "no span of the order's POST")
	assert.Equal(t, "SERVER", root.kind)
	assert.Empty(t, root.parent, "the request is the trace's root")
	assert.Equal(t, "201", root.attrs["http.response.status_code"])

	// Wait until each service's consumer and each relay has a span in it:
	// the batches arrive every 100 ms.
	var spans []span
	require.Eventually(t, func() bool {
		spans = otlp.trace(root.trace)
		seen := map[string]bool{}
		for _, sp := range spans {
			seen[sp.service+"/"+sp.kind+"/"+sp.attrs["cdc_relay.slot"]] = true
		}
		relays := 0
		for k := range seen {
			if strings.HasPrefix(k, "cdc-relay/PRODUCER/") {
				relays++
			}
		}
		return relays == 3 && seen["stock/CONSUMER/"] && seen["payment/CONSUMER/"] && seen["order/CONSUMER/"]
	}, 20*time.Second, 100*time.Millisecond, "the trace lacks a relay or a consumer: %v", func() []string {
		var names []string
		for _, sp := range otlp.trace(root.trace) {
			names = append(names, sp.service+": "+sp.name)
		}
		return names
	}())

	acked := map[string]int{}
	byID := map[string]span{}
	for _, sp := range spans {
		byID[sp.id] = sp
	}
	for _, sp := range spans {
		if sp.id == root.id {
			continue
		}
		parent, ok := byID[sp.parent]
		require.True(t, ok, "%s %q: its parent %s is not in the trace", sp.service, sp.name, sp.parent)
		switch sp.kind {
		case "PRODUCER": // a relay: the row was written by a request or a consumer
			assert.Equal(t, "cdc-relay", sp.service)
			assert.Contains(t, []string{"SERVER", "CONSUMER"}, parent.kind, "relay span %q under %q", sp.name, parent.name)
			assert.Equal(t, "publish "+s.Exchange, sp.name)
			assert.NotEmpty(t, sp.attrs["cdc_relay.lsn"])
			assert.NotEmpty(t, sp.attrs["messaging.rabbitmq.destination.routing_key"])
			assert.False(t, sp.end.Before(sp.start))
		case "CONSUMER": // a service's message: written by a request or a consumer of another service
			assert.Contains(t, []string{"SERVER", "CONSUMER"}, parent.kind, "consumer span %q under %q", sp.name, parent.name)
			assert.NotEqual(t, sp.service, parent.service, "%s consumed its own message", sp.service)
			// A redelivery (a relay's resend, a retry after a transient
			// failure) is a span of its own, with its outcome.
			outcome := sp.attrs["saga.outcome"]
			assert.Contains(t, []string{"ack", "duplicate", "retry"}, outcome)
			assert.Equal(t, fmt.Sprint(outcome == "duplicate"), sp.attrs["saga.inbox.duplicate"])
			assert.NotEmpty(t, sp.attrs["messaging.message.id"])
			if outcome == "ack" {
				acked[sp.service]++
			}
		default:
			t.Errorf("unexpected span %s %q (%s) in the saga's trace", sp.service, sp.name, sp.kind)
		}
	}
	for _, svc := range []string{"stock", "payment", "order"} {
		assert.Positive(t, acked[svc], "no message of the saga acked by %s", svc)
	}
}
