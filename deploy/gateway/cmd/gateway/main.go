// Command gateway is the API gateway of the demo without Docker (make demo):
// /order, /stock and /payment to the three services with the prefix stripped
// and the CORS of the demo's Kong (deploy/kong/kong.yaml), and
// /relays/<name>/status to each relay, and the saga dashboard page at
// /dashboard/ (/ redirects to it). See packages gateway and dashboard.
//
//	gateway [-addr :8080] [-routes name=url,...] [-relays name=url,...] [-cors=true] [-dashboard=true]
//
// Each flag has an environment variable that it overrides: GATEWAY_ADDR,
// GATEWAY_ROUTES, GATEWAY_RELAYS, GATEWAY_CORS, GATEWAY_DASHBOARD, GATEWAY_JAEGER and
// LOG_LEVEL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/saga-cdc/saga/deploy/dashboard"
	"github.com/saga-cdc/saga/deploy/gateway"
)

// Defaults are the ports of the local demo (deploy/local/demo.sh).
const (
	defaultAddr   = ":8080"
	defaultRoutes = "order=http://127.0.0.1:8000,stock=http://127.0.0.1:8001,payment=http://127.0.0.1:8002"
	defaultRelays = "order=http://127.0.0.1:9401,stock=http://127.0.0.1:9402,payment=http://127.0.0.1:9403"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", envOr(getenv, "GATEWAY_ADDR", defaultAddr), "listen address (GATEWAY_ADDR)")
	routes := fs.String("routes", envOr(getenv, "GATEWAY_ROUTES", defaultRoutes), "API routes: /<name> to url, prefix stripped (GATEWAY_ROUTES)")
	relays := fs.String("relays", envOr(getenv, "GATEWAY_RELAYS", defaultRelays), "relays whose /status is served at /relays/<name>/status (GATEWAY_RELAYS)")
	corsDefault, err := strconv.ParseBool(envOr(getenv, "GATEWAY_CORS", "true"))
	if err != nil {
		return fmt.Errorf("GATEWAY_CORS: %q is not a boolean", getenv("GATEWAY_CORS"))
	}
	cors := fs.Bool("cors", corsDefault, "add the CORS headers of the demo's Kong and answer preflights (GATEWAY_CORS)")
	dashDefault, err := strconv.ParseBool(envOr(getenv, "GATEWAY_DASHBOARD", "true"))
	if err != nil {
		return fmt.Errorf("GATEWAY_DASHBOARD: %q is not a boolean", getenv("GATEWAY_DASHBOARD"))
	}
	dash := fs.Bool("dashboard", dashDefault, "serve the saga dashboard at /dashboard/, and redirect / to it (GATEWAY_DASHBOARD)")
	jaeger := fs.String("jaeger", getenv("GATEWAY_JAEGER"), "Jaeger's UI, served under /jaeger with the path kept (run it with --query.base-path=/jaeger); empty: no /jaeger (GATEWAY_JAEGER)")
	level := fs.String("log-level", envOr(getenv, "LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if len(args) > 0 {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %q is not one of debug, info, warn, error", *level)
	}
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: lvl})).With("component", "gateway")

	names, urls, err := gateway.ParseTargets(*routes)
	if err != nil {
		return fmt.Errorf("GATEWAY_ROUTES: %w", err)
	}
	relayNames, relayURLs, err := gateway.ParseTargets(*relays)
	if err != nil {
		return fmt.Errorf("GATEWAY_RELAYS: %w", err)
	}
	cfg := gateway.Config{Routes: gateway.Routes(names, urls), Relays: map[string]*url.URL{}, Logger: logger}
	if *jaeger != "" {
		u, err := url.Parse(*jaeger)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("GATEWAY_JAEGER: not an http:// or https:// URL")
		}
		cfg.Routes = append(cfg.Routes, gateway.Route{Prefix: "/jaeger", Upstream: u, KeepPath: true})
		*jaeger = u.Redacted() // for the log
	}
	for i, n := range relayNames {
		cfg.Relays[n] = relayURLs[i]
	}
	if *cors {
		cfg.CORS = gateway.KongCORS()
	}
	if *dash {
		cfg.Dashboard = dashboard.Handler()
	}
	handler, err := gateway.New(cfg)
	if err != nil {
		return err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("gateway listening", "addr", ln.Addr().String(), "routes", *routes, "relays", *relays, "cors", *cors, "dashboard", *dash, "jaeger", *jaeger)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Soft stop: finish requests in flight, then give up after a deadline.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("gateway stopped")
	return nil
}
