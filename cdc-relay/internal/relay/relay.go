// Package relay runs cdc-relay's main loop: it reads one slot's pgoutput
// stream, publishes each outbox insert with confirms, and acknowledges whole
// transactions to Postgres once the broker has confirmed them (design §4.3).
// Any connection loss ends the session; the relay backs off with jitter and
// starts a new one from the slot's confirmed position.
package relay

import (
	"context"
	"errors"
	"fmt"

	"log/slog"
	"math/rand/v2"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/logkey"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// Observer is told what the relay does, for metrics. Its methods must be
// cheap and must not block: they run on the streaming path.
type Observer interface {
	Published(routingKey string)
	Confirmed(publishToConfirm, commitToConfirm time.Duration)
	Failed(reason string) // "unroutable", "nacked"
	InvalidRow()
	Positions(received, confirmed, serverEnd checkpoint.LSN)
	Reconnect(target string)
	Ready(ready bool)
	// SlotHealth reports the slot as the heartbeat statement read it.
	SlotHealth(h replication.SlotHealth)
	// HeartbeatSeen reports that a heartbeat came back through the stream.
	HeartbeatSeen(at time.Time)
}

// Targets of Observer.Reconnect.
const (
	TargetBroker   = "broker"
	TargetDatabase = "database"
)

// ErrFatal marks an error that retrying will not fix: the relay stops.
var ErrFatal = replication.ErrFatal

// Options tune timings; zero values take the defaults. Tests shorten them.
type Options struct {
	MinBackoff   time.Duration // first reconnect delay (default 250ms)
	MaxBackoff   time.Duration // cap of the exponential backoff (default 30s)
	StandbyPoll  time.Duration // how often a standby tries to take the slot (default 1s)
	DrainTimeout time.Duration // how long a stop waits for confirms (default 15s)
}

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.StandbyPoll <= 0 {
		o.StandbyPoll = time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 15 * time.Second
	}
	return o
}

// Relay relays one database's outbox.
type Relay struct {
	cfg  config.Config
	opts Options
	log  *slog.Logger
	obs  Observer
	st   *state
}

// New returns a relay for cfg. obs may be nil.
func New(cfg config.Config, opts Options, log *slog.Logger, obs Observer) *Relay {
	if obs == nil {
		obs = nopObserver{}
	}
	return &Relay{
		cfg:  cfg,
		opts: opts.withDefaults(),
		log:  log.With(logkey.Component, "relay", logkey.Slot, cfg.Slot),
		obs:  obs,
		st:   &state{name: cfg.Name, slot: cfg.Slot, phase: PhaseStarting, reason: "starting"},
	}
}

// Status is a snapshot for /readyz and /status.
func (r *Relay) Status() Status { return r.st.snapshot() }

