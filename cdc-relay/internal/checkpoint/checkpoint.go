// Package checkpoint is the relay's acknowledgement logic (docs/contracts.md,
// "Stream and acknowledgement rules") as pure code: it decides which WAL
// position may be reported to Postgres as flushed, given what was read from
// the stream and what the broker confirmed. It does no I/O and is safe for
// concurrent use.
//
// Three positions are kept apart on purpose:
//   - received: how far the stream has been read. It is reported as the write
//     position only; it says nothing about the broker.
//   - confirmed: the end LSN of the last transaction whose every message the
//     broker confirmed, in commit order. This is the only position reported
//     as flush (and apply): Postgres treats flush as "the consumer has this",
//     and never resends a transaction whose commit record lies before it
//     (SnapBuildXactNeedsSkip in src/backend/replication/logical/snapbuild.c).
//   - server WAL end: from keepalives. When nothing is in flight, everything
//     the server has decoded up to there was either confirmed or filtered out
//     (other tables, empty transactions), so confirmed may move to it. This is
//     what keeps the slot moving on a database with no outbox traffic.
//
// Acknowledgement is per transaction, never per row: rows of one transaction
// share its commit position, so acking a prefix of them would skip the rest
// after a restart.
package checkpoint

import (
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Tracker follows one streaming session: the sequence numbers it is given are
// the broker channel's delivery tags, which start at 1 on a new channel, so a
// new session needs a new Tracker.
type Tracker struct {
	mu sync.Mutex

	received  LSN
	confirmed LSN
	serverEnd LSN

	open    bool // between BEGIN and COMMIT
	openLen int  // messages published in the open transaction
	// pending[head:] are the transactions committed and not yet fully
	// confirmed, in commit order: a queue whose front moves by head, so an
	// acknowledgement does not copy the rest (with single-row transactions
	// and a full window, that copy was the tracker's main cost).
	pending []txn
	head    int
	lastSeq uint64 // highest sequence number published

	// next is the lowest sequence number not yet confirmed: every sequence
	// number below it is confirmed. Confirms that arrive ahead of it wait in ahead.
	next  uint64
	ahead map[uint64]struct{}
	// failed holds sequence numbers the broker returned or nacked. They are
	// never counted as confirmed, so confirmed can never pass them.
	failed map[uint64]struct{}

	confirmedMsgs uint64    // messages whose transaction was acknowledged, for callers' pacing
	confirmedAt   time.Time // commit time of the last acknowledged transaction
}

type txn struct {
	end     LSN    // end LSN of the commit record
	lastSeq uint64 // last message of this or an earlier transaction
	msgs    int
	at      time.Time // commit time
}

// New returns a Tracker that starts at the slot's confirmed_flush_lsn.
func New(start LSN) *Tracker {
	return &Tracker{
		received:  start,
		confirmed: start,
		next:      1,
		ahead:     map[uint64]struct{}{},
		failed:    map[uint64]struct{}{},
	}
}

// Received records that the stream has been read up to lsn.
func (t *Tracker) Received(lsn LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.received = max(t.received, lsn)
}

// Begin opens a transaction.
func (t *Tracker) Begin() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		return fmt.Errorf("checkpoint: BEGIN inside an open transaction")
	}
	t.open, t.openLen = true, 0
	return nil
}

// Published records that the message with sequence number seq, part of the
// open transaction, was handed to the broker. Sequence numbers increase.
func (t *Tracker) Published(seq uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return fmt.Errorf("checkpoint: message %d outside a transaction", seq)
	}
	if seq <= t.lastSeq {
		return fmt.Errorf("checkpoint: message %d published after %d", seq, t.lastSeq)
	}
	t.lastSeq = seq
	t.openLen++
	t.absorb()
	return nil
}

// Commit closes the open transaction; end is its TransactionEndLSN (the end
// of the commit record, not the commit record's start: acking the start would
// make Postgres send the transaction again), at its commit time.
func (t *Tracker) Commit(end LSN, at time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return fmt.Errorf("checkpoint: COMMIT %s without BEGIN", end)
	}
	t.open = false
	t.received = max(t.received, end)
	if n := len(t.pending); n > t.head && t.openLen == 0 {
		// A transaction that published nothing (another table's, a
		// heartbeat's) can be acknowledged exactly when the one before it
		// can: it moves that one's end instead of queueing. So pending holds
		// at most one entry per transaction with a message in flight, and
		// stays bounded by the window however many empty transactions pass
		// behind an unconfirmed message.
		t.pending[n-1].end, t.pending[n-1].at = end, at
	} else {
		t.pending = append(t.pending, txn{end: end, lastSeq: t.lastSeq, msgs: t.openLen, at: at})
	}
	t.advance()
	return nil
}

