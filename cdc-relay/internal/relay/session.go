package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/event"
	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
	"github.com/saga-cdc/saga/internal/logkey"
)

// statusGap is the longest a confirmed position waits before it is reported
// to Postgres. Short, because what is confirmed but not reported is sent
// again after a crash; not zero, so a busy stream sends one status update
// per gap rather than one per transaction.
const statusGap = 50 * time.Millisecond

// stream is what a session needs of the replication stream
// (*replication.Stream): a unit test gives it a scripted one.
type stream interface {
	Receive(ctx context.Context, deadline time.Time) (replication.Message, error)
	SendStatus(ctx context.Context, write, flush replication.LSN, replyRequested bool) error
}

// broker is what a session needs of the publisher (*publisher.Publisher):
// the window, publishing, and breaking the socket at a stop.
type broker interface {
	TryAcquire() bool
	Acquire(ctx context.Context) error
	PublishTo(ctx context.Context, exchange, key, route string, msg amqp.Publishing, committed time.Time) (uint64, error)
	InFlight() int
	Flush()
	FrameMax() int
	Abort()
	WatchParked(ctx context.Context, fn func(amqp.Delivery)) error
}

// session is one streaming connection pair: a replication stream and a
// broker channel. It is discarded on any error.
type session struct {
	cfg     config.Config
	log     *slog.Logger
	obs     Observer
	st      *state
	mem     *memory
	stream  stream
	pub     broker
	tracker *checkpoint.Tracker
	target  replication.Target
	mapper  outbox.Mapper // reuses its headers table: one message at a time
	root    uint32        // OID of the outbox table
	version int           // server_version_num
	source  string
	drain   time.Duration

	// ctl is the regular connection: heartbeats, slot health, looking up
	// relations, reading the slot back at a stop. ctlMu serialises its users
	// (the heartbeat goroutine and the stream loop).
	ctlMu sync.Mutex
	ctl   *pgx.Conn
	// flushed reads the slot's confirmed position back (slotFlushed), and
	// beat runs one heartbeat (heartbeat): the two jobs of ctl that a stop
	// and the heartbeat loop wait on. Unit tests replace them.
	flushed func(ctx context.Context) (checkpoint.LSN, error)
	beat    func(ctx context.Context) (replication.SlotHealth, error)
	// spans are the published messages' spans (tracing on), else nil; at
	// is the WAL position of the insert being published (0 for a row of
	// the first start's snapshot).
	spans *spanSet
	at    checkpoint.LSN

	// relations maps the relations seen in the stream to their outbox
	// layout: nil for every table but the outbox (and its partitions).
	relations map[uint32]*outbox.Layout
	xid       uint32
	committed time.Time // commit time of the open transaction

	// streaming is set once the stream started: before, during the first
	// start's snapshot, there is nothing to report to.
	streaming bool
	// blocked is set while the broker blocks the connection (an alarm):
	// nothing is published until it unblocks it.
	blocked    atomic.Bool
	sentFlush  checkpoint.LSN // last flush position reported
	sentMsgs   uint64         // ConfirmedMessages at that report
	lastStatus time.Time
	nextStatus time.Time // periodic report even when nothing changed
}

// run reads the stream until stop ends (a requested stop: finish the
// transaction being read, drain, report, return nil) or failed ends (the
// confirm loop failed: return at once).
func (s *session) run(stop, failed context.Context) error {
	recv, cancel := context.WithCancel(failed)
	defer cancel()
	// Handling a message may wait (a full window, a blocked broker): a stop
	// gives it the drain time, no more.
	work, cancelWork := context.WithCancel(failed)
	defer cancelWork()
	var drainBy time.Time
	defer context.AfterFunc(stop, func() {
		// A stop interrupts a Receive that waits for the next message at once.
		cancel()
		time.AfterFunc(s.drain, cancelWork)
	})()
	defer s.watchdog(recv)()

	for {
		if failed.Err() != nil {
			return nil // the confirm loop's error is the session's
		}
		if stop.Err() != nil {
			if drainBy.IsZero() {
				drainBy = time.Now().Add(s.drain)
			}
			return s.stop(failed, drainBy)
		}
		deadline, err := s.report(recv, false)
		if err != nil {
			return err
		}
		msg, err := s.stream.Receive(recv, deadline)
		if errors.Is(err, replication.ErrTimeout) {
			continue
		}
		if err != nil {
			if recv.Err() != nil {
				continue
			}
			return err
		}
		// A message read is handled whole even when a stop comes meanwhile,
		// within the drain time: under work, not recv, so that a stop cannot
		// drop it half way (the stop then reads on to the end of its
		// transaction). Past the drain time it is not published, and its
		// transaction is not acknowledged.
		if err := s.dispatch(work, msg); err != nil {
			switch {
			case errors.Is(err, fault.ErrFatal):
				return err
			case failed.Err() != nil:
				return nil
			case stop.Err() != nil:
				// The drain time passed while the message waited.
				return s.stop(failed, time.Now())
			}
			return err
		}
	}
}

