// Command payment is the saga's payment service (docs/contracts.md, "HTTP
// contract" and "Messaging contract"): the payment list on :8002 and the
// consumer of payment.v1, which confirms or denies the payment of a reserved
// order. It sends its messages as outbox rows that cdc-relay publishes.
package main

import (
	"context"
	"io"

	"github.com/gin-gonic/gin"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/payment/internal/app"
	"github.com/saga-cdc/saga/services/payment/internal/consumer"
	"github.com/saga-cdc/saga/services/payment/internal/httpapi"
	"github.com/saga-cdc/saga/services/payment/internal/store"
)

func main() { platform.Main("payment", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return platform.Run(ctx, platform.Service{
		Name:        "payment",
		DefaultAddr: ":8002",
		Migrations:  migrations.Payment(),
		RoutingKey:  platform.RoutingKeyPayment,
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
