// Package httpapi is the payment service's HTTP API (docs/contracts.md, "HTTP
// contract"): the list GET /api/v1/payments/.
package httpapi

import (
	"context"
	"log/slog"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/payment/internal/app"
)

// Lister is what the handler needs of the payment use cases.
type Lister interface {
	List(ctx context.Context) ([]app.Payment, error)
}

// Routes adds the payment API to r.
func Routes(r gin.IRoutes, payments Lister, logger *slog.Logger) {
	list := platform.List(payments.List, logger)
	r.GET("/api/v1/payments/", list)
	r.HEAD("/api/v1/payments/", list)
}
