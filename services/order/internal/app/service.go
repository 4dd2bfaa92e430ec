package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/services/internal/platform"
)

// ErrNotFound is returned for an order id that does not exist.
var ErrNotFound = errors.New("order not found")

// KeyReusedError is returned when an idempotency key comes back with other
// fields than the order it created.
type KeyReusedError struct {
	OrderID int64 // the order the key created
}

func (e *KeyReusedError) Error() string {
	return fmt.Sprintf("idempotency key already used for order %d with other fields", e.OrderID)
}

// Store is the orders table, as the use cases need it.
type Store interface {
	// Insert inserts n; when an order with n's idempotency key exists, it
	// inserts nothing and returns that order with created false.
	Insert(ctx context.Context, tx pgx.Tx, n NewOrder) (o Order, created bool, err error)
	GetForUpdate(ctx context.Context, tx pgx.Tx, id int64) (Order, error)
	SetStatus(ctx context.Context, tx pgx.Tx, id int64, s Status) error
	List(ctx context.Context) ([]Order, error)
}

// Beginner starts transactions: a *pgxpool.Pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Service holds the order use cases.
type Service struct {
	DB     Beginner
	Store  Store
	Outbox platform.OutboxWriter
}

// Message is the body Order sends to stock.v1 and payment.v1 on every status
// change: the original demo's order_serializer (docs/origin.md).
type Message struct {
	Amount     string `json:"amount"`
	CustomerID string `json:"customer_id"`
	OrderID    int64  `json:"order_id"`
	ProductID  string `json:"product_id"`
	Quantity   int    `json:"quantity"`
	Status     Status `json:"status"`
}

// EventType is the AMQP type of Order's messages.
const EventType = "order.status_changed"

// Create inserts an order and its two outbox rows in one transaction. With
// an idempotency key that already created an order, it writes nothing and
// returns that order (in its current status) with created false, or a
// *KeyReusedError when the fields differ.
func (s Service) Create(ctx context.Context, n NewOrder) (o Order, created bool, err error) {
	// Read committed whatever the server's default: the store's insert of a
	// key that a concurrent request inserts waits for it and then reads its
	// row, where repeatable read would fail with a serialization error.
	err = pgx.BeginTxFunc(ctx, s.DB, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if o, created, err = s.Store.Insert(ctx, tx, n); err != nil {
			return err
		}
		if !created {
			if !o.sameRequest(n) {
				return &KeyReusedError{OrderID: o.OrderID}
			}
			return nil
		}
		return s.broadcast(ctx, tx, o)
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("create order: %w", err)
	}
	return o, created, nil
}

// List returns every order in insertion order.
func (s Service) List(ctx context.Context) ([]Order, error) { return s.Store.List(ctx) }

// ApplyStatus moves order id to status within tx if Next allows it, and then
// broadcasts the new state. It reports whether the order changed.
func (s Service) ApplyStatus(ctx context.Context, tx pgx.Tx, id int64, status Status) (bool, error) {
	o, err := s.Store.GetForUpdate(ctx, tx, id)
	if err != nil {
		return false, err
	}
	if !Next(o.Status, status) {
		return false, nil
	}
	if err := s.Store.SetStatus(ctx, tx, id, status); err != nil {
		return false, err
	}
	o.Status = status
	return true, s.broadcast(ctx, tx, o)
}

// broadcast writes the order's state to stock.v1 and payment.v1, as the
// original demo's @publish decorator did on every save.
func (s Service) broadcast(ctx context.Context, tx pgx.Tx, o Order) error {
	msg := Message{Amount: o.Amount, CustomerID: o.CustomerID, OrderID: o.OrderID,
		ProductID: o.ProductID, Quantity: o.Quantity, Status: o.Status}
	for _, key := range []string{platform.RoutingKeyStock, platform.RoutingKeyPayment} {
		if _, err := s.Outbox.Write(ctx, tx, platform.Message{
			AggregateType: "order",
			AggregateID:   strconv.FormatInt(o.OrderID, 10),
			EventType:     EventType,
			RoutingKey:    key,
			Payload:       msg,
		}); err != nil {
			return err
		}
	}
	return nil
}
