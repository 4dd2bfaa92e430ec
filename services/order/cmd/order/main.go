// Command order is the saga's order service (docs/contracts.md, "HTTP
// contract" and "Messaging contract"): the orders API on :8000 and the
// consumer of order.v1. It sends its messages as outbox rows that cdc-relay
// publishes.
package main

import (
	"context"
	"io"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
	"github.com/saga-cdc/saga/services/order/internal/consumer"
	"github.com/saga-cdc/saga/services/order/internal/httpapi"
	"github.com/saga-cdc/saga/services/order/internal/store"
)

func main() { platform.Main("order", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return platform.Run(ctx, platform.Service{
		Name:        "order",
		DefaultAddr: ":8000",
		Migrations:  migrations.Order(),
		RoutingKey:  platform.RoutingKeyOrder,
		Routes: func(r *gin.Engine, d platform.Deps) {
			httpapi.Routes(r, service(d), d.Logger.With(platform.LogComponent, "http"))
		},
		Handler: func(d platform.Deps) platform.Handler {
			return consumer.Handler(service(d), d.Logger.With(platform.LogComponent, "consumer"))
		},
	}, args, getenv, stdout)
}

func service(d platform.Deps) app.Service {
	return app.Service{DB: d.Pool, Store: store.Store{Pool: d.Pool}, Outbox: d.Outbox}
}
