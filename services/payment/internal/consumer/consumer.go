// Package consumer turns Order's messages on payment.v1 into payments.
package consumer

import (
	"context"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/payment/internal/app"
)

// Applier is what the handler needs of the payment use cases.
type Applier interface {
	Apply(ctx context.Context, tx pgx.Tx, ev app.OrderEvent) (app.Status, error)
}

// Handler handles Order's broadcast. Payment acts on "reserved" only; other
// known statuses are acked and ignored; a malformed body goes to the DLQ.
func Handler(payments Applier, logger *slog.Logger) platform.Handler {
	return func(ctx context.Context, tx pgx.Tx, d platform.Delivery) error {
		ev, err := Parse(d.Body)
		if err != nil {
			return err
		}
		status, err := payments.Apply(ctx, tx, ev)
		if err != nil {
			return err
		}
		logger.Debug("order message", platform.LogOrderID, ev.OrderID, "status", ev.Status,
			"payment", status, platform.LogMessageID, d.MessageID)
		return nil
	}
}

// orderStatuses are the statuses Order sends.
var orderStatuses = map[string]bool{
	"created": true, "reserved": true, "not_reserved": true, "payment_confirmed": true, "payment_denied": true,
}

// Parse reads an order event; only a "reserved" one needs more than its status.
func Parse(body []byte) (app.OrderEvent, error) {
	m, err := platform.DecodeBody(body)
	if err != nil {
		return app.OrderEvent{}, err
	}
	var ev app.OrderEvent
	if ev.Status, err = platform.StringField(m, "status"); err != nil {
		return app.OrderEvent{}, err
	}
	if !orderStatuses[ev.Status] {
		return app.OrderEvent{}, platform.Unprocessable("status %q is not an order status", ev.Status)
	}
	if ev.Status != app.OrderReserved {
		return ev, nil
	}
	if ev.OrderID, err = platform.OrderID(m["order_id"]); err != nil {
		return app.OrderEvent{}, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"customer_id", &ev.CustomerID}, {"amount", &ev.Amount}} {
		s, err := platform.Text(m[f.name])
		s = strings.TrimSpace(s)
		if err != nil || s == "" || utf8.RuneCountInString(s) > 20 {
			return app.OrderEvent{}, platform.Unprocessable("%s is missing, empty or longer than 20 characters", f.name)
		}
		*f.dst = s
	}
	return ev, nil
}
