// Package app is the payment service's domain: the amount rule of
// docs/contracts.md, "Messaging contract" (confirmed iff amount < 1000, as a
// number) and the use case that records a payment with its outbox row.
package app

import (
	"context"
	"fmt"
	"math/big"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
)

// Status is a payment's status.
type Status string

// Payment statuses, which are also the statuses Payment sends to Order.
const (
	StatusConfirmed Status = "payment_confirmed"
	StatusDenied    Status = "payment_denied"
)

// OrderReserved is the only order status Payment acts on.
const OrderReserved = "reserved"

// Payment is a payment as the API shows it.
type Payment struct {
	PaymentID  string `json:"payment_id"`
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     string `json:"amount"`
	Status     Status `json:"status"`
	// Created is RFC 3339 in UTC with microseconds, as Django REST framework
	// shows it.
	Created string `json:"created"`
}

// limit is the amount from which a payment is denied.
var limit = big.NewRat(1000, 1)

// Decide returns the status of a payment of amount: confirmed iff amount <
// 1000 as a number. The original demo (docs/origin.md) compared strings
// ("999" < "1000" is false there); the numeric rule agrees with its README,
// its web UI and its Postman scenarios. An amount that is not a decimal is an
// error.
func Decide(amount string) (Status, error) {
	r, ok := platform.ParseDecimal(amount)
	if !ok {
		return "", fmt.Errorf("amount %q is not a decimal number", amount)
	}
	if r.Cmp(limit) < 0 {
		return StatusConfirmed, nil
	}
	return StatusDenied, nil
}

// OrderEvent is the part of Order's message Payment uses.
type OrderEvent struct {
	OrderID    string
	CustomerID string
	Amount     string
	Status     string
}

// Store is the payment table, as the use cases need it.
type Store interface {
	// Insert inserts p unless the order already has a payment, and reports
	// whether it did.
	Insert(ctx context.Context, tx pgx.Tx, p Payment) (bool, error)
	List(ctx context.Context) ([]Payment, error)
}

// Service holds the payment use cases.
type Service struct {
	Store  Store
	Outbox platform.OutboxWriter
}

// Message is Payment's body on order.v1: the original demo's
// payment_serializer (docs/origin.md).
type Message struct {
	OrderID any    `json:"order_id"`
	Status  Status `json:"status"`
}

// EventType is the AMQP type of Payment's messages.
const EventType = "payment.status_changed"

// Apply records the payment of a reserved order within tx and writes its
// outbox row to order.v1. Other statuses are ignored, and so is an order
// that already has a payment (idempotent by state). It returns the new
// payment's status, or "" when it did nothing.
func (s Service) Apply(ctx context.Context, tx pgx.Tx, ev OrderEvent) (Status, error) {
	if ev.Status != OrderReserved {
		return "", nil
	}
	status, err := Decide(ev.Amount)
	if err != nil {
		return "", platform.Unprocessable("order %s: %v", ev.OrderID, err)
	}
	inserted, err := s.Store.Insert(ctx, tx, Payment{CustomerID: ev.CustomerID, OrderID: ev.OrderID, Amount: ev.Amount, Status: status})
	if err != nil || !inserted {
		return "", err
	}
	if _, err := s.Outbox.Write(ctx, tx, platform.Message{
		AggregateType: "payment",
		AggregateID:   ev.OrderID,
		EventType:     EventType,
		RoutingKey:    platform.RoutingKeyOrder,
		Payload:       Message{OrderID: platform.OrderIDValue(ev.OrderID), Status: status},
	}); err != nil {
		return "", fmt.Errorf("payment of order %s: %w", ev.OrderID, err)
	}
	return status, nil
}

// List returns every payment in insertion order.
func (s Service) List(ctx context.Context) ([]Payment, error) { return s.Store.List(ctx) }
