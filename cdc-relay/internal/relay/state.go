package relay

import (
	"fmt"
	"sync"
	"time"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// Phase is what the relay is doing.
type Phase string

const (
	PhaseStarting  Phase = "starting"
	PhaseStreaming Phase = "streaming"
	PhaseStandby   Phase = "standby" // another relay holds the slot
	PhaseBackoff   Phase = "backoff" // waiting to reconnect after an error
	PhaseStopped   Phase = "stopped"
)

// Status is the relay's state as /readyz and /status show it.
type Status struct {
	Name       string `json:"name"`
	Slot       string `json:"slot"`
	Phase      Phase  `json:"phase"`
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason,omitempty"`
	BrokerOpen bool   `json:"broker_channel_open"`
	// BrokerBlocked is set while the broker blocks the connection (a memory
	// or disk alarm).
	BrokerBlocked bool   `json:"broker_blocked"`
	ReceivedLSN   string `json:"received_lsn"`
	ConfirmedLSN  string `json:"confirmed_lsn"`
	ServerWALEnd  string `json:"server_wal_end"`
	LagBytes      int64  `json:"lag_bytes"`
	RetainedWAL   int64  `json:"retained_wal_bytes"`
	WALStatus     string `json:"wal_status,omitempty"`
	SafeWALSize   *int64 `json:"safe_wal_size,omitempty"`
	// FailoverReady is whether a promotion of the standby keeps the slot
	// (Postgres 17 failover slots), and Failover why or why not.
	FailoverReady *bool    `json:"failover_ready,omitempty"`
	Failover      string   `json:"failover,omitempty"`
	HeartbeatAge  *float64 `json:"heartbeat_age_seconds,omitempty"`
	InFlight      uint64   `json:"in_flight"`
	// ConfirmedCommit is the commit time of the last transaction whose every
	// message the broker confirmed: the --since of a replay after a lost slot.
	ConfirmedCommit *time.Time `json:"confirmed_commit_time,omitempty"`
	Published       uint64     `json:"events_published"`
	LastEventAt     *time.Time `json:"last_event_at,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
	Reconnects      uint64     `json:"reconnects"`
	StreamingFrom   *time.Time `json:"streaming_since,omitempty"`
}

// state is shared between the relay's goroutines and the HTTP handlers.
type state struct {
	mu          sync.Mutex
	name        string
	slot        string
	phase       Phase
	reason      string
	brokerOpen  func() bool
	tracker     *checkpoint.Tracker
	published   uint64
	lastEventAt time.Time
	lastErr     string
	lastErrAt   time.Time
	reconnects  uint64
	since       time.Time
	interval    time.Duration // heartbeat interval of the session
	heartbeat   time.Time     // last heartbeat read back (session start until the first)
	health      replication.SlotHealth
	hasHealth   bool
	// confirmedCommit is the last confirmed commit time of earlier sessions.
	confirmedCommit time.Time
	blocked         bool
	blockedReason   string
}

func (s *state) setBlocked(blocked bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked, s.blockedReason = blocked, reason
}

// sessionEnded keeps what the session's tracker knew of confirmed commits.
func (s *state) sessionEnded(confirmedCommit time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if confirmedCommit.After(s.confirmedCommit) {
		s.confirmedCommit = confirmedCommit
	}
}

func (s *state) set(p Phase, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase, s.reason = p, reason
	if p == PhaseStreaming {
		s.since = time.Now()
	}
}

func (s *state) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
}

func (s *state) session(t *checkpoint.Tracker, brokerOpen func() bool, heartbeatInterval time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracker, s.brokerOpen, s.interval = t, brokerOpen, heartbeatInterval
	s.heartbeat = time.Now()
	s.blocked, s.blockedReason = false, ""
}

func (s *state) heartbeatSeen(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeat = at
}

func (s *state) slotHealth(h replication.SlotHealth) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health, s.hasHealth = h, true
}

// stalled reports a stream whose heartbeat has not come back for two
// intervals: the relay is not ready, though it may still be connected.
func (s *state) stalled(now time.Time) (time.Duration, bool) {
	if s.tracker == nil || s.interval == 0 {
		return 0, false
	}
	age := now.Sub(s.heartbeat)
	return age, age > 2*s.interval
}

func (s *state) event() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published++
	s.lastEventAt = time.Now()
}

func (s *state) reconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconnects++
}

func (s *state) snapshot() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Name: s.name, Slot: s.slot, Phase: s.phase, Reason: s.reason, Published: s.published, LastError: s.lastErr, Reconnects: s.reconnects}
	if s.brokerOpen != nil {
		st.BrokerOpen = s.brokerOpen()
	}
	if s.tracker != nil {
		p := s.tracker.Positions()
		st.ReceivedLSN, st.ConfirmedLSN, st.ServerWALEnd = p.Received.String(), p.Confirmed.String(), p.ServerEnd.String()
		st.InFlight = p.InFlight
		if p.ConfirmedCommit.After(s.confirmedCommit) {
			s.confirmedCommit = p.ConfirmedCommit
		}
	}
	if !s.confirmedCommit.IsZero() {
		t := s.confirmedCommit.UTC()
		st.ConfirmedCommit = &t
	}
	if s.hasHealth {
		st.LagBytes, st.RetainedWAL, st.WALStatus, st.SafeWALSize = s.health.LagBytes, s.health.RetainedWALBytes, s.health.WALStatus, s.health.SafeWALSize
		ready, why := s.health.FailoverReady()
		st.FailoverReady, st.Failover = &ready, why
	}
	if !s.lastEventAt.IsZero() {
		t := s.lastEventAt
		st.LastEventAt = &t
	}
	if !s.lastErrAt.IsZero() {
		t := s.lastErrAt
		st.LastErrorAt = &t
	}
	if s.phase == PhaseStreaming {
		t := s.since
		st.StreamingFrom = &t
	}
	age, stalled := s.stalled(time.Now())
	if s.tracker != nil {
		a := age.Seconds()
		st.HeartbeatAge = &a
	}
	st.BrokerBlocked = s.blocked
	st.Ready = s.phase == PhaseStreaming && st.BrokerOpen && !stalled && !s.blocked
	switch {
	case st.Ready:
	case s.phase == PhaseStreaming && !st.BrokerOpen:
		st.Reason = "broker channel closed"
	case s.phase == PhaseStreaming && s.blocked:
		st.Reason = "broker blocked the connection (" + s.blockedReason + "): publishing waits for the alarm to clear"
	case s.phase == PhaseStreaming && stalled:
		st.Reason = fmt.Sprintf("stalled: no heartbeat read back from the stream for %s (interval %s)", age.Round(time.Millisecond), s.interval)
	case st.Reason == "":
		st.Reason = string(s.phase)
	}
	return st
}
