package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/otlptest"
)

// One order's saga is one trace: the order service's request span is its
// root; every relay's publish span is a child of the span that wrote its
// row (the request, or a consumer's message span); every consumer's span is
// a child of the span that wrote the message it handles; and the three
// services and the three relays are all in it.
func TestSagaIsOneTrace(t *testing.T) {
	t.Parallel()
	otlp := otlptest.Start(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL, "OTEL_BSP_SCHEDULE_DELAY": "100"}
	s := StartSystemWith(t, env, env)
	o := s.CreateOrder(t, `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`)
	require.Eventually(t, func() bool { return ended(s.State(t), o.OrderID) }, 60*time.Second, 50*time.Millisecond, "the saga did not end")

	root, ok := otlptest.Span{}, false
	require.Eventually(t, func() bool {
		root, ok = otlp.Find(func(sp otlptest.Span) bool { return sp.Service == "order" && sp.Name == "POST /api/v1/orders/" })
		return ok
	}, 15*time.Second, 50*time.Millisecond, "no span of the order's POST")
	assert.Equal(t, "SERVER", root.Kind)
	assert.Empty(t, root.Parent, "the request is the trace's root")
	assert.Equal(t, "201", root.Attrs["http.response.status_code"])

	// Wait until each service's consumer and each relay has a span in it,
	// and every span's parent has arrived too: each process sends its own
	// batches, every 100 ms, so a child can come before its parent.
	var spans []otlptest.Span
	var missing string
	complete := func() bool {
		spans = otlp.Trace(root.Trace)
		seen := map[string]bool{}
		ids := map[string]bool{}
		for _, sp := range spans {
			seen[sp.Service+"/"+sp.Kind+"/"+sp.Attrs["cdc_relay.slot"]] = true
			ids[sp.ID] = true
		}
		relays := 0
		for k := range seen {
			if strings.HasPrefix(k, "cdc-relay/PRODUCER/") {
				relays++
			}
		}
		var names []string
		orphans := 0
		for _, sp := range spans {
			names = append(names, sp.Service+": "+sp.Name)
			if sp.Parent != "" && !ids[sp.Parent] {
				orphans++
			}
		}
		missing = fmt.Sprintf("%d relays, %d spans whose parent has not arrived; spans: %v", relays, orphans, names)
		return relays == 3 && orphans == 0 && seen["stock/CONSUMER/"] && seen["payment/CONSUMER/"] && seen["order/CONSUMER/"]
	}
	deadline := time.Now().Add(20 * time.Second)
	for !complete() {
		require.False(t, time.Now().After(deadline), "the trace is not complete after 20 s: %s", missing)
		time.Sleep(100 * time.Millisecond)
	}

	acked := map[string]int{}
	byID := map[string]otlptest.Span{}
	for _, sp := range spans {
		byID[sp.ID] = sp
	}
	for _, sp := range spans {
		if sp.ID == root.ID {
			continue
		}
		parent, ok := byID[sp.Parent]
		require.True(t, ok, "%s %q: its parent %s is not in the trace", sp.Service, sp.Name, sp.Parent)
		switch sp.Kind {
		case "PRODUCER": // a relay: the row was written by a request or a consumer
			assert.Equal(t, "cdc-relay", sp.Service)
			assert.Contains(t, []string{"SERVER", "CONSUMER"}, parent.Kind, "relay span %q under %q", sp.Name, parent.Name)
			assert.Equal(t, "publish "+s.Exchange, sp.Name)
			assert.NotEmpty(t, sp.Attrs["cdc_relay.lsn"])
			assert.NotEmpty(t, sp.Attrs["messaging.rabbitmq.destination.routing_key"])
			assert.False(t, sp.End.Before(sp.Start))
		case "CONSUMER": // a service's message: written by a request or a consumer of another service
			assert.Contains(t, []string{"SERVER", "CONSUMER"}, parent.Kind, "consumer span %q under %q", sp.Name, parent.Name)
			assert.NotEqual(t, sp.Service, parent.Service, "%s consumed its own message", sp.Service)
			// A redelivery (a relay's resend, a retry after a transient
			// failure) is a span of its own, with its outcome.
			outcome := sp.Attrs["saga.outcome"]
			assert.Contains(t, []string{"ack", "duplicate", "retry"}, outcome)
			assert.Equal(t, fmt.Sprint(outcome == "duplicate"), sp.Attrs["saga.inbox.duplicate"])
			assert.NotEmpty(t, sp.Attrs["messaging.message.id"])
			if outcome == "ack" {
				acked[sp.Service]++
			}
		default:
			t.Errorf("unexpected span %s %q (%s) in the saga's trace", sp.Service, sp.Name, sp.Kind)
		}
	}
	for _, svc := range []string{"stock", "payment", "order"} {
		assert.Positive(t, acked[svc], "no message of the saga acked by %s", svc)
	}
}
