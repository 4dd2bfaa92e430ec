// Package httpapi is the order service's HTTP API (docs/contracts.md, "HTTP
// contract"): GET and POST /api/v1/orders/.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

// Orders is what the handlers need of the order use cases.
type Orders interface {
	Create(ctx context.Context, n app.NewOrder) (app.Order, error)
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
	o, err := h.orders.Create(c.Request.Context(), n)
	if err != nil {
		platform.ServerError(c, h.logger, err)
		return
	}
	c.JSON(http.StatusCreated, o)
}