// watchdog arms, once ctx ends, a timer that breaks the broker socket: a
// stop must not wait forever on a Publish blocked writing to a broker that
// stopped reading (an alarm, a dead peer). It returns the disarm.
func (s *session) watchdog(ctx context.Context) func() {
	var mu sync.Mutex
	var t *time.Timer
	unhook := context.AfterFunc(ctx, func() {
		mu.Lock()
		t = time.AfterFunc(s.drain+5*time.Second, s.pub.Abort)
		mu.Unlock()
	})
	return func() {
		unhook()
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
	}
}

func (s *session) dispatch(ctx context.Context, msg replication.Message) error {
	switch m := msg.(type) {
	case replication.Keepalive:
		s.tracker.Keepalive(m.ServerWALEnd)
		if m.ReplyRequested {
			if _, err := s.report(ctx, true); err != nil {
				return err
			}
		}
	case replication.Data:
		return s.handle(ctx, m)
	}
	return nil
}

func (s *session) handle(ctx context.Context, d replication.Data) error {
	s.tracker.Received(d.WALStart)
	switch m := d.Message.(type) {
	case *pglogrepl.RelationMessage:
		layout, err := s.relation(ctx, m)
		if err != nil {
			return err
		}
		s.relations[m.RelationID] = layout
	case *pglogrepl.BeginMessage:
		s.xid, s.committed = m.Xid, m.CommitTime
		return s.tracker.Begin()
	case *pglogrepl.InsertMessage:
		layout, ok := s.relations[m.RelationID]
		if !ok {
			return fmt.Errorf("insert into relation %d before its relation message", m.RelationID)
		}
		if layout == nil {
			return nil // another table of the publication
		}
		row, err := layout.Decode(m.Tuple)
		var perr *outbox.PoisonError
		if errors.As(err, &perr) {
			return s.poison(ctx, row, perr, s.committed)
		}
		if err != nil {
			return fault.Fatal(fmt.Errorf("transaction %d at %s: %w", s.xid, d.WALStart, err))
		}
		s.at = d.WALStart
		return s.publish(ctx, row, s.committed)
	case *pglogrepl.LogicalDecodingMessage:
		if m.Prefix == replication.HeartbeatPrefix && strings.HasPrefix(string(m.Content), s.cfg.Slot+" ") {
			now := time.Now()
			s.st.heartbeatSeen(now)
			s.obs.HeartbeatSeen(now)
		}
	case *pglogrepl.CommitMessage:
		if err := s.tracker.Commit(m.TransactionEndLSN, m.CommitTime); err != nil {
			return err
		}
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("commit", logkey.XID, s.xid, logkey.LSN, m.TransactionEndLSN.String())
		}
	}
	// Updates, deletes, truncates, types, origins and other logical
	// messages are not outbox events.
	return nil
}

