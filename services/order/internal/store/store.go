// Package store is the order service's SQL over the orders table. It
// implements app.Store.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/saga-cdc/saga/services/order/internal/app"
)

// Store reads and writes orders.
type Store struct {
	Pool *pgxpool.Pool
}

const columns = `order_id, customer_id, product_id, amount, quantity, status`

func scan(row pgx.Row) (app.Order, error) {
	var o app.Order
	err := row.Scan(&o.OrderID, &o.CustomerID, &o.ProductID, &o.Amount, &o.Quantity, &o.Status)
	return o, err
}

// Insert inserts a new order in status created, unless an order with its
// idempotency key exists: then it returns that one, created false. ON
// CONFLICT waits for a concurrent insert of the same key to commit, and the
// SELECT after it, a statement of its own, sees that row.
func (Store) Insert(ctx context.Context, tx pgx.Tx, n app.NewOrder) (app.Order, bool, error) {
	o, err := scan(tx.QueryRow(ctx, `INSERT INTO orders (customer_id, product_id, amount, quantity, status, idempotency_key)
		VALUES ($1, $2, $3, $4, 'created', NULLIF($5, '')) ON CONFLICT (idempotency_key) DO NOTHING RETURNING `+columns,
		n.CustomerID, n.ProductID, n.Amount, n.Quantity, n.IdempotencyKey))
	if err == nil {
		return o, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) || n.IdempotencyKey == "" {
		return app.Order{}, false, fmt.Errorf("insert order: %w", err)
	}
	o, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM orders WHERE idempotency_key = $1`, n.IdempotencyKey))
	if err != nil {
		return app.Order{}, false, fmt.Errorf("select the order of idempotency key %q: %w", n.IdempotencyKey, err)
	}
	return o, false, nil
}

// List returns every order in insertion order.
func (s Store) List(ctx context.Context) ([]app.Order, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+columns+` FROM orders ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (app.Order, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return orders, nil
}

// GetForUpdate reads an order and locks it until tx ends.
func (Store) GetForUpdate(ctx context.Context, tx pgx.Tx, id int64) (app.Order, error) {
	o, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM orders WHERE order_id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return app.Order{}, fmt.Errorf("order %d: %w", id, app.ErrNotFound)
	}
	if err != nil {
		return app.Order{}, fmt.Errorf("select order %d: %w", id, err)
	}
	return o, nil
}

// SetStatus changes an order's status.
func (Store) SetStatus(ctx context.Context, tx pgx.Tx, id int64, s app.Status) error {
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = $2 WHERE order_id = $1`, id, s); err != nil {
		return fmt.Errorf("update order %d status: %w", id, err)
	}
	return nil
}
