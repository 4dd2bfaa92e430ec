// Package consumer turns messages on order.v1 (from stock and payment) into
// order status changes.
package consumer

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

// The waits before an order is called unknown: 10, 20, ... 320 ms, about
// 0.6 s in all.
const (
	notVisibleFirst = 10 * time.Millisecond
	notVisibleLast  = 320 * time.Millisecond
)

// Applier is what the handler needs of the order use cases.
type Applier interface {
	ApplyStatus(ctx context.Context, tx pgx.Tx, id int64, status app.Status) (bool, error)
}

// Handler handles {"order_id": <int|string>, "status": "<status>"}. An
// unknown order, an unknown status or a malformed body is unprocessable and
// goes to the DLQ; a status the order cannot move to is acked and ignored.
func Handler(orders Applier, logger *slog.Logger) platform.Handler {
	return func(ctx context.Context, tx pgx.Tx, d platform.Delivery) error {
		m, err := platform.DecodeBody(d.Body)
		if err != nil {
			return err
		}
		idText, err := platform.OrderID(m["order_id"])
		if err != nil {
			return err
		}
		id, _ := strconv.ParseInt(idText, 10, 64) // OrderID checked it is an int64
		s, err := platform.StringField(m, "status")
		if err != nil {
			return err
		}
		status := app.Status(s)
		if !status.Valid() {
			return platform.Unprocessable("status %q is not an order status", s)
		}
		changed, err := orders.ApplyStatus(ctx, tx, id, status)
		// A reply can arrive before the order's own commit is visible here:
		// Postgres writes a commit record (which the relay streams at once)
		// before the committing backend leaves the ProcArray, so for a few
		// milliseconds other sessions may not see the row. Each new statement
		// of this READ COMMITTED transaction takes a new snapshot: read it
		// again, for a moment, before calling the order unknown.
		for wait := notVisibleFirst; errors.Is(err, app.ErrNotFound) && wait <= notVisibleLast; wait *= 2 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			changed, err = orders.ApplyStatus(ctx, tx, id, status)
		}
		if errors.Is(err, app.ErrNotFound) {
			return platform.Unprocessable("unknown order %d", id)
		}
		if err != nil {
			return err
		}
		logger.Debug("order status message", platform.LogOrderID, id, "status", status, "changed", changed, platform.LogMessageID, d.MessageID)
		return nil
	}
}
