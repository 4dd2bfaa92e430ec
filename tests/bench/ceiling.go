package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/event"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// Shape is a kind of message the broker's limit is measured for: the raw
// reference (a body, persistent, nothing else) or the relay's own messages
// with a set of header groups (CDC_RELAY_HEADERS).
type Shape struct {
	Name      string
	Raw       bool
	Headers   string // CDC_RELAY_HEADERS of the relay whose messages these are
	Transient bool   // delivery mode 1: the broker need not write it to disk
}

// The shapes the run measures.
var (
	ShapeRaw         = Shape{Name: "raw", Raw: true}
	ShapeAll         = Shape{Name: "headers all", Headers: "all"}
	ShapeNone        = Shape{Name: "headers none", Headers: "none"}
	ShapeRow         = Shape{Name: "headers row", Headers: "row"}
	ShapeAggregate   = Shape{Name: "headers aggregate", Headers: "aggregate"}
	ShapeCloudEvents = Shape{Name: "headers cloudevents", Headers: "cloudevents"}
	// ShapePeer is how the peer that cuts corners publishes: transient
	// messages, without confirms (its strategy, ReferenceStrategy's).
	ShapePeer = Shape{Name: "peer's style: raw, transient", Raw: true, Transient: true}
)

// has reports whether the shape carries header group g.
func (s Shape) has(g string) bool {
	switch s.Headers {
	case "all":
		return true
	case "none", "":
		return false
	}
	return s.Headers == g
}

// message is what the relay publishes for row seq of the benchmark's
// outbox (docs/contracts.md, "Message mapping") with the shape's header
// groups: the same properties, header entries and body size, so the limits
// are measured on the relay's own messages. TestHarness checks it against
// what the relay sends.
func (s Shape) message(seq int, source string) amqp.Publishing {
	if s.Raw {
		mode := amqp.Persistent
		if s.Transient {
			mode = amqp.Transient
		}
		return amqp.Publishing{DeliveryMode: mode, Body: body(seq)}
	}
	id := uuid.NewString()
	now := time.Now().UTC()
	agg := strconv.Itoa(seq)
	h := amqp.Table{}
	if s.has("row") {
		h["writer"] = "0"
	}
	if s.has("aggregate") {
		h[event.HeaderAggregateType] = "bench"
		h[event.HeaderAggregateID] = agg
	}
	if s.has("cloudevents") {
		h[event.HeaderCloudEventsSpecVersion] = event.CloudEventsSpecVersion
		h[event.HeaderCloudEventsID] = id
		h[event.HeaderCloudEventsSource] = source
		h[event.HeaderCloudEventsType] = "bench.row"
		h[event.HeaderCloudEventsTime] = now.Truncate(time.Microsecond).Format(time.RFC3339Nano) // created_at's precision
		h[event.HeaderCloudEventsSubject] = agg
	}
	if len(h) == 0 {
		h = nil
	}
	return amqp.Publishing{
		Headers:      h,
		ContentType:  event.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         "bench.row",
		Timestamp:    now,
		Body:         body(seq),
	}
}

// benchSource is a CloudEvents source like the relay's for a benchmark
// database (/cdc-relay/<database>/<table>, database a testenv name).
var benchSource = "/cdc-relay/" + testenv.RandomName("t_") + "/public.outbox"

// Strategy is a way of publishing with confirms.
type Strategy struct {
	Name       string
	Channels   int  // on one connection; messages spread round-robin
	Window     int  // unconfirmed messages per channel
	Batch      bool // publish Window messages, wait for all their confirms, repeat
	NoConfirms bool // no confirm mode: the end is the queue's depth alone
}

// Strategies are the ways a ceiling is tried; the best counts.
func Strategies(window int) []Strategy {
	return []Strategy{
		{Name: fmt.Sprintf("1 channel, window %d", window), Channels: 1, Window: window},
		{Name: fmt.Sprintf("1 channel, window %d", 5*window), Channels: 1, Window: 5 * window},
		{Name: fmt.Sprintf("1 channel, batches of %d then wait", window), Channels: 1, Window: window, Batch: true},
		{Name: fmt.Sprintf("2 channels, window %d each", window), Channels: 2, Window: window},
		{Name: fmt.Sprintf("3 channels, window %d each", window), Channels: 3, Window: window},
		{Name: fmt.Sprintf("4 channels, window %d each", window), Channels: 4, Window: window},
	}
}

