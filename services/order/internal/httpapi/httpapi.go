// Package httpapi is the order service's HTTP API (docs/contracts.md, "HTTP
// contract"): GET and POST /api/v1/orders/.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

// Orders is what the handlers need of the order use cases.
type Orders interface {
	Create(ctx context.Context, n app.NewOrder) (o app.Order, created bool, err error)
	List(ctx context.Context) ([]app.Order, error)
}

// Routes adds the order API to r.
func Routes(r gin.IRoutes, orders Orders, logger *slog.Logger) {
	h := handlers{orders: orders, logger: logger}
	list := platform.List(orders.List, logger)
	r.GET("/api/v1/orders/", list)
	r.HEAD("/api/v1/orders/", list)
	r.POST("/api/v1/orders/", h.create)
}

type handlers struct {
	orders Orders
	logger *slog.Logger
}

func (h handlers) create(c *gin.Context) {
	var key string
	if keys := c.Request.Header.Values(app.IdempotencyKeyHeader); len(keys) > 0 {
		msg := "Send this header once."
		if len(keys) == 1 {
			key, msg = keys[0], app.CheckIdempotencyKey(keys[0])
		}
		if msg != "" {
			c.JSON(http.StatusBadRequest, platform.FieldErrors{app.IdempotencyKeyHeader: {msg}})
			return
		}
	}
	body, err := platform.ReadObject(c.Request)
	var bad *platform.BadRequest
	if errors.As(err, &bad) {
		c.JSON(http.StatusBadRequest, bad.Body)
		return
	}
	n, fieldErrs := app.Validate(body)
	if fieldErrs != nil {
		c.JSON(http.StatusBadRequest, fieldErrs)
		return
	}
	n.IdempotencyKey = key
	o, created, err := h.orders.Create(c.Request.Context(), n)
	var reused *app.KeyReusedError
	switch {
	case errors.As(err, &reused):
		c.JSON(http.StatusUnprocessableEntity, platform.FieldErrors{app.IdempotencyKeyHeader: {
			fmt.Sprintf("Already used for order %d, with other fields.", reused.OrderID)}})
	case err != nil:
		platform.ServerError(c, h.logger, err)
	case !created:
		// A retry: the order the key created, as it stands now.
		c.Header("Idempotent-Replayed", "true")
		c.JSON(http.StatusOK, o)
	default:
		c.JSON(http.StatusCreated, o)
	}
}