// relation places a relation of the stream: the outbox (matched by OID or
// name; a partition, should one arrive under its own name, is the
// outbox's too), another table of the publication (nil), or a relation that
// no longer exists but has the outbox's columns, which cannot be told from
// a dropped partition of the outbox: the relay stops rather than skip rows
// that may be the outbox's.
func (s *session) relation(ctx context.Context, m *pglogrepl.RelationMessage) (*outbox.Layout, error) {
	place := replication.PlaceOther
	if m.RelationID == s.root || m.Namespace == s.target.Schema && m.RelationName == s.target.Table {
		place = replication.PlaceOutbox
	} else {
		var err error
		s.ctlMu.Lock()
		place, err = replication.PlaceRelation(ctx, s.ctl, m.RelationID, s.root)
		s.ctlMu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	layout, err := outbox.NewLayout(m)
	switch {
	case place == replication.PlaceOther:
		return nil, nil
	case place == replication.PlaceUnknown && err != nil:
		return nil, nil // a dropped table that was not an outbox
	case place == replication.PlaceUnknown:
		return nil, fault.Fatal(fmt.Errorf("the stream holds inserts into relation %s.%s (oid %d), which no longer exists and has the outbox's columns: "+
			"it may have been a partition of %s published under its own name, and the relay will not skip its rows. "+
			"If it was not, remove it from publication %q; if it was, its rows need `cdc-relay replay`, and `cdc-relay slot advance` moves the slot past it",
			m.Namespace, m.RelationName, m.RelationID, s.target, s.cfg.Publication))
	case err != nil:
		return nil, fault.Fatal(err)
	}
	if m.RelationID != s.root && !(m.Namespace == s.target.Schema && m.RelationName == s.target.Table) {
		s.log.Warn("a partition of the outbox arrives under its own name (publish_via_partition_root is off): its rows are relayed as the outbox's",
			"relation", m.Namespace+"."+m.RelationName)
	}
	return &layout, nil
}

// publish publishes an outbox row of the stream or of the first start's
// snapshot; committed is its transaction's commit time.
func (s *session) publish(ctx context.Context, row outbox.Row, committed time.Time) error {
	msg, warn := s.mapper.Map(row)
	if warn != nil {
		s.obs.InvalidRow()
		s.log.Warn("outbox row has invalid headers; sent with them as text under "+outbox.HeaderInvalidHeaders,
			logkey.Error, warn, logkey.MessageID, row.ID, logkey.RoutingKey, row.RoutingKey, logkey.XID, s.xid)
	}
	if reason, ok := s.mem.poisoned(row.ID); ok {
		return s.poison(ctx, row, &outbox.PoisonError{RowID: row.ID, Field: "payload", Reason: reason}, committed)
	}
	if err := outbox.Check(row, msg, s.pub.FrameMax()); err != nil {
		var perr *outbox.PoisonError
		errors.As(err, &perr)
		return s.poison(ctx, row, perr, committed)
	}
	if held := s.mem.heldID(); held != "" && held == row.ID {
		return s.publishAlone(ctx, row.ID, func() error { return s.send(ctx, s.cfg.Exchange, row.RoutingKey, route(row), msg, committed) })
	}
	if err := s.send(ctx, s.cfg.Exchange, row.RoutingKey, route(row), msg, committed); err != nil {
		return err
	}
	s.obs.Published(row.RoutingKey)
	s.st.event()
	return nil
}

// route is what picks a row's broker channel when there are several: its
// aggregate, so that each aggregate's messages keep their order.
func route(r outbox.Row) string { return r.AggregateType + "/" + r.AggregateID }

// send publishes msg to exchange with key, on the channel of route, within
// the window, and records it in the open transaction.
func (s *session) send(ctx context.Context, exchange, key, rt string, msg amqp.Publishing, committed time.Time) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	tag, err := s.pub.PublishTo(ctx, exchange, key, rt, msg, committed)
	if err != nil {
		return brokerError{err}
	}
	if s.spans != nil {
		s.spans.start(tag, exchange, key, msg, s.at, committed)
	}
	return s.tracker.Published(tag)
}

// publishAlone publishes the message the broker returned or nacked last
// time, alone: once everything before it is confirmed, and nothing after it
// until it is confirmed. So after a returned or nacked message, nothing
// committed after it reaches the broker before it.
func (s *session) publishAlone(ctx context.Context, id string, send func() error) error {
	if err := s.waitEmpty(ctx); err != nil {
		return err
	}
	s.log.Info("publishing the message that failed last time alone, before anything after it", logkey.MessageID, id)
	if err := send(); err != nil {
		return err
	}
	if err := s.waitEmpty(ctx); err != nil {
		return err
	}
	s.mem.release(id)
	return nil
}

