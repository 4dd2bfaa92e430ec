package app

import (
	"context"
	"errors"
	"strings"
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

func (f fakeDB) Begin(context.Context) (pgx.Tx, error)                  { return f.tx, f.err }
func (f fakeDB) BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error) { return f.tx, f.err }

type fakeStore struct {
	order                     Order
	insertErr, getErr, setErr error
	set                       []Status
	existing                  *Order // the order an idempotency key already created
}

func (f *fakeStore) Insert(_ context.Context, _ pgx.Tx, n NewOrder) (Order, bool, error) {
	if f.existing != nil && n.IdempotencyKey != "" {
		return *f.existing, false, f.insertErr
	}
	return Order{OrderID: 1, CustomerID: n.CustomerID, ProductID: n.ProductID, Amount: n.Amount, Quantity: n.Quantity, Status: StatusCreated}, true, f.insertErr
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
	o, created, err := s.Create(context.Background(), NewOrder{CustomerID: "1", ProductID: "1", Amount: "1", Quantity: 1})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, Order{OrderID: 1, CustomerID: "1", ProductID: "1", Amount: "1", Quantity: 1, Status: StatusCreated}, o)
	assert.Equal(t, 2, tx.execs, "two outbox rows")
	list, err := s.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

// A key that already created an order: the same fields get that order back
// and nothing is written; other fields are refused, and nothing is written.
func TestCreateWithAKeyUsedBefore(t *testing.T) {
	first := Order{OrderID: 7, CustomerID: "1", ProductID: "2", Amount: "3", Quantity: 4, Status: StatusReserved}
	same := NewOrder{CustomerID: "1", ProductID: "2", Amount: "3", Quantity: 4, IdempotencyKey: "k"}
	for _, tc := range []struct {
		name    string
		n       NewOrder
		wantErr bool
	}{
		{"same fields", same, false},
		{"other quantity", func() NewOrder { n := same; n.Quantity = 5; return n }(), true},
		{"other amount", func() NewOrder { n := same; n.Amount = "30"; return n }(), true},
		{"other customer", func() NewOrder { n := same; n.CustomerID = "9"; return n }(), true},
		{"other product", func() NewOrder { n := same; n.ProductID = "9"; return n }(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &fakeTx{}
			s := Service{DB: fakeDB{tx: tx}, Store: &fakeStore{existing: &first}, Outbox: platform.OutboxWriter{Exchange: "saga"}}
			o, created, err := s.Create(context.Background(), tc.n)
			assert.False(t, created)
			assert.Zero(t, tx.execs, "no outbox row for a retry")
			if tc.wantErr {
				var reused *KeyReusedError
				require.ErrorAs(t, err, &reused)
				assert.Equal(t, int64(7), reused.OrderID)
				assert.ErrorContains(t, err, "idempotency key already used for order 7")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, first, o, "the first order, in its current status")
		})
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	for key, ok := range map[string]bool{
		"a": true, "7f9c2ba4-e88f-11e4-a5d4-3c075410d5e6": true, "order:42/try=1": true, strings.Repeat("k", MaxIdempotencyKey): true,
		"": false, strings.Repeat("k", MaxIdempotencyKey+1): false, "has space": false, "tab\t": false, "é": false, "nul\x00": false,
	} {
		if msg := CheckIdempotencyKey(key); (msg == "") != ok {
			t.Errorf("CheckIdempotencyKey(%q) = %q, want ok=%v", key, msg, ok)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	for name, s := range map[string]Service{
		"begin":  {DB: fakeDB{err: errors.New("no conn")}, Store: &fakeStore{}},
		"insert": {DB: fakeDB{tx: &fakeTx{}}, Store: &fakeStore{insertErr: errors.New("no conn")}},
		"outbox": {DB: fakeDB{tx: &fakeTx{execErr: errors.New("no conn")}}, Store: &fakeStore{}},
	} {
		_, _, err := s.Create(context.Background(), NewOrder{})
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
