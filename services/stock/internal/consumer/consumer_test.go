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
	"github.com/saga-cdc/saga/services/stock/internal/app"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		body string
		want app.OrderEvent
		err  string
	}{
		{`{"order_id": 1, "product_id": "1", "quantity": 2, "status": "created", "amount": "1"}`, app.OrderEvent{OrderID: "1", ProductID: "1", Quantity: 2, Status: "created"}, ""},
		{`{"order_id": "7", "product_id": 2, "quantity": 0, "status": "created"}`, app.OrderEvent{OrderID: "7", ProductID: "2", Status: "created"}, ""},
		{`{"order_id": 1, "status": "payment_denied"}`, app.OrderEvent{OrderID: "1", Status: "payment_denied"}, ""},
		{`{"status": "reserved"}`, app.OrderEvent{Status: "reserved"}, ""},
		{`{"status": "not_reserved"}`, app.OrderEvent{Status: "not_reserved"}, ""},
		{`[]`, app.OrderEvent{}, "unprocessable message: body is not a JSON object"},
		{`{"order_id": 1}`, app.OrderEvent{}, "unprocessable message: status is missing"},
		{`{"status": "lost"}`, app.OrderEvent{}, `unprocessable message: status "lost" is not an order status`},
		{`{"status": "payment_confirmed", "order_id": false}`, app.OrderEvent{}, "unprocessable message: order_id: not a string or a number"},
		{`{"order_id": 1, "quantity": 1, "status": "created"}`, app.OrderEvent{}, "unprocessable message: product_id is missing, empty or longer than 20 characters"},
		{`{"order_id": 1, "product_id": " ", "quantity": 1, "status": "created"}`, app.OrderEvent{}, "unprocessable message: product_id is missing, empty or longer than 20 characters"},
		{`{"order_id": 1, "product_id": "1", "status": "created"}`, app.OrderEvent{}, "unprocessable message: quantity is not an integer between 0 and 2147483647"},
		{`{"order_id": 1, "product_id": "1", "quantity": -1, "status": "created"}`, app.OrderEvent{}, "unprocessable message: quantity is not an integer between 0 and 2147483647"},
		{`{"order_id": 1, "product_id": "1", "quantity": 2147483648, "status": "created"}`, app.OrderEvent{}, "unprocessable message: quantity is not an integer between 0 and 2147483647"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			got, err := Parse([]byte(tc.body))
			if tc.err != "" {
				assert.EqualError(t, err, tc.err)
				assert.ErrorIs(t, err, platform.ErrUnprocessable)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

type fakeApplier struct{ err error }

func (f fakeApplier) Apply(context.Context, pgx.Tx, app.OrderEvent) (app.Decision, error) {
	return app.Decision{}, f.err
}

func TestHandler(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	body := []byte(`{"order_id": 1, "status": "payment_confirmed"}`)
	assert.NoError(t, Handler(fakeApplier{}, log)(context.Background(), nil, platform.Delivery{Body: body}))
	assert.EqualError(t, Handler(fakeApplier{err: errors.New("gone")}, log)(context.Background(), nil, platform.Delivery{Body: body}), "gone")
	assert.ErrorIs(t, Handler(fakeApplier{}, log)(context.Background(), nil, platform.Delivery{Body: []byte(`x`)}), platform.ErrUnprocessable)
}

// FuzzParse: any body either parses into an event the decision can use or
// is refused as unprocessable (the consumer then rejects it to the
// dead-letter queue); it never panics nor asks for a retry.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"status": "created", "order_id": 7, "product_id": "p1", "quantity": 2}`,
		`{"status": "reserved"}`, `{"status": "created", "order_id": "7", "product_id": " ", "quantity": -1}`,
		`{"status": "created", "order_id": 1e999, "product_id": "p", "quantity": 2147483648}`, `[]`, `null`, ``, "\xff",
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
		if ev.Status == app.OrderCreated && (ev.OrderID == "" || ev.ProductID == "" || ev.Quantity < 0) {
			t.Fatalf("%q: accepted an unusable created event %+v", body, ev)
		}
	})
}
