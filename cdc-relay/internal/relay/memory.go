package relay

import (
	"sync"
	"time"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// memory is what one relay process keeps across its sessions: a session
// ends on any error, and the next one must know what the last one learned.
// Safe for concurrent use: sessions call it from their goroutines.
type memory struct {
	mu sync.Mutex

	// ours is set once this process found the slot missing and the outbox
	// empty: every row in the outbox since was committed after that check,
	// so none was streamed by any slot, and the rows are this process's to
	// deliver (the snapshot of the slot it creates holds them). It stays set
	// until the rows of that snapshot are all confirmed.
	ours bool
	// created is the consistent point of the slot this process created,
	// while the rows of its snapshot are not all confirmed: a later session
	// that finds the slot still there drops it and creates it again (the new
	// snapshot holds those rows).
	created checkpoint.LSN

	// held is the message id of the last message the broker returned or
	// nacked: the next sessions publish it alone, once everything before it
	// is confirmed, and pipeline again only once it is confirmed, so that
	// nothing committed after it reaches the broker first.
	held string
	// poison holds message ids the broker refused as too large: the next
	// sessions treat those rows as poison rows.
	poison map[string]string // message id → reason

	// confirmedCommit is the commit time of the last transaction confirmed
	// in any session, for the lost-slot repair.
	confirmedCommit time.Time

	// confirmedLSN is the highest position the broker confirmed everything
	// before, in any session, on the server of system systemID. A restarted
	// Postgres may keep an older confirmed_flush_lsn than the one the relay
	// reported (Postgres 15 persists a logical slot's position at shutdown
	// only when restart_lsn moved), so a new session starts from the greater
	// of the two: a restart then resends at most what was in flight.
	confirmedLSN checkpoint.LSN
	systemID     string
}

// resumeFrom is where a session on the server of system sys starts: the
// slot's confirmed position, or this process's own when it is further and
// of the same server and within its WAL (a server restored from a backup,
// or another cluster, is not the one the position was confirmed on).
func (m *memory) resumeFrom(slot checkpoint.LSN, sys replication.System) (checkpoint.LSN, bool) {
	defer m.lock()()
	if m.confirmedLSN > slot && m.systemID == sys.ID && m.confirmedLSN <= sys.WALEnd {
		return m.confirmedLSN, true
	}
	return slot, false
}

// sessionConfirmed records what a session's broker confirmed on system sys.
func (m *memory) sessionConfirmed(lsn checkpoint.LSN, sys string) {
	defer m.lock()()
	if sys != m.systemID {
		m.systemID, m.confirmedLSN = sys, 0
	}
	m.confirmedLSN = max(m.confirmedLSN, lsn)
}

func (m *memory) lock() func() {
	m.mu.Lock()
	return m.mu.Unlock
}

func (m *memory) outboxIsOurs() bool        { defer m.lock()(); return m.ours }
func (m *memory) setOurs()                  { defer m.lock()(); m.ours = true }
func (m *memory) createdAt() checkpoint.LSN { defer m.lock()(); return m.created }
func (m *memory) setCreated(lsn checkpoint.LSN) {
	defer m.lock()()
	m.created = lsn
}

// snapshotDone records that every row of the created slot's snapshot was
// confirmed: from now on the slot's stream is the whole story.
func (m *memory) snapshotDone() {
	defer m.lock()()
	m.ours, m.created = false, 0
}

// forget drops the first start's state when the slot turned out to be
// someone else's (another relay created it meanwhile).
func (m *memory) forget() { m.snapshotDone() }

func (m *memory) heldID() string { defer m.lock()(); return m.held }
func (m *memory) hold(id string) { defer m.lock()(); m.held = id }

// release ends a hold once id was confirmed.
func (m *memory) release(id string) {
	defer m.lock()()
	if m.held == id {
		m.held = ""
	}
}

func (m *memory) poisoned(id string) (string, bool) {
	defer m.lock()()
	reason, ok := m.poison[id]
	return reason, ok
}

func (m *memory) setPoison(id, reason string) {
	defer m.lock()()
	if m.poison == nil {
		m.poison = map[string]string{}
	}
	m.poison[id] = reason
}

// parked forgets a poison id once its row was parked or the relay stopped on it.
func (m *memory) parked(id string) {
	defer m.lock()()
	delete(m.poison, id)
}

func (m *memory) confirmed(p checkpoint.Positions) {
	defer m.lock()()
	if p.ConfirmedCommit.After(m.confirmedCommit) {
		m.confirmedCommit = p.ConfirmedCommit
	}
}

// repairHint is what a lost-slot message tells the operator to replay from.
func (m *memory) repairHint() fault.RepairHint {
	defer m.lock()()
	if m.confirmedCommit.IsZero() {
		return fault.RepairHint{}
	}
	return fault.RepairHint{LastConfirmedCommit: m.confirmedCommit.UTC().Format(time.RFC3339Nano)}
}
