package app

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform"
)

type fakeTx struct {
	pgx.Tx
	execs   int
	execErr error
}

func (f *fakeTx) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	f.execs++
	return pgconn.CommandTag{}, f.execErr
}

type fakeStore struct {
	inserted []Payment
	dup      bool
	err      error
}

func (f *fakeStore) Insert(_ context.Context, _ pgx.Tx, p Payment) (bool, error) {
	f.inserted = append(f.inserted, p)
	return !f.dup, f.err
}
func (f *fakeStore) List(context.Context) ([]Payment, error) { return f.inserted, nil }

func TestApply(t *testing.T) {
	ctx := context.Background()
	st := &fakeStore{}
	tx := &fakeTx{}
	s := Service{Store: st}
	status, err := s.Apply(ctx, tx, OrderEvent{OrderID: "1", CustomerID: "c", Amount: "1000", Status: OrderReserved})
	require.NoError(t, err)
	assert.Equal(t, StatusDenied, status)
	assert.Equal(t, []Payment{{CustomerID: "c", OrderID: "1", Amount: "1000", Status: StatusDenied}}, st.inserted)
	assert.Equal(t, 1, tx.execs)

	status, err = s.Apply(ctx, tx, OrderEvent{OrderID: "1", Status: "created"})
	require.NoError(t, err)
	assert.Equal(t, Status(""), status)

	status, err = Service{Store: &fakeStore{dup: true}}.Apply(ctx, tx, OrderEvent{OrderID: "1", Amount: "1", Status: OrderReserved})
	require.NoError(t, err)
	assert.Equal(t, Status(""), status)
	assert.Equal(t, 1, tx.execs, "no outbox row for a paid order")

	_, err = s.Apply(ctx, tx, OrderEvent{OrderID: "1", Amount: "x", Status: OrderReserved})
	assert.ErrorIs(t, err, platform.ErrUnprocessable)
	_, err = Service{Store: &fakeStore{err: errors.New("gone")}}.Apply(ctx, tx, OrderEvent{OrderID: "1", Amount: "1", Status: OrderReserved})
	assert.EqualError(t, err, "gone")
	_, err = s.Apply(ctx, &fakeTx{execErr: errors.New("gone")}, OrderEvent{OrderID: "1", Amount: "1", Status: OrderReserved})
	assert.ErrorContains(t, err, "payment of order 1: insert outbox row")
	list, err := s.List(ctx)
	require.NoError(t, err)
	assert.NotEmpty(t, list)
}
