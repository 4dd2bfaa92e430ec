package outbox

import (
	"testing"
)

// BenchmarkDecodeAndMap is the relay's per-row work between pgoutput and
// the broker library: decode the tuple, map the row to a message.
func BenchmarkDecodeAndMap(b *testing.B) {
	l, err := NewLayout(relation(Columns...))
	if err != nil {
		b.Fatal(err)
	}
	tuple := text("0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01", "order", "42", "order.status_changed", "stock.v1",
		`{"amount": "1", "status": "created", "order_id": 42, "quantity": 1, "product_id": "1", "customer_id": "1"}`,
		`{"dop-msg-id": "0b7e0a2c-6e3a-4f7b-9d56-1f6b7c1c9a01", "dop-msg-type": "Published", "dop-msg-sent-time": "2026-11-25T10:15:44.123456Z", "dop-msg-destination": "/exchange/saga/stock.v1"}`,
		"2026-11-25 10:15:44.123456+00")
	b.ReportAllocs()
	for b.Loop() {
		row, err := l.Decode(tuple)
		if err != nil {
			b.Fatal(err)
		}
		if _, warn := Message(row, "/cdc-relay/db/public.outbox"); warn != nil {
			b.Fatal(warn)
		}
	}
}
