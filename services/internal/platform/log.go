package platform

import (
	"io"
	"log/slog"
)

// Log keys used by every service, so that logs of the three can be searched alike.
const (
	LogComponent  = "component"
	LogService    = "service"
	LogQueue      = "queue"
	LogMessageID  = "message_id"
	LogRoutingKey = "routing_key"
	LogEventType  = "event_type"
	LogOrderID    = "order_id"
	LogReason     = "reason"
	LogError      = "error"
	LogAddr       = "addr"
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
