// Package consumer turns Order's messages on stock.v1 into reservation
// decisions.
package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/stock/internal/app"
)

// Applier is what the handler needs of the stock use cases.
type Applier interface {
	Apply(ctx context.Context, tx pgx.Tx, ev app.OrderEvent) (app.Decision, error)
}

// Handler handles Order's broadcast {"amount", "customer_id", "order_id",
// "product_id", "quantity", "status"}. A malformed body or an unknown status
// goes to the DLQ; statuses Stock does not act on are acked and ignored.
func Handler(stock Applier, logger *slog.Logger) platform.Handler {
	return func(ctx context.Context, tx pgx.Tx, d platform.Delivery) error {
		ev, err := Parse(d.Body)
		if err != nil {
			return err
		}
		dec, err := stock.Apply(ctx, tx, ev)
		if err != nil {
			return err
		}
		logger.Debug("order message", platform.LogOrderID, ev.OrderID, "status", ev.Status,
			"reservation", dec.Status, platform.LogReason, dec.Reason, platform.LogMessageID, d.MessageID)
		return nil
	}
}

// Parse reads an order event. Only the fields the status needs are
// required: statuses Stock ignores are accepted with just the status.
func Parse(body []byte) (app.OrderEvent, error) {
	m, err := platform.DecodeBody(body)
	if err != nil {
		return app.OrderEvent{}, err
	}
	var ev app.OrderEvent
	if ev.Status, err = platform.StringField(m, "status"); err != nil {
		return app.OrderEvent{}, err
	}
	switch ev.Status {
	case app.OrderReserved, app.OrderNotReserved:
		return ev, nil
	case app.OrderCreated, app.OrderPaymentConfirmed, app.OrderPaymentDenied:
	default:
		return app.OrderEvent{}, platform.Unprocessable("status %q is not an order status", ev.Status)
	}
	if ev.OrderID, err = platform.OrderID(m["order_id"]); err != nil {
		return app.OrderEvent{}, err
	}
	if ev.Status != app.OrderCreated {
		return ev, nil
	}
	product, err := platform.Text(m["product_id"])
	product = strings.TrimSpace(product)
	if err != nil || product == "" || utf8.RuneCountInString(product) > 20 {
		return app.OrderEvent{}, platform.Unprocessable("product_id is missing, empty or longer than 20 characters")
	}
	ev.ProductID = product
	var q int32
	dec := json.NewDecoder(bytes.NewReader(m["quantity"]))
	if err := dec.Decode(&q); err != nil || q < 0 {
		return app.OrderEvent{}, platform.Unprocessable("quantity is not an integer between 0 and 2147483647")
	}
	ev.Quantity = int(q)
	return ev, nil
}