// waitEmpty waits until the broker confirmed every message in flight,
// reporting the position meanwhile. A failed message ends ctx (the session
// ends with the confirm loop's error).
func (s *session) waitEmpty(ctx context.Context) error {
	for s.pub.InFlight() > 0 {
		if _, err := s.report(ctx, false); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// poison handles a row that can never be published. With
// CDC_RELAY_POISON=stop the relay stops naming it (nothing after it is
// acknowledged); with park it publishes a small envelope of the row to the
// queue "<exchange>.poison", in the row's place (its transaction is
// acknowledged once the envelope is confirmed), and goes on.
func (s *session) poison(ctx context.Context, row outbox.Row, perr *outbox.PoisonError, committed time.Time) error {
	if s.cfg.Poison != config.PoisonPark {
		return fault.Fatal(fmt.Errorf("%w (transaction %d); nothing after it was acknowledged. "+
			"To go on, set CDC_RELAY_POISON=park and restart: the row then goes to queue %q and the rows after it flow",
			perr, s.xid, outbox.PoisonQueue(s.cfg.Exchange)))
	}
	queue := outbox.PoisonQueue(s.cfg.Exchange)
	// Through the default exchange, which routes to the queue of that name.
	if err := s.send(ctx, "", queue, route(row), outbox.PoisonMessage(row, perr, s.source), committed); err != nil {
		return err
	}
	s.mem.parked(row.ID)
	s.obs.Parked("poison")
	s.log.Warn("parked a row that can never be published", logkey.MessageID, row.ID, "field", perr.Field, "reason", perr.Reason,
		"queue", queue, logkey.XID, s.xid)
	return nil
}

// publishSnapshot publishes, before the stream starts, the outbox rows
// visible in the snapshot of the slot just created: they committed before
// its consistent point, so the stream will not carry them. They form one
// transaction ending at that point; the stream starts once every one of
// them is confirmed. A stop lets it finish within the drain time.
func (s *session) publishSnapshot(stop, failed context.Context, snap *replication.Snapshot, order replication.RowOrder) error {
	ctx, cancel := context.WithCancel(failed)
	defer cancel()
	defer context.AfterFunc(stop, func() {
		time.AfterFunc(s.drain, cancel)
	})()
	start := s.tracker.Positions().Confirmed
	if err := s.tracker.Begin(); err != nil {
		return err
	}
	n := 0
	err := snap.Rows(ctx, s.target, order, 500, func(r replication.StoredRow) error {
		n++
		return s.publish(ctx, r.Row, r.Committed)
	})
	if err != nil {
		if failed.Err() != nil {
			return errors.New("first start: publishing the rows of the slot's snapshot: the broker failed")
		}
		return fmt.Errorf("first start: publishing the rows of the slot's snapshot: %w", err)
	}
	if err := s.tracker.Commit(start, time.Time{}); err != nil {
		return err
	}
	if err := s.waitEmpty(ctx); err != nil {
		return fmt.Errorf("first start: waiting for the broker to confirm the rows of the slot's snapshot: %w", err)
	}
	if n > 0 {
		s.log.Info("first start: published the outbox rows committed while the slot was being created (they are not in its stream)",
			"rows", n, "order", order.Describe(), logkey.LSN, start.String())
	}
	return nil
}

// acquire waits for room in the window. While it waits the stream is not
// read (back-pressure), but the position is still reported so the server
// does not time the connection out.
func (s *session) acquire(ctx context.Context) error {
	for s.blocked.Load() {
		// The broker stopped reading from this connection: a publish would
		// only sit in the socket (and could hold a stop). Wait, reporting.
		if _, err := s.report(ctx, false); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(statusGap):
		}
	}
	for !s.pub.TryAcquire() {
		s.pub.Flush() // the broker must have them all to confirm them
		wait, cancel := context.WithTimeout(ctx, statusGap)
		err := s.pub.Acquire(wait)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := s.report(ctx, false); err != nil {
			return err
		}
	}
	return nil
}

// report sends a standby status update when the confirmed position moved
// (at most once per statusGap, or at once when a window's worth of messages
// is waiting to be reported), when the periodic interval is due, or when
// force. It returns when Receive should give up to let the loop report
// again: soon while confirms are pending, at the periodic interval when
// idle. One snapshot of the tracker serves both, once per message. Before
// the stream started (the first start's snapshot) it reports nothing.
func (s *session) report(ctx context.Context, force bool) (time.Time, error) {
	p := s.tracker.Positions()
	now := time.Now()
	if !s.streaming {
		return now.Add(statusGap), nil
	}
	moved := p.Confirmed > s.sentFlush &&
		(now.Sub(s.lastStatus) >= statusGap || p.ConfirmedMessages-s.sentMsgs >= uint64(s.cfg.MaxInFlight))
	if force || moved || !now.Before(s.nextStatus) {
		if err := s.stream.SendStatus(ctx, p.Received, p.Confirmed, false); err != nil {
			return time.Time{}, err
		}
		s.sentFlush, s.sentMsgs, s.lastStatus = p.Confirmed, p.ConfirmedMessages, now
		s.nextStatus = now.Add(s.cfg.HeartbeatInterval)
		s.obs.Positions(p.Received, p.Confirmed, p.ServerEnd)
	}
	if p.InFlight > 0 || p.Confirmed > s.sentFlush {
		return now.Add(statusGap), nil
	}
	return s.nextStatus, nil
}

// stop ends the session cleanly, so that a restart resends nothing: it
// reads on until the transaction being read is committed (its rows are then
// published), waits for the broker to confirm what is in flight, reports the
// final position, and waits until the walsender shows it. All within the
// drain time; what is left past it is resent after a restart.
func (s *session) stop(failed context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(failed, deadline)
	defer cancel()
	if p := s.tracker.Positions(); p.Open {
		s.log.Info("stopping: reading the rest of the open transaction", logkey.XID, s.xid)
		for s.tracker.Positions().Open && ctx.Err() == nil {
			msg, err := s.stream.Receive(ctx, deadline)
			if err != nil {
				break // timeout or a lost connection: drain what is out
			}
			if err := s.dispatch(ctx, msg); err != nil {
				if errors.Is(err, fault.ErrFatal) {
					return err
				}
				break
			}
		}
	}
	s.log.Info("stopping: draining confirms", "in_flight", s.pub.InFlight())
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.pub.InFlight() > 0 && ctx.Err() == nil {
		<-tick.C
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(failed), 5*time.Second)
	defer scancel()
	p := s.tracker.Positions()
	if err := s.stream.SendStatus(sctx, p.Received, p.Confirmed, false); err != nil {
		return err
	}
	s.obs.Positions(p.Received, p.Confirmed, p.ServerEnd)
	s.awaitFlush(sctx, p.Confirmed)
	s.log.Info("stopped", logkey.LSN, p.Confirmed.String(), "unconfirmed", p.InFlight, "open_transaction", p.Open)
	return nil
}

// awaitFlush reads the slot back until the walsender shows flush as its
// confirmed position: the status update is then taken, and closing the
// connection cannot lose it.
func (s *session) awaitFlush(ctx context.Context, flush checkpoint.LSN) {
	for {
		if got, err := s.flushed(ctx); err != nil || got >= flush {
			return // a slot that cannot be read back is not waited for
		}
		select {
		case <-ctx.Done():
			s.log.Warn("the walsender did not show the final position before the stop's deadline; a restart may resend the last transactions", logkey.LSN, flush.String())
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// errNoFlush: the slot has no confirmed position (or is gone).
var errNoFlush = errors.New("the slot has no confirmed_flush_lsn")

// slotFlushed is the slot's confirmed_flush_lsn, read on ctl.
func (s *session) slotFlushed(ctx context.Context) (checkpoint.LSN, error) {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	var lsn *string
	err := s.ctl.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && lsn == nil) {
		return 0, errNoFlush
	}
	if err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(*lsn)
}

// Confirmed implements publisher.Handler.
func (s *session) Confirmed(tag uint64, published, committed time.Time) {
	s.tracker.Confirm(tag, false)
	if s.spans != nil {
		s.spans.end(tag, nil)
	}
	now := time.Now()
	s.obs.Confirmed(now.Sub(published), now.Sub(committed))
}

// Failed implements publisher.Handler.
func (s *session) Failed(f *publisher.Failure) {
	s.tracker.Fail(f.Tag)
	if s.spans != nil {
		s.spans.end(f.Tag, f)
	}
	reason := "nacked"
	if errors.Is(f.Err, publisher.ErrUnroutable) {
		reason = "unroutable"
	}
	s.obs.Failed(reason)
	// Not logged here: the session ends with f, and Run logs it once.
}

// Blocked implements publisher.Handler.
func (s *session) Blocked(active bool, reason string) {
	s.blocked.Store(active)
	s.st.setBlocked(active, reason)
	s.obs.Blocked(active)
	if active {
		s.log.Warn("the broker blocked the connection: publishing waits until it unblocks it", "reason", reason)
	} else {
		s.log.Info("the broker unblocked the connection")
	}
}

// watchParked counts and logs the messages of this relay that the park
// mode's alternate exchange receives: those of its own source (other relays
// share the exchange).
func (s *session) watchParked(ctx context.Context) {
	queue := publisher.ParkingExchange(s.cfg.Exchange)
	err := s.pub.WatchParked(ctx, func(d amqp.Delivery) {
		// Relays of other databases share the exchange: their messages carry
		// another source. Without the cloudevents header group nothing tells
		// them apart, and every parked message is counted.
		if src, ok := d.Headers[event.HeaderCloudEventsSource].(string); ok && src != s.source {
			return
		}
		s.obs.Parked("unroutable")
		s.log.Warn("parked an unroutable message: no queue is bound for its routing key", logkey.MessageID, d.MessageId,
			logkey.RoutingKey, d.RoutingKey, "queue", queue)
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("stopped watching parked messages; they are still parked, only not counted", logkey.Error, err)
	}
}

// heartbeats runs the heartbeat statement every interval: it writes a
// message the stream must read back (a heartbeat that does not come back
// marks the relay not ready) and reads the slot's health. A slot that
// disappears or is invalidated while streaming ends the relay with the
// repair; a failed heartbeat is only logged, since the stream decides
// whether the session is alive.
func (s *session) heartbeats(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	orig := s.ctl // closed by the session; a replacement is closed here
	defer func() {
		s.ctlMu.Lock()
		defer s.ctlMu.Unlock()
		if s.ctl != orig {
			s.ctl.Close(context.WithoutCancel(ctx))
		}
	}()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		h, err := s.beat(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				s.log.Warn("heartbeat statement failed; the stream's heartbeat age tells whether it stalls", logkey.Error, err)
			}
			failing = true
			continue
		}
		failing = false
		s.st.slotHealth(h)
		s.obs.SlotHealth(h)
		switch {
		case !h.Exists:
			return fault.SlotLost(s.cfg.Slot, "it was dropped while the relay streamed", s.repairHint())
		case h.WALStatus == "lost":
			return fault.SlotLost(s.cfg.Slot, "its WAL was removed (max_slot_wal_keep_size)", s.repairHint())
		}
	}
}

// heartbeat runs one heartbeat statement. A timed-out statement closes its
// connection: then another is opened for the next one, and the stream goes
// on (it decides whether the session lives).
func (s *session) heartbeat(ctx context.Context) (replication.SlotHealth, error) {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if s.ctl.IsClosed() {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
		ctl, err := replication.Connect(cctx, s.cfg.DatabaseURL)
		cancel()
		if err != nil {
			return replication.SlotHealth{}, err
		}
		s.ctl = ctl
	}
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
	defer cancel()
	return replication.Heartbeat(hctx, s.ctl, s.cfg.Slot, s.cfg.Slot+" "+strconv.FormatInt(time.Now().UnixNano(), 10), s.version)
}

func (s *session) repairHint() fault.RepairHint {
	s.mem.confirmed(s.tracker.Positions())
	return s.mem.repairHint()
}
