// Command cdc-relay relays a Postgres outbox table to RabbitMQ by tailing the
// WAL through pgoutput logical replication (see design §4).
//
//	cdc-relay run [flags]    the daemon; flags override CDC_RELAY_* variables
//	cdc-relay version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/httpserver"
	"github.com/saga-cdc/saga/cdc-relay/internal/metrics"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var usage usageError
	if errors.As(err, &usage) || errors.Is(err, config.ErrHelp) {
		code = 2
	}
	if !errors.Is(err, config.ErrHelp) && !errors.Is(err, errLogged) {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "cdc-relay:", line)
		}
	}
	os.Exit(code)
}

const usageText = `usage: cdc-relay <command> [flags]

commands:
  run       relay the outbox to RabbitMQ (flags override CDC_RELAY_* variables; run -h lists them)
  version   print the version
`

// usageError is a command-line or configuration error: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// errLogged marks an error already written to the log.
var errLogged = errors.New("see the log")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usageText)
		return usageError{errors.New("missing command")}
	}
	switch args[1] {
	case "run":
		return runRelay(ctx, args[2:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "cdc-relay", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	default:
		fmt.Fprint(stderr, usageText)
		return usageError{fmt.Errorf("unknown command %q", args[1])}
	}
}

func runRelay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Parse("cdc-relay run", args, getenv, stderr)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	log := newLogger(cfg, stdout)
	log.Info("starting cdc-relay", "version", version(), "config", cfg)

	m := metrics.New(cfg.Slot)
	r := relay.New(cfg, relay.Options{}, log, m)

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return usageError{fmt.Errorf("config: CDC_RELAY_HTTP_ADDR (--http-addr): listen on %q: %w", cfg.HTTPAddr, err)}
	}
	srv := &http.Server{Handler: httpserver.Handler(r.Status, m.Handler()), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String())

	runErr := r.Run(ctx)

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if runErr != nil {
		log.Error("relay stopped", "err", runErr)
		return fmt.Errorf("%w: %w", errLogged, runErr)
	}
	log.Info("relay stopped")
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
