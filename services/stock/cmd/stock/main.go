// Command stock is the saga's stock service (docs/contracts.md, "HTTP
// contract" and "Messaging contract"): the stock and reservation lists on
// :8001 and the consumer of stock.v1, which reserves, compensates and
// confirms. It sends its messages as outbox rows that cdc-relay publishes.
package main

import (
	"context"
	"io"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/stock/internal/app"
	"github.com/saga-cdc/saga/services/stock/internal/consumer"
	"github.com/saga-cdc/saga/services/stock/internal/httpapi"
	"github.com/saga-cdc/saga/services/stock/internal/store"
)

func main() { platform.Main("stock", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return platform.Run(ctx, platform.Service{
		Name:        "stock",
		DefaultAddr: ":8001",
		Migrations:  migrations.Stock(),
		RoutingKey:  platform.RoutingKeyStock,
		Routes: func(r *gin.Engine, d platform.Deps) {
			httpapi.Routes(r, service(d), d.Logger.With(platform.LogComponent, "http"))
		},
		Handler: func(d platform.Deps) platform.Handler {
			return consumer.Handler(service(d), d.Logger.With(platform.LogComponent, "consumer"))
		},
	}, args, getenv, stdout)
}

func service(d platform.Deps) app.Service {
	return app.Service{Store: store.Store{Pool: d.Pool}, Outbox: d.Outbox}
}
