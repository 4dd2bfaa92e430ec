package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

type fakeOrders struct {
	created []app.NewOrder
	err     error
	replay  bool // Create answers as for a key that created an order before
}

func (f *fakeOrders) Create(_ context.Context, n app.NewOrder) (app.Order, bool, error) {
	f.created = append(f.created, n)
	return app.Order{OrderID: 5, CustomerID: n.CustomerID, ProductID: n.ProductID, Amount: n.Amount, Quantity: n.Quantity, Status: app.StatusCreated}, !f.replay, f.err
}

func (f *fakeOrders) List(context.Context) ([]app.Order, error) { return nil, f.err }

func serve(f *fakeOrders, method, body string, keys ...string) *httptest.ResponseRecorder {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := platform.NewRouter(log)
	Routes(r, f, log)
	w := httptest.NewRecorder()
	req := httptest.NewRequest(method, "/api/v1/orders/", strings.NewReader(body))
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	r.ServeHTTP(w, req)
	return w
}

func TestCreateWithIdempotencyKey(t *testing.T) {
	const body = `{"customer_id": 1, "product_id": 2, "amount": 3}`
	f := &fakeOrders{}
	w := serve(f, "POST", body, "k-1")
	assert.Equal(t, 201, w.Code)
	assert.Empty(t, w.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "k-1", f.created[0].IdempotencyKey)

	f = &fakeOrders{replay: true}
	w = serve(f, "POST", body, "k-1")
	assert.Equal(t, 200, w.Code, "a retry gets the first order back")
	assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
	assert.JSONEq(t, `{"order_id":5,"customer_id":"1","product_id":"2","amount":"3","quantity":0,"status":"created"}`, w.Body.String())

	f = &fakeOrders{err: fmt.Errorf("create order: %w", &app.KeyReusedError{OrderID: 5})}
	w = serve(f, "POST", body, "k-1")
	assert.Equal(t, 422, w.Code)
	assert.JSONEq(t, `{"Idempotency-Key": ["Already used for order 5, with other fields."]}`, w.Body.String())
}

func TestBadIdempotencyKeyCreatesNothing(t *testing.T) {
	f := &fakeOrders{}
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{""}, "1 to 255 characters"},
		{[]string{strings.Repeat("k", 256)}, "1 to 255 characters"},
		{[]string{"two words"}, "visible ASCII"},
		{[]string{"a", "b"}, "Send this header once."},
	} {
		w := serve(f, "POST", `{"customer_id": 1, "product_id": 2, "amount": 3}`, tc.keys...)
		assert.Equal(t, 400, w.Code, tc.keys)
		assert.Contains(t, w.Body.String(), `"Idempotency-Key"`, tc.keys)
		assert.Contains(t, w.Body.String(), tc.want, tc.keys)
	}
	assert.Empty(t, f.created)
}

func TestCreate(t *testing.T) {
	f := &fakeOrders{}
	w := serve(f, "POST", `{"customer_id": 1, "product_id": 2, "amount": 3}`)
	assert.Equal(t, 201, w.Code)
	assert.JSONEq(t, `{"order_id":5,"customer_id":"1","product_id":"2","amount":"3","quantity":0,"status":"created"}`, w.Body.String())
	assert.Equal(t, []app.NewOrder{{CustomerID: "1", ProductID: "2", Amount: "3"}}, f.created)
}

func TestNothingCreatedOnBadRequest(t *testing.T) {
	f := &fakeOrders{}
	for _, body := range []string{`{`, `{}`, `[]`} {
		w := serve(f, "POST", body)
		assert.Equal(t, 400, w.Code, body)
	}
	assert.Empty(t, f.created)
}

func TestServerErrors(t *testing.T) {
	f := &fakeOrders{err: errors.New("db down")}
	for _, method := range []string{"POST", "GET"} {
		w := serve(f, method, `{"customer_id": 1, "product_id": 2, "amount": 3}`)
		assert.Equal(t, 500, w.Code)
		assert.JSONEq(t, `{"detail":"A server error occurred."}`, w.Body.String())
	}
}