// Run relays until ctx ends (then drains, reports its position and returns
// nil) or a fatal error.
func (r *Relay) Run(ctx context.Context) error {
	attempt := 0
	for {
		began := time.Now()
		err := r.session(ctx)
		r.st.session(nil, nil, 0)
		r.obs.Ready(false)
		if ctx.Err() != nil {
			r.st.set(PhaseStopped, "stopped")
			if err != nil && !errors.Is(err, context.Canceled) {
				r.log.Warn("stopped after an error", logkey.Err, err)
			}
			return nil
		}
		if err == nil {
			err = errors.New("session ended without an error")
		}
		r.st.fail(err)
		if errors.Is(err, ErrFatal) {
			r.st.set(PhaseStopped, err.Error())
			return err
		}
		var wait time.Duration
		if errors.Is(err, replication.ErrSlotActive) {
			// Another relay streams this slot: wait as a standby and take
			// over as soon as it goes away.
			r.st.set(PhaseStandby, err.Error())
			wait = r.opts.StandbyPoll
			r.log.Debug("standby: slot is held by another relay", logkey.Err, err)
		} else {
			if time.Since(began) > 30*time.Second {
				attempt = 0 // it streamed for a while: start the backoff over
			}
			attempt++
			wait = backoff(attempt, r.opts.MinBackoff, r.opts.MaxBackoff)
			target := TargetDatabase
			var be brokerError
			if errors.As(err, &be) {
				target = TargetBroker
			}
			r.obs.Reconnect(target)
			r.st.reconnect()
			r.st.set(PhaseBackoff, err.Error())
			attrs := []any{logkey.Err, err, logkey.Target, target, logkey.Backoff, wait}
			var f *publisher.Failure
			if errors.As(err, &f) {
				attrs = append(attrs, logkey.RoutingKey, f.RoutingKey, logkey.MessageID, f.MessageID)
			}
			r.log.Warn("session ended, reconnecting", attrs...)
		}
		select {
		case <-ctx.Done():
			r.st.set(PhaseStopped, "stopped")
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is exponential from min, capped at max, with full jitter over its
// upper half so that relays restarted together do not reconnect together.
func backoff(attempt int, first, limit time.Duration) time.Duration {
	d := first << min(attempt-1, 20)
	if d <= 0 || d > limit {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

// brokerDialError marks as fatal what retrying cannot fix: credentials or
// vhost refused (403), or the exchange exists with other arguments (406).
func brokerDialError(err error) error {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Code {
		case amqp.AccessRefused:
			return replication.Fatal(fmt.Errorf("%w; check CDC_RELAY_AMQP_URL (user, password, vhost)", err))
		case amqp.PreconditionFailed:
			return replication.Fatal(fmt.Errorf("%w; the exchange must be a durable topic exchange: delete it or set CDC_RELAY_EXCHANGE", err))
		}
	}
	return brokerError{err}
}

// brokerError marks errors of the broker side, for the reconnect metric.
type brokerError struct{ error }

func (e brokerError) Unwrap() error { return e.error }

// session runs one streaming session. The database comes first: a standby
// finds the slot busy with one query and opens nothing else.
func (r *Relay) session(ctx context.Context) error {
	r.st.set(PhaseStarting, "preparing the database")
	ctl, err := replication.Connect(ctx, r.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer ctl.Close(context.WithoutCancel(ctx))
	target := replication.Target{Slot: r.cfg.Slot, Publication: r.cfg.Publication, Schema: r.cfg.Table.Schema, Table: r.cfg.Table.Name}
	slot, err := replication.PrepareConn(ctx, ctl, target)
	if err != nil {
		return err
	}
	if slot.Created {
		r.log.Info("created replication slot", logkey.LSN, slot.ConfirmedFlush.String())
		if n := slot.RowsAtCreation; n.Count > 0 {
			r.log.Warn("outbox rows were written while the slot was being created; those committed before its consistent point are not streamed: "+
				"if consumers lack them, run `cdc-relay replay --since` their time", logkey.LSN, slot.ConfirmedFlush.String(),
				"rows", n.Count, "oldest", n.Oldest)
		}
	}
	stream, err := replication.Start(ctx, r.cfg.DatabaseURL, target, slot.ConfirmedFlush)
	if err != nil {
		return err
	}
	defer stream.Close(context.WithoutCancel(ctx))

	r.st.set(PhaseStarting, "connecting to the broker")
	pub, err := publisher.Dial(ctx, r.cfg.AMQPURL, r.cfg.Exchange, r.cfg.MaxInFlight)
	if err != nil {
		return brokerDialError(err)
	}
	defer pub.Close()

	tracker := checkpoint.New(slot.ConfirmedFlush)
	s := &session{
		cfg:       r.cfg,
		log:       r.log,
		obs:       r.obs,
		st:        r.st,
		stream:    stream,
		ctl:       ctl,
		pub:       pub,
		tracker:   tracker,
		source:    "/cdc-relay/" + slot.Database + "/" + r.cfg.Table.String(),
		drain:     r.opts.DrainTimeout,
		relations: map[uint32]*outbox.Layout{},
		sentFlush: slot.ConfirmedFlush,
	}
	r.st.session(tracker, pub.Open, r.cfg.HeartbeatInterval)
	r.st.set(PhaseStreaming, "")
	r.obs.Ready(true)
	r.log.Info("streaming", logkey.LSN, slot.ConfirmedFlush.String(), "retained_wal_bytes", slot.RetainedWALBytes)

	// The confirm loop must outlive a stop request so a stop can drain:
	// it ends when the stream loop returns, or on its own failure.
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	g, gctx := errgroup.WithContext(gctx)
	g.Go(func() error {
		if err := pub.Confirms(gctx, s); err != nil {
			return brokerError{err}
		}
		return nil
	})
	g.Go(func() error {
		defer cancel()
		return s.run(ctx, gctx)
	})
	g.Go(func() error { return s.heartbeats(gctx) })
	return g.Wait()
}

type nopObserver struct{}

func (nopObserver) Published(string)                                         {}
func (nopObserver) Confirmed(time.Duration, time.Duration)                   {}
func (nopObserver) Failed(string)                                            {}
func (nopObserver) InvalidRow()                                              {}
func (nopObserver) Positions(checkpoint.LSN, checkpoint.LSN, checkpoint.LSN) {}
func (nopObserver) Reconnect(string)                                         {}
func (nopObserver) Ready(bool)                                               {}
func (nopObserver) SlotHealth(replication.SlotHealth)                        {}
func (nopObserver) HeartbeatSeen(time.Time)                                  {}
