package platform

import (
	"io"
	"log/slog"

	"github.com/saga-cdc/saga/internal/logkey"
)

// Log keys used by every service, so that logs of the three can be searched
// alike; those the relay writes too are its own (internal/logkey).
const (
	LogComponent  = logkey.Component
	LogService    = "service"
	LogQueue      = "queue"
	LogMessageID  = logkey.MessageID
	LogRoutingKey = logkey.RoutingKey
	LogEventType  = "event_type"
	LogOrderID    = "order_id"
	LogReason     = "reason"
	LogError      = logkey.Error
	LogAddr       = logkey.Addr
)

// NewLogger returns a slog logger writing to w in format ("json" or "text")
// at level ("debug", "info", "warn", "error"; anything else is info).
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
