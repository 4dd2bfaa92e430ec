// Package httpapi is the stock service's HTTP API (docs/contracts.md, "HTTP
// contract"): the lists GET /api/v1/stocks/ and GET /api/v1/reservations/.
package httpapi

import (
	"context"
	"log/slog"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/stock/internal/app"
)

// Lists is what the handlers need of the stock use cases.
type Lists interface {
	Stocks(ctx context.Context) ([]app.Stock, error)
	Reservations(ctx context.Context) ([]app.Reservation, error)
}

// Routes adds the stock API to r.
func Routes(r gin.IRoutes, lists Lists, logger *slog.Logger) {
	stocks := platform.List(lists.Stocks, logger)
	reservations := platform.List(lists.Reservations, logger)
	r.GET("/api/v1/stocks/", stocks)
	r.HEAD("/api/v1/stocks/", stocks)
	r.GET("/api/v1/reservations/", reservations)
	r.HEAD("/api/v1/reservations/", reservations)
}
