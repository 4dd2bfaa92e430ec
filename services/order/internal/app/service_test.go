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

// fakeTx records outbox inserts; the embedded nil Tx panics on anything else.
type fakeTx struct {
	pgx.Tx
	execs   int
	execErr error
}

func (f *fakeTx) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	f.execs++
	return pgconn.CommandTag{}, f.execErr
}
func (f *fakeTx) Commit(context.Context) error   { return nil }
func (f *fakeTx) Rollback(context.Context) error { return nil }

type fakeDB struct {
	tx  *fakeTx
	err error
}

func (f fakeDB) Begin(context.Context) (pgx.Tx, error) { return f.tx, f.err }

type fakeStore struct {
	order                     Order
	insertErr, getErr, setErr error
	set                       []Status
}

func (f *fakeStore) Insert(_ context.Context, _ pgx.Tx, n NewOrder) (Order, error) {
	return Order{OrderID: 1, CustomerID: n.CustomerID, ProductID: n.ProductID, Amount: n.Amount, Quantity: n.Quantity, Status: StatusCreated}, f.insertErr
}
func (f *fakeStore) GetForUpdate(context.Context, pgx.Tx, int64) (Order, error) {
	return f.order, f.getErr
}
func (f *fakeStore) SetStatus(_ context.Context, _ pgx.Tx, _ int64, s Status) error {
	f.set = append(f.set, s)
	return f.setErr
}
func (f *fakeStore) List(context.Context) ([]Order, error) { return []Order{f.order}, nil }

func TestCreate(t *testing.T) {
	tx := &fakeTx{}
	s := Service{DB: fakeDB{tx: tx}, Store: &fakeStore{}, Outbox: platform.OutboxWriter{Exchange: "saga"}}
	o, err := s.Create(context.Background(), NewOrder{CustomerID: "1", ProductID: "1", Amount: "1", Quantity: 1})
	require.NoError(t, err)
	assert.Equal(t, Order{OrderID: 1, CustomerID: "1", ProductID: "1", Amount: "1", Quantity: 1, Status: StatusCreated}, o)
	assert.Equal(t, 2, tx.execs, "two outbox rows")
	list, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

func TestCreateErrors(t *testing.T) {
	for name, s := range map[string]Service{
		"begin":  {DB: fakeDB{err: errors.New("no conn")}, Store: &fakeStore{}},
		"insert": {DB: fakeDB{tx: &fakeTx{}}, Store: &fakeStore{insertErr: errors.New("no conn")}},
		"outbox": {DB: fakeDB{tx: &fakeTx{execErr: errors.New("no conn")}}, Store: &fakeStore{}},
	} {
		_, err := s.Create(context.Background(), NewOrder{})
		assert.ErrorContains(t, err, "create order: ", name)
		assert.ErrorContains(t, err, "no conn", name)
	}
}

func TestApplyStatus(t *testing.T) {
	ctx := context.Background()
	st := &fakeStore{order: Order{OrderID: 3, Status: StatusCreated}}
	tx := &fakeTx{}
	s := Service{Store: st}
	changed, err := s.ApplyStatus(ctx, tx, 3, StatusReserved)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, []Status{StatusReserved}, st.set)
	assert.Equal(t, 2, tx.execs)

	changed, err = s.ApplyStatus(ctx, tx, 3, StatusPaymentDenied) // created → payment_denied
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, 2, tx.execs)

	_, err = Service{Store: &fakeStore{getErr: ErrNotFound}}.ApplyStatus(ctx, tx, 3, StatusReserved)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = Service{Store: &fakeStore{order: Order{Status: StatusCreated}, setErr: errors.New("gone")}}.ApplyStatus(ctx, tx, 3, StatusReserved)
	assert.EqualError(t, err, "gone")
	_, err = Service{Store: &fakeStore{order: Order{Status: StatusCreated}}}.ApplyStatus(ctx, &fakeTx{execErr: errors.New("gone")}, 3, StatusReserved)
	assert.ErrorContains(t, err, "insert outbox row")
}
