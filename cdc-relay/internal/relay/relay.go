// Package relay runs cdc-relay's main loop: it reads one slot's pgoutput
// stream, publishes each outbox insert with confirms, and acknowledges whole
// transactions to Postgres once the broker has confirmed them
// (docs/contracts.md, "Stream and acknowledgement rules").
// Any connection loss ends the session; the relay backs off with jitter and
// starts a new one from the slot's confirmed position.
package relay

import (
	"context"
	"errors"
	"fmt"

	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/mgmt"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
	"github.com/saga-cdc/saga/internal/logkey"
)

// Observer is told what the relay does, for metrics. Its methods must be
// cheap and must not block: they run on the streaming path.
type Observer interface {
	Published(routingKey string)
	Confirmed(publishToConfirm, commitToConfirm time.Duration)
	Failed(reason string) // "unroutable", "nacked"
	InvalidRow()
	// Parked counts a message parked instead of published: reason "poison"
	// (a row that can never be published) or "unroutable".
	Parked(reason string)
	Positions(received, confirmed, serverEnd checkpoint.LSN)
	Reconnect(target string)
	Ready(ready bool)
	// Blocked reports the broker blocking (a memory or disk alarm) and
	// unblocking the relay's connection.
	Blocked(blocked bool)
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
var ErrFatal = fault.ErrFatal

// Options tune timings; zero values take the defaults. Tests shorten them.
type Options struct {
	MinBackoff   time.Duration // first reconnect delay (default 250ms)
	MaxBackoff   time.Duration // cap of the exponential backoff (default 2s)
	StandbyPoll  time.Duration // how often a standby tries to take the slot (default 1s)
	DrainTimeout time.Duration // how long a stop waits for confirms (default 15s)
	// Tracer records a span per published message; nil: no spans.
	Tracer trace.Tracer
}

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		// Short, so that a server that is back is found within 2 s
		// whatever happened before; the jitter spreads relays restarted
		// together over its upper half.
		o.MaxBackoff = 2 * time.Second
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
	mem  memory
	// streamed is set when a session reached streaming: its end restarts
	// the backoff.
	streamed atomic.Bool
	// runSession runs one session (r.session); after waits between
	// sessions (time.After). The run loop's tests replace both.
	runSession func(context.Context) error
	after      func(time.Duration) <-chan time.Time
}

// New returns a relay for cfg. obs may be nil.
func New(cfg config.Config, opts Options, log *slog.Logger, obs Observer) *Relay {
	if obs == nil {
		obs = nopObserver{}
	}
	r := &Relay{
		cfg:   cfg,
		opts:  opts.withDefaults(),
		log:   log.With(logkey.Component, "relay", logkey.Slot, cfg.Slot),
		obs:   obs,
		st:    &state{name: cfg.Name, slot: cfg.Slot, phase: PhaseStarting, reason: "starting"},
		after: time.After,
	}
	r.runSession = r.session
	return r
}

// Status is a snapshot for /readyz and /status.
func (r *Relay) Status() Status { return r.st.snapshot() }

