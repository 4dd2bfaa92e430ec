package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/saga-cdc/saga/internal/tracing"
	"github.com/saga-cdc/saga/migrations"
)

// Service describes one saga service for Run.
type Service struct {
	// Name is "order", "stock" or "payment".
	Name string
	// DefaultAddr is the default HTTP_ADDR (":8000", ":8001", ":8002").
	DefaultAddr string
	// Migrations is the service database's schema.
	Migrations migrations.Set
	// RoutingKey names the queue the service consumes (behind the prefix).
	RoutingKey string
	// Routes adds the service's API to r.
	Routes func(r *gin.Engine, deps Deps)
	// Handler returns the consumer's message handler.
	Handler func(deps Deps) Handler
}

// Deps is what a service's routes and handler are built from.
type Deps struct {
	Pool   *pgxpool.Pool
	Outbox OutboxWriter
	Logger *slog.Logger
}

// Run is a service's whole life: read the configuration, migrate the
// database, then serve HTTP, consume the queue and prune the outbox until
// ctx is done, and shut down gracefully. args[1] may be "migrate", which
// only migrates. Run writes its logs to stdout.
func Run(ctx context.Context, svc Service, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: %s [migrate]\n\nConfigured by the environment: DATABASE_URL, AMQP_URL, HTTP_ADDR (default %s),\n"+
			"SAGA_EXCHANGE, SAGA_QUEUE_PREFIX, CONSUMER_PREFETCH, OUTBOX_RETENTION, INBOX_RETENTION,\n"+
			"RETENTION_INTERVAL, SHUTDOWN_TIMEOUT, LOG_LEVEL, LOG_FORMAT, OTEL_EXPORTER_OTLP_ENDPOINT (see docs/services.md).\n", svc.Name, svc.DefaultAddr)
	}
	if len(args) > 0 {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	migrateOnly := false
	switch fs.Arg(0) {
	case "":
	case "migrate":
		migrateOnly = true
	default:
		return fmt.Errorf("unknown command %q (want none or migrate)", fs.Arg(0))
	}

	cfg, err := FromEnv(getenv, svc.DefaultAddr)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	logger := NewLogger(stdout, cfg.LogLevel, cfg.LogFormat).With(LogService, svc.Name)
	tr, err := tracing.Setup(ctx, getenv, svc.Name)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer func() {
		if err := tr.Shutdown(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("flushing the last spans", LogError, err)
		}
	}()
	if tr.Enabled {
		logger.Info("tracing on: spans are exported over OTLP/HTTP", "otlp_endpoint", tr.Endpoint)
	}

	if err := migrateWithRetry(ctx, logger, cfg.DatabaseURL, svc.Migrations); err != nil {
		return err
	}
	if migrateOnly {
		logger.Info("migrations applied")
		return nil
	}
	pool, err := NewPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()

	deps := Deps{Pool: pool, Outbox: OutboxWriter{Exchange: cfg.Exchange}, Logger: logger}
	topo := Topology{Exchange: cfg.Exchange, QueuePrefix: cfg.QueuePrefix, QueueType: cfg.QueueType}
	consumer := &Consumer{
		Pool:     pool,
		AMQPURL:  cfg.AMQPURL,
		Queue:    topo.Queue(svc.RoutingKey),
		Prefetch: cfg.Prefetch,
		Setup:    func(ctx context.Context, ch *amqp.Channel) error { return topo.Declare(ctx, ch) },
		Handler:  svc.Handler(deps),
		Logger:   logger.With(LogComponent, "consumer"),
	}
	retention := Retention{
		Pool:      pool,
		OutboxAge: cfg.OutboxRetention,
		InboxAge:  cfg.InboxRetention,
		Interval:  cfg.RetentionInterval,
		Logger:    logger.With(LogComponent, "retention"),
	}

	router := NewRouter(logger.With(LogComponent, "http"))
	Health(router, func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if !consumer.Ready() {
			return errors.New("consumer is not connected to the broker")
		}
		return nil
	})
	svc.Routes(router, deps)
	SagaRoute(router, pool, svc.Name, logger.With(LogComponent, "http"))

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	logger.Info("http server listening", LogAddr, ln.Addr().String(),
		"exchange", cfg.Exchange, LogQueue, consumer.Queue)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return Serve(gctx, ln, router, cfg.ShutdownTimeout) })
	g.Go(func() error { return consumer.Run(gctx) })
	g.Go(func() error { return retention.Run(gctx) })
	err = g.Wait()
	logger.Info("stopped")
	return err
}

// migrateWithRetry retries while the database is not reachable yet (a
// container starting beside it), for up to a minute.
func migrateWithRetry(ctx context.Context, logger *slog.Logger, url string, set migrations.Set) error {
	deadline := time.Now().Add(time.Minute)
	b := newBackoff(250*time.Millisecond, 5*time.Second)
	for {
		err := Migrate(ctx, url, set)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || !unreachable(err) {
			return err
		}
		wait := b.next()
		logger.Warn("database not ready, retrying migrations", LogError, err, "retry_in", wait.String())
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// unreachable reports whether err means the server did not answer (or is
// still starting up), rather than refused what it was sent.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P03" // cannot_connect_now: starting up
	}
	return true
}
