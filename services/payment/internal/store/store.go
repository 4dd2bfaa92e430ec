// Package store is the payment service's SQL over the payment table. It
// implements app.Store.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/saga-cdc/saga/services/payment/internal/app"
)

// Store reads and writes payments.
type Store struct {
	Pool *pgxpool.Pool
}

// Insert inserts p unless the order has a payment already. ON CONFLICT makes
// a concurrent duplicate wait for the first and then do nothing.
func (Store) Insert(ctx context.Context, tx pgx.Tx, p app.Payment) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO payment (customer_id, order_id, amount, status)
		VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING`, p.CustomerID, p.OrderID, p.Amount, p.Status)
	if err != nil {
		return false, fmt.Errorf("insert payment of order %s: %w", p.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// List returns every payment in insertion order.
func (s Store) List(ctx context.Context) ([]app.Payment, error) {
	rows, err := s.Pool.Query(ctx, `SELECT payment_id::text, customer_id, order_id, amount, status, created
		FROM payment ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	payments, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (app.Payment, error) {
		var p app.Payment
		var created time.Time
		err := r.Scan(&p.PaymentID, &p.CustomerID, &p.OrderID, &p.Amount, &p.Status, &created)
		p.Created = created.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	return payments, nil
}
