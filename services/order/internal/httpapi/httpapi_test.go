package httpapi

import (
	"context"
	"errors"
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
}

func (f *fakeOrders) Create(_ context.Context, n app.NewOrder) (app.Order, error) {
	f.created = append(f.created, n)
	return app.Order{OrderID: 5, CustomerID: n.CustomerID, ProductID: n.ProductID, Amount: n.Amount, Quantity: n.Quantity, Status: app.StatusCreated}, f.err
}

func (f *fakeOrders) List(context.Context) ([]app.Order, error) { return nil, f.err }

func serve(f *fakeOrders, method, body string) *httptest.ResponseRecorder {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := platform.NewRouter(log)
	Routes(r, f, log)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(method, "/api/v1/orders/", strings.NewReader(body)))
	return w
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
