package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/saga-cdc/saga/internal/tracing"
)

// MaxBodyBytes is the largest request body accepted (1 MiB,
// docs/contracts.md, "HTTP contract").
const MaxBodyBytes = 1 << 20

var ginMode sync.Once

// NewRouter returns a gin engine that answers like Django REST framework's
// views, as the original demo did (docs/origin.md): a path without its
// trailing slash redirects to it (301 for GET, 307 otherwise, keeping the
// body), an unsupported method is a 405
// {"detail": "Method \"POST\" not allowed."}, and an unknown path a 404
// {"detail": "Not found."}. Redirects honour X-Forwarded-Prefix, which Kong
// sets when it strips /order, /stock or /payment.
func NewRouter(logger *slog.Logger) *gin.Engine {
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	r := gin.New()
	r.RedirectTrailingSlash = true
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.Use(traceRequests(), requestLogger(logger), recovery(logger))
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"detail": fmt.Sprintf("Method %q not allowed.", c.Request.Method)})
	})
	r.NoRoute(func(c *gin.Context) {
		// gin redirects only when the method has a route at path+"/"; Django's
		// APPEND_SLASH redirects for any method, and the target then answers
		// 405 where the method is not allowed.
		p := c.Request.URL.Path
		if !strings.HasSuffix(p, "/") {
			for _, route := range r.Routes() {
				if route.Path == p+"/" {
					u := *c.Request.URL
					u.Path = p + "/"
					code := http.StatusMovedPermanently
					if c.Request.Method != http.MethodGet {
						code = http.StatusTemporaryRedirect
					}
					c.Redirect(code, u.String())
					return
				}
			}
		}
		c.JSON(http.StatusNotFound, gin.H{"detail": "Not found."})
	})
	return r
}

// Health adds /livez (the process answers) and /readyz (ready returns nil:
// database reachable, consumer consuming) to r.
func Health(r *gin.Engine, ready func(ctx context.Context) error) {
	r.GET("/livez", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	})
}

func requestLogger(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		path := c.Request.URL.Path
		if path == "/livez" || path == "/readyz" {
			return
		}
		logger.Debug("http request", "method", c.Request.Method, "path", path,
			"status", c.Writer.Status(), "duration_ms", time.Since(start).Milliseconds())
	}
}

func recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.Error("http handler panicked", "panic", fmt.Sprint(v), "path", c.Request.URL.Path)
				c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"detail": "A server error occurred."})
			}
		}()
		c.Next()
	}
}

// BadRequest is a 400 answer: Body is written as the JSON response.
type BadRequest struct {
	Body any
}

func (e *BadRequest) Error() string { return fmt.Sprintf("bad request: %v", e.Body) }

// FieldErrors is the 400 body of Django REST framework: {"<field>": ["<message>"]}.
type FieldErrors map[string][]string

// Add records msg against field.
func (f FieldErrors) Add(field, msg string) { f[field] = append(f[field], msg) }

// ReadObject reads a request body of at most MaxBodyBytes holding one JSON
// object, whatever the Content-Type, and returns its members undecoded. An
// empty body is an empty object, as in Django REST framework, so that
// required fields are reported by name. Anything else is a *BadRequest.
func ReadObject(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &BadRequest{Body: map[string]string{"detail": "Request body is larger than 1 MiB."}}
		}
		return nil, &BadRequest{Body: map[string]string{"detail": "Request body could not be read."}}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	var v json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&v); err != nil {
		return nil, &BadRequest{Body: map[string]string{"detail": "JSON parse error - " + err.Error()}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &BadRequest{Body: map[string]string{"detail": "JSON parse error - extra data after the JSON value"}}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil || obj == nil {
		msg := "No data provided"
		if kind := jsonKind(v); kind != "null" {
			msg = "Invalid data. Expected a dictionary, but got " + kind + "."
		}
		return nil, &BadRequest{Body: FieldErrors{"non_field_errors": {msg}}}
	}
	return obj, nil
}

// jsonKind names the JSON value's type as Python would: Django REST
// framework's error says "Expected a dictionary, but got list."
func jsonKind(v json.RawMessage) string {
	switch t := bytes.TrimSpace(v); {
	case len(t) == 0 || string(t) == "null":
		return "null"
	case t[0] == '[':
		return "list"
	case t[0] == '"':
		return "str"
	case t[0] == 't' || t[0] == 'f':
		return "bool"
	case bytes.ContainsAny(t, ".eE"):
		return "float"
	default:
		return "int"
	}
}

// Serve serves h on ln until ctx is done, then shuts down gracefully: it
// stops accepting, lets requests in flight finish for up to timeout, and
// then closes what is left.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// List answers a GET with list's result as a bare JSON array (never null),
// as Django REST framework's unpaginated list views do.
func List[T any](list func(ctx context.Context) ([]T, error), logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		items, err := list(c.Request.Context())
		if err != nil {
			ServerError(c, logger, err)
			return
		}
		if items == nil {
			items = []T{}
		}
		c.JSON(http.StatusOK, items)
	}
}

// ServerError is where a failed request's error is handled: logged once and
// answered as Django REST framework does.
func ServerError(c *gin.Context, logger *slog.Logger, err error) {
	logger.Error("http request failed", "method", c.Request.Method, "path", c.Request.URL.Path, LogError, err)
	c.JSON(http.StatusInternalServerError, gin.H{"detail": "A server error occurred."})
}

// traceRequests records a server span per request (tracing on), a child of
// the caller's traceparent if it sent one; the handlers' context carries
// it, so that the outbox rows they write carry its trace context.
func traceRequests() gin.HandlerFunc {
	return func(c *gin.Context) {
		tracer := tracing.Tracer()
		ctx := otel.GetTextMapPropagator().Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
		route := c.FullPath()
		name := c.Request.Method
		if route != "" {
			name += " " + route
		}
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if !span.IsRecording() {
			c.Request = c.Request.WithContext(ctx)
			c.Next()
			return
		}
		span.SetAttributes(attribute.String("http.request.method", c.Request.Method),
			attribute.String("url.path", c.Request.URL.Path), attribute.String("http.route", route))
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		status := c.Writer.Status()
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
}
