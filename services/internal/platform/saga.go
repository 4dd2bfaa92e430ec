package platform

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/saga-cdc/saga/internal/tracing"
)

// SagaMessages is one service's part of an order's saga, as
// GET /api/v1/sagas/{order_id}/ answers it: the outbox rows it wrote for the
// order (every message of a saga has the order's id as aggregate_id) and
// the messages of the order it consumed, with the deliveries its inbox
// turned away as duplicates. The dashboard's timeline joins the three
// services' answers (a message's inbox message_id is its outbox row id).
type SagaMessages struct {
	Service string        `json:"service"`
	OrderID string        `json:"order_id"`
	Outbox  []OutboxEntry `json:"outbox"`
	Inbox   []InboxEntry  `json:"inbox"`
}

// OutboxEntry is an outbox row of the saga.
type OutboxEntry struct {
	ID         string    `json:"id"`
	EventType  string    `json:"event_type"`
	RoutingKey string    `json:"routing_key"`
	CreatedAt  time.Time `json:"created_at"`
	// TraceID is the W3C trace id of the row's traceparent (tracing on),
	// for a link to the trace.
	TraceID string `json:"trace_id,omitempty"`
}

// InboxEntry is a consumed message of the saga.
type InboxEntry struct {
	MessageID       string     `json:"message_id"`
	Queue           string     `json:"queue"`
	EventType       string     `json:"event_type"`
	ReceivedAt      time.Time  `json:"received_at"`
	Duplicates      int        `json:"duplicates"`
	LastDuplicateAt *time.Time `json:"last_duplicate_at"`
}

var orderIDPattern = regexp.MustCompile(`^[0-9]{1,19}$`)

// traceparentID is the trace id of a valid W3C traceparent, or "".
func traceparentID(tp string) string {
	if tp == "" {
		return ""
	}
	ctx := tracing.Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// ReadSaga reads service's part of order's saga from its database.
func ReadSaga(ctx context.Context, pool *pgxpool.Pool, service, orderID string) (SagaMessages, error) {
	out := SagaMessages{Service: service, OrderID: orderID, Outbox: []OutboxEntry{}, Inbox: []InboxEntry{}}
	rows, err := pool.Query(ctx, `SELECT id, event_type, routing_key, created_at, COALESCE(headers->>'traceparent', '')
		FROM outbox WHERE aggregate_id = $1 ORDER BY created_at, seq`, orderID)
	if err != nil {
		return out, fmt.Errorf("read the outbox of order %s: %w", orderID, err)
	}
	outbox, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxEntry, error) {
		var e OutboxEntry
		var tp string
		err := r.Scan(&e.ID, &e.EventType, &e.RoutingKey, &e.CreatedAt, &tp)
		e.TraceID = traceparentID(tp)
		return e, err
	})
	if err != nil {
		return out, fmt.Errorf("read the outbox of order %s: %w", orderID, err)
	}
	rows, err = pool.Query(ctx, `SELECT message_id, queue, event_type, received_at, duplicates, last_duplicate_at
		FROM inbox WHERE aggregate_id = $1 ORDER BY received_at, message_id`, orderID)
	if err != nil {
		return out, fmt.Errorf("read the inbox of order %s: %w", orderID, err)
	}
	inbox, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboxEntry, error) {
		var e InboxEntry
		err := r.Scan(&e.MessageID, &e.Queue, &e.EventType, &e.ReceivedAt, &e.Duplicates, &e.LastDuplicateAt)
		return e, err
	})
	if err != nil {
		return out, fmt.Errorf("read the inbox of order %s: %w", orderID, err)
	}
	out.Outbox = append(out.Outbox, outbox...)
	out.Inbox = append(out.Inbox, inbox...)
	return out, nil
}

// SagaRoute adds GET /api/v1/sagas/:order_id/ to r: read-only, one order's
// messages in this service.
func SagaRoute(r *gin.Engine, pool *pgxpool.Pool, service string, logger *slog.Logger) {
	r.GET("/api/v1/sagas/:order_id/", func(c *gin.Context) {
		id := c.Param("order_id")
		if !orderIDPattern.MatchString(id) {
			c.JSON(http.StatusBadRequest, gin.H{"detail": "order_id must be a whole number"})
			return
		}
		m, err := ReadSaga(c.Request.Context(), pool, service, id)
		if err != nil {
			ServerError(c, logger, err)
			return
		}
		c.JSON(http.StatusOK, m)
	})
}
