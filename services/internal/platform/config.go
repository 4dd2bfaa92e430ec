// Package platform is what the three saga services share: configuration from
// the environment, logging, the Postgres pool and migrations, the gin router
// with Django REST framework's 405 and trailing-slash behaviour, the outbox
// writer, the inbox consumer, the RabbitMQ topology (docs/contracts.md,
// "Messaging contract") and the outbox retention job. It never publishes to
// RabbitMQ: services only INSERT outbox rows, and cdc-relay carries them.
package platform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/saga-cdc/saga/internal/envfile"
)

// Config is a service's configuration. FromEnv is the only place that reads
// the environment.
type Config struct {
	// DatabaseURL is the service's own Postgres database (DATABASE_URL, required).
	DatabaseURL string
	// AMQPURL is the RabbitMQ broker the service consumes from (AMQP_URL, required).
	AMQPURL string
	// HTTPAddr is where the HTTP API listens (HTTP_ADDR; :8000, :8001, :8002).
	HTTPAddr string
	// Exchange is the topic exchange the queues are bound to (SAGA_EXCHANGE, "saga").
	// It must be the exchange cdc-relay publishes to.
	Exchange string
	// QueuePrefix is put in front of every queue name (SAGA_QUEUE_PREFIX, ""), so
	// that tests and a demo can share one broker. Routing keys never change.
	QueuePrefix string
	// QueueType is classic or quorum (SAGA_QUEUE_TYPE, classic): quorum
	// queues are what a RabbitMQ cluster wants; classic ones keep the
	// arguments the original demo's queues have.
	QueueType string
	// Prefetch is the consumer's basic.qos prefetch count (CONSUMER_PREFETCH, 10).
	Prefetch int
	// OutboxRetention is how long outbox rows are kept for a replay after a lost
	// slot (OUTBOX_RETENTION, 7 days; Go duration or a number of days like "7d").
	OutboxRetention time.Duration
	// InboxRetention is how long inbox rows are kept for dedup (INBOX_RETENTION,
	// 14 days). It is longer than OutboxRetention so that a replay of the whole
	// outbox window still finds the inbox rows of the messages it repeats.
	InboxRetention time.Duration
	// RetentionInterval is how often the retention job runs (RETENTION_INTERVAL, 1h).
	RetentionInterval time.Duration
	// ShutdownTimeout bounds the graceful drain on SIGTERM (SHUTDOWN_TIMEOUT, 15s).
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error (LOG_LEVEL, info).
	LogLevel string
	// LogFormat is json or text (LOG_FORMAT, json).
	LogFormat string
}

// FromEnv reads the configuration from getenv, with defaultAddr as the
// default HTTP_ADDR, and validates it. An error names the bad variable.
func FromEnv(getenv func(string) string, defaultAddr string) (Config, error) {
	var errs []error
	// The URLs hold passwords: each may come from a file instead
	// (DATABASE_URL_FILE, AMQP_URL_FILE: Docker and Kubernetes secrets).
	secret := func(name string) string {
		v, err := envfile.Lookup(getenv, name)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	c := Config{
		DatabaseURL:       secret("DATABASE_URL"),
		AMQPURL:           secret("AMQP_URL"),
		HTTPAddr:          orDefault(getenv("HTTP_ADDR"), defaultAddr),
		Exchange:          orDefault(getenv("SAGA_EXCHANGE"), "saga"),
		QueuePrefix:       getenv("SAGA_QUEUE_PREFIX"),
		QueueType:         orDefault(getenv("SAGA_QUEUE_TYPE"), QueueClassic),
		LogLevel:          orDefault(getenv("LOG_LEVEL"), "info"),
		LogFormat:         orDefault(getenv("LOG_FORMAT"), "json"),
		Prefetch:          10,
		OutboxRetention:   7 * 24 * time.Hour,
		InboxRetention:    14 * 24 * time.Hour,
		RetentionInterval: time.Hour,
		ShutdownTimeout:   15 * time.Second,
	}
	if v := getenv("CONSUMER_PREFETCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CONSUMER_PREFETCH: %q is not an integer", v))
		}
		c.Prefetch = n
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"OUTBOX_RETENTION", &c.OutboxRetention},
		{"INBOX_RETENTION", &c.InboxRetention},
		{"RETENTION_INTERVAL", &c.RetentionInterval},
		{"SHUTDOWN_TIMEOUT", &c.ShutdownTimeout},
	} {
		v := getenv(d.name)
		if v == "" {
			continue
		}
		dur, err := ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
			continue
		}
		*d.dst = dur
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every field and names the first bad one by its variable.
func (c Config) Validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("DATABASE_URL is required")
	case c.AMQPURL == "":
		return errors.New("AMQP_URL is required")
	case c.HTTPAddr == "":
		return errors.New("HTTP_ADDR is required")
	case c.Exchange == "":
		return errors.New("SAGA_EXCHANGE must not be empty")
	case c.Prefetch < 1:
		return fmt.Errorf("CONSUMER_PREFETCH: %d is not a positive integer", c.Prefetch)
	case c.OutboxRetention <= 0:
		return fmt.Errorf("OUTBOX_RETENTION: %s is not positive", c.OutboxRetention)
	case c.InboxRetention <= 0:
		return fmt.Errorf("INBOX_RETENTION: %s is not positive", c.InboxRetention)
	case c.RetentionInterval <= 0:
		return fmt.Errorf("RETENTION_INTERVAL: %s is not positive", c.RetentionInterval)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("SHUTDOWN_TIMEOUT: %s is not positive", c.ShutdownTimeout)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return fmt.Errorf("LOG_FORMAT: %q is not one of json, text", c.LogFormat)
	}
	switch c.QueueType {
	case QueueClassic, QueueQuorum:
	default:
		return fmt.Errorf("SAGA_QUEUE_TYPE: %q is not one of classic, quorum", c.QueueType)
	}
	return nil
}

// ParseDuration parses a Go duration ("36h", "90m") or a whole number of
// days ("7d"), the unit retention windows are usually given in.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration like 7d or 168h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 7d or 168h", s)
	}
	return d, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