// Run relays until ctx ends (then drains, reports its position and returns
// nil) or a fatal error.
func (r *Relay) Run(ctx context.Context) error {
	attempt := 0
	for {
		r.streamed.Store(false)
		err := r.runSession(ctx)
		r.st.session(nil, nil, 0)
		r.obs.Ready(false)
		r.obs.Blocked(false)
		if ctx.Err() != nil {
			r.st.set(PhaseStopped, "stopped")
			if err != nil && !errors.Is(err, context.Canceled) {
				r.log.Warn("stopped after an error", logkey.Error, err)
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
		if errors.Is(err, fault.ErrSlotActive) {
			// Another relay streams this slot: wait as a standby and take
			// over as soon as it goes away.
			r.st.set(PhaseStandby, err.Error())
			wait = r.opts.StandbyPoll
			r.log.Debug("standby: slot is held by another relay", logkey.Error, err)
		} else {
			var f *publisher.Failure
			if r.streamed.Load() && !errors.As(err, &f) {
				// It was streaming again: the outage is over, and the next
				// one starts its backoff from the beginning. A message the
				// broker refused is not an outage: its retries keep backing
				// off.
				attempt = 0
			}
			attempt++
			wait = backoff(attempt, r.opts.MinBackoff, r.opts.MaxBackoff)
			// A message the broker returned or nacked is the broker's side
			// too, as is any error of its connection.
			target := TargetDatabase
			var be brokerError
			if errors.As(err, &be) || errors.As(err, &f) {
				target = TargetBroker
			}
			r.obs.Reconnect(target)
			r.st.reconnect()
			r.st.set(PhaseBackoff, err.Error())
			attrs := []any{logkey.Error, err, logkey.Target, target, logkey.Backoff, wait}
			if errors.As(err, &f) {
				attrs = append(attrs, logkey.RoutingKey, f.RoutingKey, logkey.MessageID, f.MessageID)
				r.remember(f)
				if errors.Is(f.Err, publisher.ErrUnroutable) && r.cfg.Unroutable == config.UnroutablePark {
					attrs = append(attrs, "hint", "CDC_RELAY_UNROUTABLE=park, yet the message was returned: exchange "+r.cfg.Exchange+
						" has no alternate exchange; set the policy: "+parkPolicyCommand(r.cfg.Exchange))
				}
			}
			r.log.Warn("session ended, reconnecting", attrs...)
		}
		select {
		case <-ctx.Done():
			r.st.set(PhaseStopped, "stopped")
			return nil
		case <-r.after(wait):
		}
	}
}

// remember keeps what a failed message means for the next sessions.
func (r *Relay) remember(f *publisher.Failure) {
	switch {
	case errors.Is(f.Err, publisher.ErrTooLarge):
		r.mem.setPoison(f.MessageID, f.Reason)
	case f.MessageID != "":
		// Returned or nacked: the retry publishes it alone first.
		r.mem.hold(f.MessageID)
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

// brokerDialError marks as fatal what retrying cannot fix: a certificate
// that cannot be verified, credentials or vhost refused (403), or the
// exchange exists with other arguments (406).
func brokerDialError(err error) error {
	if fault.TLSRefused(err) {
		return fault.Fatal(fmt.Errorf("%w; the broker's certificate does not match CDC_RELAY_AMQP_URL's cacertfile (its CA) or server_name_indication / host name", err))
	}
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Code {
		case amqp.AccessRefused:
			return fault.Fatal(fmt.Errorf("%w; check CDC_RELAY_AMQP_URL (user, password, vhost)", err))
		case amqp.PreconditionFailed:
			return fault.Fatal(fmt.Errorf("%w; the exchange must be a durable topic exchange: delete it or set CDC_RELAY_EXCHANGE", err))
		}
	}
	return brokerError{err}
}

// brokerError marks errors of the broker side, for the reconnect metric.
type brokerError struct{ error }

func (e brokerError) Unwrap() error { return e.error }

// closing is the context of a deferred close: not cancelled with ctx, and
// bounded, so a close never hangs on a peer that stopped reading.
func closing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// session runs one streaming session. The database comes first: a standby
// finds the slot's lock taken with one query and opens nothing else.
func (r *Relay) session(ctx context.Context) error {
	r.st.set(PhaseStarting, "preparing the database")
	ctl, err := replication.Connect(ctx, r.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := closing(ctx)
		defer cancel()
		ctl.Close(cctx)
	}()
	target := replication.Target{Slot: r.cfg.Slot, Publication: r.cfg.Publication, Schema: r.cfg.Table.Schema, Table: r.cfg.Table.Name}
	locked, err := replication.Lock(ctx, ctl, r.cfg.Slot)
	if err != nil {
		return err
	}
	if !locked {
		return fmt.Errorf("%w: another relay holds the lock of slot %q (it is creating or streaming it)", fault.ErrSlotActive, r.cfg.Slot)
	}
	prep, err := replication.Prepare(ctx, ctl, target)
	if err != nil {
		return err
	}
	failover, err := replication.WantFailover(r.cfg.SlotFailover, prep.Version)
	if err != nil {
		return err
	}
	if prep.PublicationCreated {
		r.log.Info("created publication", "publication", r.cfg.Publication, "via_partition_root", prep.Table.Partitioned)
	}

	r.st.set(PhaseStarting, "connecting to the broker")
	pub, err := publisher.Dial(ctx, r.cfg.AMQPURL, r.cfg.Exchange, r.cfg.MaxInFlight, r.cfg.Channels)
	if err != nil {
		return brokerDialError(err)
	}
	defer pub.Close()
	if r.cfg.Poison == config.PoisonPark {
		if err := pub.DeclareQueue(outbox.PoisonQueue(r.cfg.Exchange)); err != nil {
			return brokerDialError(err)
		}
	}
	if r.cfg.Unroutable == config.UnroutablePark {
		if err := pub.DeclareParking(); err != nil {
			return brokerDialError(err)
		}
		r.linkParking(ctx)
	}

	create, err := r.mustCreate(ctx, ctl, target, prep)
	if err != nil {
		return err
	}
	stream, err := replication.Open(ctx, r.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	// What one read of WAL made leaves for the broker before the next read.
	stream.OnRead(pub.Flush)
	defer func() {
		cctx, cancel := closing(ctx)
		defer cancel()
		stream.Close(cctx)
	}()
	sys, err := stream.Identify(ctx)
	if err != nil {
		return err
	}
	start := prep.Slot.ConfirmedFlush
	if own, ok := r.mem.resumeFrom(start, sys); ok {
		r.log.Info("resuming from this relay's confirmed position, ahead of the slot's", logkey.LSN, own.String(),
			"slot_confirmed_flush_lsn", start.String())
		start = own
	}
	if !create && failover && !prep.Slot.Failover {
		if err := stream.SetFailover(ctx, r.cfg.Slot); err != nil {
			return err
		}
		r.log.Info("made the slot a failover slot: standbys with sync_replication_slots keep it through a promotion")
	}
	var snap *replication.Snapshot
	if create {
		c, err := stream.CreateSlot(ctx, r.cfg.Slot, failover)
		if err != nil {
			return err
		}
		r.mem.setCreated(c.ConsistentPoint)
		r.log.Info("created replication slot", logkey.LSN, c.ConsistentPoint.String(), "failover", failover)
		// Imported before the stream's next command, which ends the export.
		if snap, err = replication.ImportSnapshot(ctx, r.cfg.DatabaseURL, c.Snapshot); err != nil {
			return err
		}
		defer snap.Close(ctx)
		start = c.ConsistentPoint
	}

	tracker := checkpoint.New(start)
	s := &session{
		cfg:       r.cfg,
		log:       r.log,
		obs:       r.obs,
		st:        r.st,
		mem:       &r.mem,
		stream:    stream,
		ctl:       ctl,
		pub:       pub,
		tracker:   tracker,
		target:    target,
		root:      prep.Table.OID,
		source:    outbox.Source(prep.Database, r.cfg.Table.String()),
		mapper:    outbox.Mapper{Source: outbox.Source(prep.Database, r.cfg.Table.String()), Groups: r.cfg.Headers},
		version:   prep.Version,
		drain:     r.opts.DrainTimeout,
		relations: map[uint32]*outbox.Layout{},
		sentFlush: start,
	}
	s.flushed, s.beat = s.slotFlushed, s.heartbeat
	s.spans = newSpanSet(r.opts.Tracer, r.cfg.Slot)
	r.st.session(tracker, pub.Open, r.cfg.HeartbeatInterval)

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
		if snap != nil {
			if err := s.publishSnapshot(ctx, gctx, snap, replication.OrderOf(prep)); err != nil {
				return r.abandonSnapshot(ctx, ctl, err)
			}
			snap.Close(ctx)
			r.mem.snapshotDone()
		}
		if err := stream.Start(ctx, target, start); err != nil {
			return err
		}
		s.streaming = true
		r.st.set(PhaseStreaming, "")
		r.obs.Ready(true)
		r.log.Info("streaming", logkey.LSN, start.String(), "retained_wal_bytes", prep.Slot.RetainedWALBytes)
		g.Go(func() error { return s.heartbeats(gctx) })
		if r.cfg.Unroutable == config.UnroutablePark {
			g.Go(func() error { s.watchParked(gctx); return nil })
		}
		r.streamed.Store(true)
		return s.run(ctx, gctx)
	})
	err = g.Wait()
	if s.spans != nil {
		s.spans.endAll("not confirmed before the session ended: published again by the next one")
	}
	p := tracker.Positions()
	r.mem.confirmed(p)
	r.mem.sessionConfirmed(p.Confirmed, sys.ID)
	r.st.sessionEnded(p.ConfirmedCommit)
	return err
}

// linkParking sets the policy that links the relay's exchange to the park
// mode's alternate exchange, through the RabbitMQ HTTP API, and checks that
// it is in effect. A policy rather than a declaration argument: services
// that declare the exchange themselves keep working. When the API cannot be
// reached (or CDC_RELAY_AMQP_MANAGEMENT_URL is off) the relay warns with the
// command that sets it; until it is set, unroutable messages are held.
func (r *Relay) linkParking(ctx context.Context) {
	base, user, password, ok := r.cfg.Management()
	ae := publisher.ParkingExchange(r.cfg.Exchange)
	if !ok {
		return // the operator sets the policy
	}
	vhost := "/"
	if uri, err := amqp.ParseURI(r.cfg.AMQPURL); err == nil {
		vhost = uri.Vhost
	}
	c := mgmt.New(base, user, password)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := c.SetAlternateExchange(cctx, vhost, r.cfg.Exchange, ae)
	var got string
	if err == nil {
		// Policies apply within moments; read it back.
		for range 20 {
			if got, err = c.AlternateExchange(cctx, vhost, r.cfg.Exchange); err != nil || got == ae {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	switch {
	case err != nil:
		r.log.Warn("could not set the alternate-exchange policy of the park mode; unroutable messages are held until it is set", logkey.Error, err,
			"fix", parkPolicyCommand(r.cfg.Exchange))
	case got != ae:
		r.log.Warn("another policy or argument decides the alternate exchange of the relay's exchange; unroutable messages go to it, or are held",
			"alternate_exchange", got, "want", ae, "fix", parkPolicyCommand(r.cfg.Exchange))
	default:
		r.log.Info("unroutable messages are parked", "alternate_exchange", ae, "queue", ae, "policy", mgmt.PolicyName(r.cfg.Exchange))
	}
}

// parkPolicyCommand is the rabbitmqctl command that links exchange to its
// alternate exchange.
func parkPolicyCommand(exchange string) string {
	return fmt.Sprintf(`rabbitmqctl set_policy --apply-to exchanges %s '^%s$' '{"alternate-exchange":"%s"}'`,
		mgmt.PolicyName(exchange), regexp.QuoteMeta(exchange), publisher.ParkingExchange(exchange))
}

// mustCreate decides whether this session creates the slot. A missing slot
// is created only on a first start: the outbox empty, or holding only rows
// committed since this process found it empty. An outbox that holds other
// rows means the slot was lost (dropped, or missing after a failover):
// creating it silently would skip them.
func (r *Relay) mustCreate(ctx context.Context, ctl *pgx.Conn, t replication.Target, prep replication.Prepared) (bool, error) {
	if prep.Slot.Exists {
		created := r.mem.createdAt()
		if created == 0 || prep.Slot.ConfirmedFlush != created {
			if created != 0 || r.mem.outboxIsOurs() {
				r.mem.forget() // another relay created and streamed it meanwhile
			}
			return false, nil
		}
		// This process created it and the rows of its snapshot were not all
		// confirmed: create it again; the new snapshot holds them.
		r.log.Warn("the slot this relay created has not delivered the rows of its snapshot yet: dropping and creating it again", logkey.LSN, created.String())
		if err := replication.DropSlot(ctx, ctl, t.Slot, 10*time.Second); err != nil {
			return false, err
		}
		return true, nil
	}
	if r.mem.outboxIsOurs() {
		return true, nil
	}
	oldest, err := replication.OldestRow(ctx, ctl, t)
	if err != nil {
		return false, err
	}
	if oldest != nil {
		return false, fault.SlotLost(t.Slot, fmt.Sprintf("it does not exist but table %s holds rows (oldest from %s); "+
			"if this is a first start on an outbox that already has rows, create the slot with `cdc-relay slot create` and replay what consumers should get",
			t, oldest.UTC().Format(time.RFC3339)), r.mem.repairHint())
	}
	r.mem.setOurs()
	return true, nil
}

// abandonSnapshot ends a first start whose snapshot rows were not all
// confirmed. The slot is dropped while this relay still holds its lock, so
// that no later start streams past those rows; the next session of this
// process creates it again. If the drop fails, that next session drops it.
func (r *Relay) abandonSnapshot(ctx context.Context, ctl *pgx.Conn, cause error) error {
	dctx, cancel := closing(ctx)
	defer cancel()
	if err := replication.DropSlot(dctx, ctl, r.cfg.Slot, 3*time.Second); err != nil {
		r.log.Warn("could not drop the slot whose snapshot rows were not all delivered; the next start drops it", logkey.Error, err)
		return cause
	}
	r.mem.setCreated(0)
	r.log.Warn("first start interrupted before every row of the slot's snapshot was confirmed: dropped the slot; the next start creates it again", logkey.Error, cause)
	return cause
}

type nopObserver struct{}

func (nopObserver) Published(string)                                         {}
func (nopObserver) Confirmed(time.Duration, time.Duration)                   {}
func (nopObserver) Failed(string)                                            {}
func (nopObserver) InvalidRow()                                              {}
func (nopObserver) Parked(string)                                            {}
func (nopObserver) Positions(checkpoint.LSN, checkpoint.LSN, checkpoint.LSN) {}
func (nopObserver) Reconnect(string)                                         {}
func (nopObserver) Ready(bool)                                               {}
func (nopObserver) Blocked(bool)                                             {}
func (nopObserver) SlotHealth(replication.SlotHealth)                        {}
func (nopObserver) HeartbeatSeen(time.Time)                                  {}
