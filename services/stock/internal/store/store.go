// Package store is the stock service's SQL over the stock and reservation
// tables. It implements app.Store.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/saga-cdc/saga/services/stock/internal/app"
)

// Store reads and writes stock and reservations.
type Store struct {
	Pool *pgxpool.Pool
}

// ReservationForUpdate returns the order's reservation, locked until tx
// ends, or nil if it has none.
func (Store) ReservationForUpdate(ctx context.Context, tx pgx.Tx, orderID string) (*app.Reservation, error) {
	var r app.Reservation
	err := tx.QueryRow(ctx, `SELECT id, order_id, product_id, quantity, status FROM reservation
		WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&r.ID, &r.OrderID, &r.ProductID, &r.Quantity, &r.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select reservation of order %s: %w", orderID, err)
	}
	return &r, nil
}

// AvailableForUpdate returns the product's quantity, locked until tx ends,
// or nil for an unknown product.
func (Store) AvailableForUpdate(ctx context.Context, tx pgx.Tx, productID string) (*int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT quantity FROM stock WHERE product_id = $1 FOR UPDATE`, productID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select stock of product %s: %w", productID, err)
	}
	return &n, nil
}

// InsertReservation inserts r.
func (Store) InsertReservation(ctx context.Context, tx pgx.Tx, r app.Reservation) error {
	if _, err := tx.Exec(ctx, `INSERT INTO reservation (order_id, product_id, quantity, status)
		VALUES ($1, $2, $3, $4)`, r.OrderID, r.ProductID, r.Quantity, r.Status); err != nil {
		return fmt.Errorf("insert reservation of order %s: %w", r.OrderID, err)
	}
	return nil
}

// SetReservationStatus changes the status of the order's reservation.
func (Store) SetReservationStatus(ctx context.Context, tx pgx.Tx, orderID string, s app.Status) error {
	if _, err := tx.Exec(ctx, `UPDATE reservation SET status = $2 WHERE order_id = $1`, orderID, s); err != nil {
		return fmt.Errorf("update reservation of order %s: %w", orderID, err)
	}
	return nil
}

// AddStock adds delta (negative to take) to the product's quantity. The
// table's CHECK (quantity >= 0) backs up the rule that stock never goes
// negative.
func (Store) AddStock(ctx context.Context, tx pgx.Tx, productID string, delta int) error {
	if _, err := tx.Exec(ctx, `UPDATE stock SET quantity = quantity + $2 WHERE product_id = $1`, productID, delta); err != nil {
		return fmt.Errorf("update stock of product %s: %w", productID, err)
	}
	return nil
}

// Stocks lists every product's stock in insertion order.
func (s Store) Stocks(ctx context.Context) ([]app.Stock, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, product_id, quantity FROM stock ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	stocks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (app.Stock, error) {
		var st app.Stock
		err := r.Scan(&st.ID, &st.ProductID, &st.Quantity)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	return stocks, nil
}

// Reservations lists every reservation in insertion order.
func (s Store) Reservations(ctx context.Context) ([]app.Reservation, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, order_id, product_id, quantity, status FROM reservation ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	res, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (app.Reservation, error) {
		var rv app.Reservation
		err := r.Scan(&rv.ID, &rv.OrderID, &rv.ProductID, &rv.Quantity, &rv.Status)
		return rv, err
	})
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	return res, nil
}
