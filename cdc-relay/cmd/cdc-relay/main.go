// Command cdc-relay relays a Postgres outbox table to RabbitMQ by tailing the
// WAL through pgoutput logical replication (see docs/contracts.md).
//
//	cdc-relay run [flags]    the daemon; flags override CDC_RELAY_* variables
//	cdc-relay slot list|create|drop|advance, publication create|show, doctor, replay
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
	"sync"
	"syscall"
	"time"

	"github.com/saga-cdc/saga/cdc-relay/internal/admin"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/httpserver"
	"github.com/saga-cdc/saga/cdc-relay/internal/metrics"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/internal/logkey"
	"github.com/saga-cdc/saga/internal/tracing"
)

func main() {
	// The live heap is small and bounded by the in-flight window, while the
	// allocation rate follows the row rate: collect less often than Go's
	// default unless the operator chose (GOGC, GOMEMLIMIT).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal the relay drains; a second one ends the
	// process at once, as it would without the handler.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := exitCode(err)
	if !errors.Is(err, config.ErrHelp) && !errors.Is(err, errLogged) {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "cdc-relay:", line)
		}
	}
	os.Exit(code)
}

var usageText = `usage: cdc-relay <command> [flags]

commands (flags override CDC_RELAY_* variables; <command> -h lists them):
  run                                     relay the outbox to RabbitMQ
` + admin.Usage + `  version                                 print the version
`

// exitCode is the process's exit code for an error of run: 2 for a usage
// error (admin.UsageError, for the daemon and the commands alike), 1 for
// any other.
func exitCode(err error) int { return admin.ExitCode(err) }

// usageError is a command-line or configuration error: exit code 2.
func usageError(err error) error { return admin.UsageError{Err: err} }

// errLogged marks an error already written to the log.
var errLogged = errors.New("see the log")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usageText)
		return usageError(errors.New("missing command"))
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
		if admin.Handles(args[1]) {
			return admin.Run(ctx, args[1:], getenv, stdout, stderr)
		}
		fmt.Fprint(stderr, usageText)
		return usageError(fmt.Errorf("unknown command %q", args[1]))
	}
}

func runRelay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfgs, err := config.ParseAll("cdc-relay run", args, getenv, stderr)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return err
		}
		return usageError(err)
	}
	// HTTP and logging are per process: the first entry carries them.
	log := newLogger(cfgs[0], stdout)
	// Tracing (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set): a span per
	// published message, from its commit to the broker's confirm.
	tr, err := tracing.Setup(ctx, getenv, "cdc-relay")
	if err != nil {
		return usageError(fmt.Errorf("config: %w", err))
	}
	defer func() {
		if err := tr.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Warn("flushing the last spans", logkey.Error, err)
		}
	}()
	var opts relay.Options
	if tr.Enabled {
		opts.Tracer = tracing.Tracer()
		log.Info("tracing on: a span per published message, exported over OTLP/HTTP", "otlp_endpoint", tr.Endpoint)
	}
	reg := metrics.NewRegistry()
	relays := make([]*relay.Relay, len(cfgs))
	for i, cfg := range cfgs {
		log.Info("starting cdc-relay", "version", version(), "config", cfg)
		relays[i] = relay.New(cfg, opts, log, reg.Relay(cfg.Slot))
	}
	statuses := func() []relay.Status {
		out := make([]relay.Status, len(relays))
		for i, r := range relays {
			out[i] = r.Status()
		}
		return out
	}

	ln, err := net.Listen("tcp", cfgs[0].HTTPAddr)
	if err != nil {
		return usageError(fmt.Errorf("config: CDC_RELAY_HTTP_ADDR (--http-addr): listen on %q: %w", cfgs[0].HTTPAddr, err))
	}
	srv := &http.Server{Handler: httpserver.MultiHandler(statuses, reg.Handler()), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", logkey.Error, err)
		}
	}()
	log.Info("http listening", logkey.Addr, ln.Addr().String())

	// A relay that stops on a fatal error leaves the others running: one
	// misconfigured database does not stop the outboxes of the rest. The
	// process exits non-zero once every relay has stopped.
	errs := make([]error, len(relays))
	var wg sync.WaitGroup
	for i, r := range relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = r.Run(ctx); errs[i] != nil {
				log.Error("relay stopped", "relay", cfgs[i].Name, logkey.Error, errs[i])
			}
		}()
	}
	wg.Wait()

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", errLogged, err)
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
