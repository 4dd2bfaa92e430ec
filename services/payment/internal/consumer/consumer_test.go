package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/payment/internal/app"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		body string
		want app.OrderEvent
		err  string
	}{
		{`{"order_id": 1, "customer_id": "c", "amount": "1", "status": "reserved", "quantity": 1}`, app.OrderEvent{OrderID: "1", CustomerID: "c", Amount: "1", Status: "reserved"}, ""},
		{`{"order_id": "2", "customer_id": 3, "amount": 1000.00, "status": "reserved"}`, app.OrderEvent{OrderID: "2", CustomerID: "3", Amount: "1000.00", Status: "reserved"}, ""},
		{`{"status": "created"}`, app.OrderEvent{Status: "created"}, ""},
		{`{"status": "payment_confirmed"}`, app.OrderEvent{Status: "payment_confirmed"}, ""},
		{`1`, app.OrderEvent{}, "unprocessable message: body is not a JSON object"},
		{`{"status": 1}`, app.OrderEvent{}, "unprocessable message: status is not a string"},
		{`{"status": "paid"}`, app.OrderEvent{}, `unprocessable message: status "paid" is not an order status`},
		{`{"status": "reserved", "customer_id": "c", "amount": "1"}`, app.OrderEvent{}, "unprocessable message: order_id: missing"},
		{`{"status": "reserved", "order_id": 1, "amount": "1"}`, app.OrderEvent{}, "unprocessable message: customer_id is missing, empty or longer than 20 characters"},
		{`{"status": "reserved", "order_id": 1, "customer_id": "c", "amount": ""}`, app.OrderEvent{}, "unprocessable message: amount is missing, empty or longer than 20 characters"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			got, err := Parse([]byte(tc.body))
			if tc.err != "" {
				assert.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

type fakeApplier struct{ err error }

func (f fakeApplier) Apply(context.Context, pgx.Tx, app.OrderEvent) (app.Status, error) {
	return "", f.err
}

func TestHandler(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	body := []byte(`{"status": "created"}`)
	assert.NoError(t, Handler(fakeApplier{}, log)(context.Background(), nil, platform.Delivery{Body: body}))
	assert.EqualError(t, Handler(fakeApplier{err: errors.New("gone")}, log)(context.Background(), nil, platform.Delivery{Body: body}), "gone")
	assert.ErrorIs(t, Handler(fakeApplier{}, log)(context.Background(), nil, platform.Delivery{Body: []byte(`x`)}), platform.ErrUnprocessable)
}

// FuzzParse: any body either parses into an event payment can use or is
// refused as unprocessable (rejected to the dead-letter queue); it never
// panics nor asks for a retry.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"status": "reserved", "order_id": 7, "customer_id": 1, "amount": "10.00"}`,
		`{"status": "created"}`, `{"status": "reserved", "order_id": 7, "customer_id": 1, "amount": "1e999999999"}`,
		`{"status": "reserved", "order_id": -1, "customer_id": "x", "amount": 5}`, `[]`, `null`, ``, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Parse(body)
		if err != nil {
			if !errors.Is(err, platform.ErrUnprocessable) {
				t.Fatalf("%q: error %v is not unprocessable: the message would be retried forever", body, err)
			}
			return
		}
		if ev.Status == app.OrderReserved && (ev.OrderID == "" || ev.CustomerID == "" || ev.Amount == "") {
			t.Fatalf("%q: accepted an unusable reserved event %+v", body, ev)
		}
	})
}
