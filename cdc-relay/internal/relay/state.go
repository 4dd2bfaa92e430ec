package relay

import (
	"sync"
	"time"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
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
	Slot          string     `json:"slot"`
	Phase         Phase      `json:"phase"`
	Ready         bool       `json:"ready"`
	Reason        string     `json:"reason,omitempty"`
	BrokerOpen    bool       `json:"broker_channel_open"`
	ReceivedLSN   string     `json:"received_lsn"`
	ConfirmedLSN  string     `json:"confirmed_lsn"`
	ServerWALEnd  string     `json:"server_wal_end"`
	LagBytes      uint64     `json:"lag_bytes"`
	InFlight      uint64     `json:"in_flight"`
	Published     uint64     `json:"events_published"`
	LastEventAt   *time.Time `json:"last_event_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	Reconnects    uint64     `json:"reconnects"`
	StreamingFrom *time.Time `json:"streaming_since,omitempty"`
}

// state is shared between the relay's goroutines and the HTTP handlers.
type state struct {
	mu          sync.Mutex
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

func (s *state) session(t *checkpoint.Tracker, brokerOpen func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracker, s.brokerOpen = t, brokerOpen
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
	st := Status{Slot: s.slot, Phase: s.phase, Reason: s.reason, Published: s.published, LastError: s.lastErr, Reconnects: s.reconnects}
	if s.brokerOpen != nil {
		st.BrokerOpen = s.brokerOpen()
	}
	if s.tracker != nil {
		p := s.tracker.Positions()
		st.ReceivedLSN, st.ConfirmedLSN, st.ServerWALEnd = p.Received.String(), p.Confirmed.String(), p.ServerEnd.String()
		st.InFlight = p.InFlight
		if p.ServerEnd > p.Confirmed {
			st.LagBytes = uint64(p.ServerEnd - p.Confirmed)
		}
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
	st.Ready = s.phase == PhaseStreaming && st.BrokerOpen
	if !st.Ready && st.Reason == "" {
		st.Reason = string(s.phase)
		if s.phase == PhaseStreaming {
			st.Reason = "broker channel closed"
		}
	}
	return st
}