// Confirm records a broker ack of seq (and of every earlier one when multiple).
func (t *Tracker) Confirm(seq uint64, multiple bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if multiple {
		for s := t.next; s <= seq; s++ {
			t.confirmOne(s)
		}
	} else {
		t.confirmOne(seq)
	}
	t.advance()
}

// Fail records that the broker returned (unroutable) or nacked seq: it is
// never confirmed, so no transaction at or after it is ever acknowledged.
func (t *Tracker) Fail(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed[seq] = struct{}{}
}

// Keepalive records the server's WAL end from a primary keepalive. When
// nothing is open or unconfirmed, confirmed moves up to it.
func (t *Tracker) Keepalive(serverEnd LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.serverEnd = max(t.serverEnd, serverEnd)
	t.advance()
}

// confirmOne records a confirm. A confirm may reach the tracker before
// Published for the same message (the broker can answer before the
// publishing goroutine records the tag), so confirms beyond lastSeq wait in
// ahead too.
func (t *Tracker) confirmOne(seq uint64) {
	if seq < t.next {
		return // a duplicate
	}
	if _, bad := t.failed[seq]; bad {
		return
	}
	if seq == t.next && seq <= t.lastSeq {
		t.next++ // the usual case, in order: no trip through ahead
	} else {
		t.ahead[seq] = struct{}{}
	}
	t.absorb()
}

// absorb moves next past every confirmed, published sequence number.
func (t *Tracker) absorb() {
	for t.next <= t.lastSeq {
		if _, ok := t.ahead[t.next]; !ok {
			return
		}
		delete(t.ahead, t.next)
		t.next++
	}
}

// advance acknowledges the longest prefix of committed transactions whose
// messages are all confirmed, then, when idle, the keepalive position.
func (t *Tracker) advance() {
	n := t.head
	for ; n < len(t.pending) && t.pending[n].lastSeq < t.next; n++ {
		t.confirmed = max(t.confirmed, t.pending[n].end)
		t.confirmedMsgs += uint64(t.pending[n].msgs)
		if !t.pending[n].at.IsZero() {
			t.confirmedAt = t.pending[n].at
		}
	}
	t.head = n
	switch {
	case t.head == len(t.pending):
		t.pending, t.head = t.pending[:0], 0
	case t.head >= 256 && 2*t.head >= len(t.pending):
		// Reclaim the front once it is most of the slice: each entry is
		// copied at most once per time the queue doubles.
		t.pending, t.head = append(t.pending[:0], t.pending[t.head:]...), 0
	}
	if !t.open && t.head == len(t.pending) {
		t.confirmed = max(t.confirmed, t.serverEnd)
	}
}

// aheadPublished counts confirms waiting in ahead for published messages.
func (t *Tracker) aheadPublished() uint64 {
	var n uint64
	for seq := range t.ahead {
		if seq <= t.lastSeq {
			n++
		}
	}
	return n
}

// Positions is a snapshot of the tracker.
type Positions struct {
	Received  LSN
	Confirmed LSN
	ServerEnd LSN
	// InFlight counts messages published and not yet confirmed.
	InFlight uint64
	// Unacked counts transactions read and not yet acknowledged (the open one
	// included); transactions without messages count with the one before them.
	Unacked int
	// ConfirmedMessages counts messages of acknowledged transactions since the tracker began.
	ConfirmedMessages uint64
	// ConfirmedCommit is the commit time of the last acknowledged
	// transaction (zero before the first): every transaction committed
	// before it reached the broker.
	ConfirmedCommit time.Time
	// Open is whether a transaction is being read (BEGIN seen, COMMIT not yet).
	Open bool
}

// Idle reports whether nothing is open or waiting for the broker.
func (p Positions) Idle() bool { return p.Unacked == 0 && p.InFlight == 0 }

// Positions returns a consistent snapshot.
func (t *Tracker) Positions() Positions {
	t.mu.Lock()
	defer t.mu.Unlock()
	unacked := len(t.pending) - t.head
	if t.open {
		unacked++
	}
	return Positions{
		Received:          t.received,
		Confirmed:         t.confirmed,
		ServerEnd:         t.serverEnd,
		InFlight:          t.lastSeq - (t.next - 1) - t.aheadPublished(),
		Unacked:           unacked,
		ConfirmedMessages: t.confirmedMsgs,
		ConfirmedCommit:   t.confirmedAt,
		Open:              t.open,
	}
}
