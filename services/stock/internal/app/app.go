// Package app is the stock service's domain: the reservation rules of
// docs/contracts.md, "Messaging contract" (reserve iff the quantity is
// available, compensate on payment_denied, confirm on payment_confirmed) as a
// pure Decide function, and the use case that applies a decision with its
// outbox row.
package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
)

// Status is a reservation's status.
type Status string

// Reservation statuses, which are also the statuses Stock sends to Order.
const (
	StatusReserved         Status = "reserved"
	StatusNotReserved      Status = "not_reserved"
	StatusPaymentDenied    Status = "payment_denied"
	StatusPaymentConfirmed Status = "payment_confirmed"
)

// Order statuses Stock reads on stock.v1. Order broadcasts every status;
// Stock acts on created, payment_denied and payment_confirmed.
const (
	OrderCreated          = "created"
	OrderReserved         = "reserved"
	OrderNotReserved      = "not_reserved"
	OrderPaymentConfirmed = "payment_confirmed"
	OrderPaymentDenied    = "payment_denied"
)

// Stock is a product's available quantity.
type Stock struct {
	ID        int64  `json:"id"`
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// Reservation is an order's claim on stock.
type Reservation struct {
	ID        int64  `json:"id"`
	OrderID   string `json:"order_id"`
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
	Status    Status `json:"status"`
}

// OrderEvent is the part of Order's message Stock uses.
type OrderEvent struct {
	OrderID   string
	ProductID string
	Quantity  int
	Status    string
}

// Action is what a decision does to the reservation.
type Action int

// Actions of a Decision.
const (
	Ignore Action = iota // acknowledge, change nothing, send nothing
	Create               // insert the reservation
	Update               // change the reservation's status
)

// Decision is the outcome of one order event.
type Decision struct {
	Action Action
	// Status is the reservation's new status, sent to Order.
	Status Status
	// StockDelta is added to the stock of the reservation's product.
	StockDelta int
	// Reason says why an event is ignored, for the logs.
	Reason string
}

// Decide applies the rules of docs/contracts.md, "Messaging contract", to ev,
// given the order's reservation (nil if none) and the available quantity of
// the product (nil if the product is unknown). It is idempotent by state: an
// event that arrives again, late, or out of order finds a reservation that no
// longer allows it and is ignored.
func Decide(ev OrderEvent, res *Reservation, available *int) Decision {
	switch ev.Status {
	case OrderCreated:
		switch {
		case res != nil:
			return Decision{Reason: "order already has a reservation"}
		case available == nil:
			// The original demo raised here and left the order "created"
			// forever.
			return Decision{Action: Create, Status: StatusNotReserved}
		case ev.Quantity <= *available:
			return Decision{Action: Create, Status: StatusReserved, StockDelta: -ev.Quantity}
		default:
			return Decision{Action: Create, Status: StatusNotReserved}
		}
	case OrderPaymentDenied:
		if res == nil || res.Status != StatusReserved {
			return Decision{Reason: "no reserved reservation to compensate"}
		}
		return Decision{Action: Update, Status: StatusPaymentDenied, StockDelta: res.Quantity}
	case OrderPaymentConfirmed:
		if res == nil || res.Status != StatusReserved {
			return Decision{Reason: "no reserved reservation to confirm"}
		}
		return Decision{Action: Update, Status: StatusPaymentConfirmed}
	}
	return Decision{Reason: "status " + ev.Status + " needs no action from stock"}
}

// Store is the stock and reservation tables, as the use cases need them.
type Store interface {
	ReservationForUpdate(ctx context.Context, tx pgx.Tx, orderID string) (*Reservation, error)
	// AvailableForUpdate returns nil for an unknown product.
	AvailableForUpdate(ctx context.Context, tx pgx.Tx, productID string) (*int, error)
	InsertReservation(ctx context.Context, tx pgx.Tx, r Reservation) error
	SetReservationStatus(ctx context.Context, tx pgx.Tx, orderID string, s Status) error
	AddStock(ctx context.Context, tx pgx.Tx, productID string, delta int) error
	Stocks(ctx context.Context) ([]Stock, error)
	Reservations(ctx context.Context) ([]Reservation, error)
}

// Service holds the stock use cases.
type Service struct {
	Store  Store
	Outbox platform.OutboxWriter
}

// Message is Stock's body on order.v1: the original demo's
// reservation_serializer (docs/origin.md).
type Message struct {
	OrderID any    `json:"order_id"`
	Status  Status `json:"status"`
}

// EventType is the AMQP type of Stock's messages.
const EventType = "reservation.status_changed"

// Apply decides on ev within tx and applies the decision: the reservation,
// the stock and the outbox row to order.v1 commit together.
func (s Service) Apply(ctx context.Context, tx pgx.Tx, ev OrderEvent) (Decision, error) {
	res, err := s.Store.ReservationForUpdate(ctx, tx, ev.OrderID)
	if err != nil {
		return Decision{}, err
	}
	product := ev.ProductID
	if res != nil {
		product = res.ProductID
	}
	var available *int
	if ev.Status == OrderCreated || ev.Status == OrderPaymentDenied {
		// Locks the product's row: concurrent reservations of one product
		// are serialised, so stock never goes negative.
		if available, err = s.Store.AvailableForUpdate(ctx, tx, product); err != nil {
			return Decision{}, err
		}
	}
	d := Decide(ev, res, available)
	switch d.Action {
	case Ignore:
		return d, nil
	case Create:
		err = s.Store.InsertReservation(ctx, tx, Reservation{OrderID: ev.OrderID, ProductID: ev.ProductID, Quantity: ev.Quantity, Status: d.Status})
	case Update:
		err = s.Store.SetReservationStatus(ctx, tx, ev.OrderID, d.Status)
	}
	if err != nil {
		return Decision{}, err
	}
	if d.StockDelta != 0 {
		if err := s.Store.AddStock(ctx, tx, product, d.StockDelta); err != nil {
			return Decision{}, err
		}
	}
	if _, err := s.Outbox.Write(ctx, tx, platform.Message{
		AggregateType: "reservation",
		AggregateID:   ev.OrderID,
		EventType:     EventType,
		RoutingKey:    platform.RoutingKeyOrder,
		Payload:       Message{OrderID: platform.OrderIDValue(ev.OrderID), Status: d.Status},
	}); err != nil {
		return Decision{}, fmt.Errorf("reservation of order %s: %w", ev.OrderID, err)
	}
	return d, nil
}

// Stocks lists the stock of every product.
func (s Service) Stocks(ctx context.Context) ([]Stock, error) { return s.Store.Stocks(ctx) }

// Reservations lists every reservation in insertion order.
func (s Service) Reservations(ctx context.Context) ([]Reservation, error) {
	return s.Store.Reservations(ctx)
}
