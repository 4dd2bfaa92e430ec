package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// asyncSchemas are the payload and header schemas of docs/asyncapi.yaml,
// read as JSON Schema (the AsyncAPI document's schemas use only what
// kin-openapi's schemas read: type, required, properties, enum, minimum).
func asyncSchemas(t *testing.T) map[string]*openapi3.Schema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "asyncapi.yaml"))
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Schemas map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	out := map[string]*openapi3.Schema{}
	for name, raw := range doc.Components.Schemas {
		j, err := json.Marshal(raw)
		require.NoError(t, err)
		var s openapi3.Schema
		require.NoError(t, json.Unmarshal(j, &s), name)
		out[name] = &s
	}
	return out
}

// payloadOf names the payload schema of each message type.
var payloadOf = map[string]string{
	"order.status_changed":       "OrderStatusChanged",
	"reservation.status_changed": "ReservationStatusChanged",
	"payment.status_changed":     "PaymentStatusChanged",
}

// checkMessages holds every message a saga run published (the exchange's
// copy of each) to docs/asyncapi.yaml: its type is one the document names,
// its body matches that message's payload schema and its headers the
// relayed headers' schema.
func checkMessages(t *testing.T, msgs []amqp.Delivery) {
	t.Helper()
	schemas := asyncSchemas(t)
	require.NotEmpty(t, msgs)
	seen := map[string]int{}
	for i, d := range msgs {
		name, ok := payloadOf[d.Type]
		require.True(t, ok, "message %d: type %q is not in docs/asyncapi.yaml", i, d.Type)
		seen[d.Type]++
		var body any
		require.NoError(t, json.Unmarshal(d.Body, &body), "message %d: %s", i, d.Body)
		require.NoError(t, schemas[name].VisitJSON(body), "message %d (%s, %s): %s", i, d.Type, d.RoutingKey, d.Body)
		headers := map[string]any{}
		for k, v := range d.Headers {
			headers[k] = v
		}
		require.NoError(t, schemas["RelayedHeaders"].VisitJSON(headers), "message %d headers: %v", i, d.Headers)
		require.Equal(t, "application/json", d.ContentType, "message %d", i)
		require.Equal(t, amqp.Persistent, d.DeliveryMode, "message %d", i)
	}
	for typ := range payloadOf {
		require.Positive(t, seen[typ], "no %s message in the run", typ)
	}
}