// burst publishes n messages of shape to exchange with strategy s, and
// returns how long they took from the first publish to the end: the last
// confirm, and then (once all are in) done's answer, which tells when the
// messages were all in the queue or consumed; done is called once the last
// confirm arrived.
func burst(ctx context.Context, amqpURL, exchange string, shape Shape, s Strategy, n int) (began time.Time, lastConfirm time.Time, err error) {
	conn, err := dial(ctx, amqpURL, "saga-bench-ceiling")
	if err != nil {
		return began, lastConfirm, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type lane struct {
		ch       *amqp.Channel
		confirms chan amqp.Confirmation
	}
	lanes := make([]lane, s.Channels)
	for i := range lanes {
		ch, err := conn.Channel()
		if err != nil {
			return began, lastConfirm, fmt.Errorf("open channel: %w", err)
		}
		if s.NoConfirms {
			lanes[i] = lane{ch: ch}
			continue
		}
		if err := ch.Confirm(false); err != nil {
			return began, lastConfirm, fmt.Errorf("confirm mode: %w", err)
		}
		lanes[i] = lane{ch: ch, confirms: ch.NotifyPublish(make(chan amqp.Confirmation, s.Window))}
	}
	// Messages are built before the clock starts: their cost is the
	// publisher's, not the broker's.
	msgs := make([]amqp.Publishing, n)
	for i := range msgs {
		msgs[i] = shape.message(i+1, benchSource)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Time
		errs = make(chan error, len(lanes))
	)
	began = time.Now()
	for k, l := range lanes {
		mine := (n - k + len(lanes) - 1) / len(lanes) // messages k, k+C, k+2C, …
		if mine <= 0 {
			continue
		}
		wg.Add(1)
		if s.NoConfirms {
			go func() {
				defer wg.Done()
				for i := k; i < n; i += len(lanes) {
					if err := l.ch.PublishWithContext(ctx, exchange, RoutingKey, true, false, msgs[i]); err != nil {
						errs <- fmt.Errorf("publish: %w", err)
						return
					}
				}
				now := time.Now()
				mu.Lock()
				last = later(last, now)
				mu.Unlock()
			}()
			continue
		}
		go func() {
			defer wg.Done()
			slots := make(chan struct{}, s.Window)
			confirmed := make(chan error, 1)
			batchDone := make(chan struct{}, 1)
			go func() {
				for got := 0; got < mine; got++ {
					var cf amqp.Confirmation
					select {
					case <-ctx.Done():
						confirmed <- ctx.Err()
						return
					case cf = <-l.confirms:
					}
					if !cf.Ack {
						confirmed <- fmt.Errorf("message %d nacked", cf.DeliveryTag)
						return
					}
					<-slots
					if s.Batch && (got+1)%s.Window == 0 {
						batchDone <- struct{}{}
					}
				}
				now := time.Now()
				mu.Lock()
				if now.After(last) {
					last = now
				}
				mu.Unlock()
				confirmed <- nil
			}()
			sent := 0
			for i := k; i < n; i += len(lanes) {
				if s.Batch && sent > 0 && sent%s.Window == 0 {
					select {
					case <-batchDone:
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
				if err := l.ch.PublishWithContext(ctx, exchange, RoutingKey, true, false, msgs[i]); err != nil {
					errs <- fmt.Errorf("publish: %w", err)
					return
				}
				sent++
			}
			if err := <-confirmed; err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return began, lastConfirm, err
	}
	return began, last, nil
}

// depthWatch polls a queue's depth (a passive declare) every pollEvery
// until it holds want messages, and tells when it first saw more than none
// and when it saw want.
type depthWatch struct {
	first, full time.Time
	err         error
	done        chan struct{}
}

const pollEvery = 5 * time.Millisecond

func watchDepth(ctx context.Context, amqpURL, queue string, want int) *depthWatch {
	w := &depthWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		conn, err := dial(ctx, amqpURL, "saga-bench-depth")
		if err != nil {
			w.err = err
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			w.err = fmt.Errorf("depth: open channel: %w", err)
			return
		}
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				w.err = fmt.Errorf("queue %s: %w", queue, ctx.Err())
				return
			case <-tick.C:
			}
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			if err != nil {
				w.err = fmt.Errorf("depth of queue %s: %w", queue, err)
				return
			}
			now := time.Now()
			if q.Messages > 0 && w.first.IsZero() {
				w.first = now
			}
			if q.Messages >= want {
				w.full = now
				return
			}
		}
	}()
	return w
}

// wait returns when the queue held every message.
func (w *depthWatch) wait(ctx context.Context) (time.Time, error) {
	select {
	case <-w.done:
		return w.full, w.err
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var errNoBroker = errors.New("the broker's process is not on this machine")
