package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// dial connects to the broker, bounded by ctx's deadline.
func dial(ctx context.Context, amqpURL, name string) (*amqp.Connection, error) {
	cfg := amqp.Config{Locale: "en_US", Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName(name)
	if deadline, ok := ctx.Deadline(); ok {
		cfg.Dial = amqp.DefaultDial(time.Until(deadline))
	}
	conn, err := amqp.DialConfig(amqpURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to broker: %w", err)
	}
	return conn, nil
}

// rabbitVersion is the broker's version from its connection properties.
func rabbitVersion(ctx context.Context, amqpURL string) (string, error) {
	conn, err := dial(ctx, amqpURL, "saga-bench")
	if err != nil {
		return "", err
	}
	defer conn.Close()
	v, _ := conn.Properties["version"].(string)
	return v, nil
}

// body is a payload like the rows' (jsonb's text of the row's payload).
func body(seq int) []byte {
	return []byte(`{"pad": "` + strings.Repeat("x", bodyPad) + `", "seq": ` + strconv.Itoa(seq) + `, "writer": 0}`)
}

// confirmer publishes on one confirm-mode channel with at most window
// unconfirmed messages, as the relay does.
type confirmer struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string
	slots    chan struct{}
	confirms chan amqp.Confirmation
}

func newConfirmer(ctx context.Context, amqpURL, exchange string, window int) (*confirmer, error) {
	conn, err := dial(ctx, amqpURL, "saga-bench-publisher")
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("put channel in confirm mode: %w", err)
	}
	return &confirmer{
		conn:     conn,
		ch:       ch,
		exchange: exchange,
		slots:    make(chan struct{}, window),
		confirms: ch.NotifyPublish(make(chan amqp.Confirmation, window)),
	}, nil
}

// publish waits for room in the window and publishes msg persistent and
// mandatory.
func (c *confirmer) publish(ctx context.Context, msg amqp.Publishing) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.ch.PublishWithContext(ctx, c.exchange, RoutingKey, true, false, msg); err != nil {
		return fmt.Errorf("publish message %s: %w", msg.MessageId, err)
	}
	return nil
}

// confirmed calls fn with each confirm's delivery tag, in order, until ctx
// ends or the channel closes; a nack is an error.
func (c *confirmer) confirmed(ctx context.Context, fn func(tag uint64)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case cf, ok := <-c.confirms:
			if !ok {
				return errors.New("confirms: channel closed")
			}
			<-c.slots
			if !cf.Ack {
				return fmt.Errorf("message %d nacked", cf.DeliveryTag)
			}
			fn(cf.DeliveryTag)
		}
	}
}

func (c *confirmer) close() {
	go func() {
		for range c.confirms {
		}
	}()
	_ = c.conn.Close()
}

// counter consumes a queue (auto-ack) and counts deliveries; when it
// tracks, it also keeps when each row (by its aggregate_id header) first
// arrived.
type counter struct {
	want     int
	n        atomic.Int64
	received []time.Time // by row number; nil unless tracking
	mu       sync.Mutex
	first    time.Time
	last     time.Time
	done     chan struct{}
}

// consume starts counting queue until want deliveries arrived. The
// connection closes at cleanup.
func consume(tb testing.TB, queue string, want int, track bool) *counter {
	tb.Helper()
	c := &counter{want: want, done: make(chan struct{})}
	if track {
		c.received = make([]time.Time, want+1)
	}
	deliveries := testenv.Consume(tb, queue)
	go func() {
		for d := range deliveries {
			now := time.Now()
			if c.received != nil {
				if s, ok := d.Headers["aggregate_id"].(string); ok {
					if i, err := strconv.Atoi(s); err == nil && i > 0 && i < len(c.received) && c.received[i].IsZero() {
						c.received[i] = now
					}
				}
			}
			n := c.n.Add(1)
			if n == 1 {
				c.mu.Lock()
				c.first = now
				c.mu.Unlock()
			}
			if n == int64(c.want) {
				c.mu.Lock()
				c.last = now
				c.mu.Unlock()
				close(c.done)
			}
		}
	}()
	return c
}

// wait waits until every delivery arrived and returns when the last did.
func (c *counter) wait(ctx context.Context) (time.Time, error) {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("consumed %d of %d messages: %w", c.n.Load(), c.want, ctx.Err())
	}
}
