package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/logkey"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// statusGap is the longest a confirmed position waits before it is reported
// to Postgres. Short, because what is confirmed but not reported is sent
// again after a crash; not zero, so a busy stream sends one status update
// per gap rather than one per transaction.
const statusGap = 50 * time.Millisecond

// session is one streaming connection pair: a replication stream and a
// broker channel. It is discarded on any error.
type session struct {
	cfg     config.Config
	log     *slog.Logger
	obs     Observer
	st      *state
	stream  *replication.Stream
	ctl     *pgx.Conn // regular connection: heartbeats and slot health
	pub     *publisher.Publisher
	tracker *checkpoint.Tracker
	source  string
	drain   time.Duration

	// relations maps the relations seen in the stream to their outbox
	// layout: nil for every table but the outbox.
	relations map[uint32]*outbox.Layout
	xid       uint32
	committed time.Time // commit time of the open transaction

	sentFlush  checkpoint.LSN // last flush position reported
	sentMsgs   uint64         // ConfirmedMessages at that report
	lastStatus time.Time
	nextStatus time.Time // periodic report even when nothing changed
}

// run reads the stream until stop ends (a requested stop: drain, report,
// return nil) or failed ends (the confirm loop failed: return at once).
func (s *session) run(stop, failed context.Context) error {
	recv, cancel := context.WithCancel(failed)
	defer cancel()
	defer context.AfterFunc(stop, cancel)()

	// A stop must not wait forever on a Publish blocked writing to a broker
	// that stopped reading (an alarm, a dead peer): past the drain time the
	// broker socket is broken, which ends that write and the session.
	var watchdog struct {
		sync.Mutex
		t *time.Timer
	}
	defer context.AfterFunc(recv, func() {
		watchdog.Lock()
		watchdog.t = time.AfterFunc(s.drain+5*time.Second, s.pub.Abort)
		watchdog.Unlock()
	})()
	defer func() {
		watchdog.Lock()
		if watchdog.t != nil {
			watchdog.t.Stop()
		}
		watchdog.Unlock()
	}()

	for {
		if recv.Err() != nil {
			if failed.Err() != nil {
				return nil // the confirm loop's error is the session's
			}
			return s.stop(failed)
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
		switch m := msg.(type) {
		case replication.Keepalive:
			s.tracker.Keepalive(m.ServerWALEnd)
			if m.ReplyRequested {
				if _, err := s.report(recv, true); err != nil {
					return err
				}
			}
		case replication.Data:
			if err := s.handle(recv, m); err != nil {
				if recv.Err() != nil {
					continue
				}
				return err
			}
		}
	}
}

func (s *session) handle(ctx context.Context, d replication.Data) error {
	s.tracker.Received(d.WALStart)
	switch m := d.Message.(type) {
	case *pglogrepl.RelationMessage:
		var layout *outbox.Layout
		if m.Namespace == s.cfg.Table.Schema && m.RelationName == s.cfg.Table.Name {
			l, err := outbox.NewLayout(m)
			if err != nil {
				return replication.Fatal(err)
			}
			layout = &l
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
		return s.publish(ctx, layout, m, d.WALStart)
	case *pglogrepl.LogicalDecodingMessage:
		if m.Prefix == replication.HeartbeatPrefix && strings.HasPrefix(string(m.Content), s.cfg.Slot+" ") {
			now := time.Now()
			s.st.heartbeatSeen(now)
			s.obs.HeartbeatSeen(now)
		}
	case *pglogrepl.CommitMessage:
		if err := s.tracker.Commit(m.TransactionEndLSN); err != nil {
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

func (s *session) publish(ctx context.Context, l *outbox.Layout, m *pglogrepl.InsertMessage, lsn checkpoint.LSN) error {
	row, err := l.Decode(m.Tuple)
	if err != nil {
		return replication.Fatal(fmt.Errorf("transaction %d at %s: %w; fix the table so every outbox column is NOT NULL (design §3)", s.xid, lsn, err))
	}
	msg, warn := outbox.Message(row, s.source)
	if warn != nil {
		s.obs.InvalidRow()
		s.log.Warn("outbox row has invalid headers; sent with them as text under "+outbox.HeaderInvalidHeaders,
			logkey.Err, warn, logkey.MessageID, row.ID, logkey.RoutingKey, row.RoutingKey, logkey.XID, s.xid)
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	tag, err := s.pub.Publish(ctx, row.RoutingKey, msg, s.committed)
	if err != nil {
		return brokerError{err}
	}
	if err := s.tracker.Published(tag); err != nil {
		return err
	}
	s.obs.Published(row.RoutingKey)
	s.st.event()
	return nil
}

// acquire waits for room in the window. While it waits the stream is not
// read (back-pressure), but the position is still reported so the server
// does not time the connection out.
func (s *session) acquire(ctx context.Context) error {
	for !s.pub.TryAcquire() {
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
// idle. One snapshot of the tracker serves both, once per message.
func (s *session) report(ctx context.Context, force bool) (time.Time, error) {
	p := s.tracker.Positions()
	now := time.Now()
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

// stop drains: no more reading, wait (bounded) for the broker to confirm
// what is in flight, report the final position.
func (s *session) stop(failed context.Context) error {
	s.log.Info("stopping: draining confirms", "in_flight", s.pub.InFlight())
	deadline := time.Now().Add(s.drain)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.pub.InFlight() > 0 && time.Now().Before(deadline) && failed.Err() == nil {
		<-tick.C
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(failed), 5*time.Second)
	defer cancel()
	p := s.tracker.Positions()
	if err := s.stream.SendStatus(ctx, p.Received, p.Confirmed, false); err != nil {
		return err
	}
	s.obs.Positions(p.Received, p.Confirmed, p.ServerEnd)
	s.log.Info("stopped", logkey.LSN, p.Confirmed.String(), "unconfirmed", p.InFlight)
	return nil
}

// Confirmed implements publisher.Handler.
func (s *session) Confirmed(tag uint64, published, committed time.Time) {
	s.tracker.Confirm(tag, false)
	now := time.Now()
	s.obs.Confirmed(now.Sub(published), now.Sub(committed))
}

// Failed implements publisher.Handler.
func (s *session) Failed(f *publisher.Failure) {
	s.tracker.Fail(f.Tag)
	reason := "nacked"
	if errors.Is(f.Err, publisher.ErrUnroutable) {
		reason = "unroutable"
	}
	s.obs.Failed(reason)
	// Not logged here: the session ends with f, and Run logs it once.
}

// heartbeats runs the heartbeat statement every interval: it writes a
// message the stream must read back (design §4.3: a heartbeat that does not
// come back marks the relay not ready) and reads the slot's health. A slot
// that disappears or is invalidated while streaming ends the relay with the
// repair; a failed heartbeat is only logged, since the stream decides
// whether the session is alive.
func (s *session) heartbeats(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	orig := s.ctl // closed by the session; a replacement is closed here
	defer func() {
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
		hctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
		h, err := replication.Heartbeat(hctx, s.ctl, s.cfg.Slot, s.cfg.Slot+" "+strconv.FormatInt(time.Now().UnixNano(), 10))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				s.log.Warn("heartbeat statement failed; the stream's heartbeat age tells whether it stalls", logkey.Err, err)
			}
			failing = true
			if s.ctl.IsClosed() {
				// A timed-out statement closes its connection: open another
				// and keep streaming; the stream decides whether the session lives.
				cctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
				if ctl, err := replication.Connect(cctx, s.cfg.DatabaseURL); err == nil {
					s.ctl = ctl
				}
				cancel()
			}
			continue
		}
		failing = false
		s.st.slotHealth(h)
		s.obs.SlotHealth(h)
		switch {
		case !h.Exists:
			return replication.SlotLost(s.cfg.Slot, "it was dropped while the relay streamed")
		case h.WALStatus == "lost":
			return replication.SlotLost(s.cfg.Slot, "its WAL was removed (max_slot_wal_keep_size)")
		}
	}
}
