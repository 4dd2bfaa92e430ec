package checkpoint

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// step is one event of a session, applied in order.
type step struct {
	begin     bool
	publish   uint64 // a message with this delivery tag
	commit    LSN
	confirm   uint64
	multiple  bool
	fail      uint64
	keepalive LSN
	// want is the confirmed position after the step (0: not checked).
	want LSN
}

func TestTrackerConfirmedPosition(t *testing.T) {
	const start LSN = 1000
	tests := []struct {
		name  string
		steps []step
		final Positions
	}{
		{
			name: "single-row transaction acked once confirmed",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100, want: start},
				{confirm: 1, want: 1100},
			},
			final: Positions{Received: 1100, Confirmed: 1100},
		},
		{
			name: "multi-row transaction waits for its last row",
			steps: []step{
				{begin: true}, {publish: 1}, {publish: 2}, {publish: 3}, {commit: 1200},
				{confirm: 1, want: start}, {confirm: 2, want: start}, {confirm: 3, want: 1200},
			},
			final: Positions{Received: 1200, Confirmed: 1200},
		},
		{
			name: "confirms of part of a transaction before its commit is read",
			steps: []step{
				{begin: true}, {publish: 1}, {publish: 2},
				{confirm: 1}, {confirm: 2, want: start}, // COMMIT not read yet: more rows may follow
				{publish: 3}, {commit: 1300, want: start},
				{confirm: 3, want: 1300},
			},
			final: Positions{Received: 1300, Confirmed: 1300},
		},
		{
			name: "confirms out of order acknowledge only the confirmed prefix of transactions",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {publish: 2}, {commit: 1200},
				{begin: true}, {publish: 3}, {commit: 1300},
				{confirm: 3, want: start}, {confirm: 2, want: start}, {confirm: 1, want: 1300},
			},
			final: Positions{Received: 1300, Confirmed: 1300},
		},
		{
			name: "out of order inside a transaction",
			steps: []step{
				{begin: true}, {publish: 1}, {publish: 2}, {commit: 1100},
				{begin: true}, {publish: 3}, {commit: 1200},
				{confirm: 2, want: start}, {confirm: 3, want: start}, {confirm: 1, want: 1200},
			},
			final: Positions{Received: 1200, Confirmed: 1200},
		},
		{
			name: "multiple confirm covers several transactions",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {publish: 2}, {publish: 3}, {commit: 1200},
				{begin: true}, {publish: 4}, {commit: 1300},
				{confirm: 3, multiple: true, want: 1200},
				{confirm: 4, want: 1300},
			},
			final: Positions{Received: 1300, Confirmed: 1300},
		},
		{
			name: "duplicate confirms change nothing",
			steps: []step{
				{begin: true}, {publish: 1}, {publish: 2}, {commit: 1100},
				{confirm: 1}, {confirm: 1, want: start},
				{confirm: 2, want: 1100}, {confirm: 2, want: 1100},
			},
			final: Positions{Received: 1100, Confirmed: 1100},
		},
		{
			name: "a confirm that arrives before its publish is recorded still counts",
			steps: []step{
				{begin: true}, {publish: 1},
				{confirm: 2}, {confirm: 1},
				{publish: 2}, {commit: 1100, want: 1100},
				{begin: true}, {confirm: 4, multiple: true}, {publish: 3}, {publish: 4}, {commit: 1200, want: 1200},
			},
			final: Positions{Received: 1200, Confirmed: 1200},
		},
		{
			name: "keepalive while idle moves confirmed to the server position",
			steps: []step{
				{keepalive: 5000, want: 5000},
				{keepalive: 4000, want: 5000}, // never backwards
			},
			final: Positions{Received: start, Confirmed: 5000, ServerEnd: 5000},
		},
		{
			name: "keepalive while a transaction is open does not move confirmed",
			steps: []step{
				{begin: true}, {publish: 1},
				{keepalive: 5000, want: start},
				{confirm: 1, want: start},
				{commit: 5100, want: 5100},
			},
			final: Positions{Received: 5100, Confirmed: 5100, ServerEnd: 5000},
		},
		{
			name: "keepalive while messages are in flight waits for them",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{keepalive: 5000, want: start},
				{confirm: 1, want: 5000},
			},
			final: Positions{Received: 1100, Confirmed: 5000, ServerEnd: 5000},
		},
		{
			name: "empty transactions (filtered tables) are acknowledged in order",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {commit: 1200, want: start}, // behind the unconfirmed one
				{confirm: 1, want: 1200},
				{begin: true}, {commit: 1300, want: 1300},
			},
			final: Positions{Received: 1300, Confirmed: 1300},
		},
		{
			name: "a returned message is never acknowledged past, even when acked",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {publish: 2}, {publish: 3}, {commit: 1200},
				{begin: true}, {publish: 4}, {commit: 1300},
				{fail: 2}, {confirm: 1, want: 1100},
				{confirm: 2}, {confirm: 3}, {confirm: 4, want: 1100},
				{keepalive: 9000, want: 1100},
			},
			final: Positions{Received: 1300, Confirmed: 1100, ServerEnd: 9000, InFlight: 1, Unacked: 2},
		},
		{
			name: "an empty transaction behind an unconfirmed one is acked with it, not before",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {commit: 1150, want: start}, // another table's transaction
				{begin: true}, {publish: 2}, {commit: 1200},
				{begin: true}, {commit: 1250},
				{confirm: 1, want: 1150}, {confirm: 2, want: 1250},
			},
			final: Positions{Received: 1250, Confirmed: 1250},
		},
		{
			name: "a nack inside a multiple ack stops the prefix there",
			steps: []step{
				{begin: true}, {publish: 1}, {commit: 1100},
				{begin: true}, {publish: 2}, {commit: 1200},
				{fail: 2}, {confirm: 2, multiple: true, want: 1100},
			},
			final: Positions{Received: 1200, Confirmed: 1100, InFlight: 1, Unacked: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(start)
			for i, s := range tt.steps {
				switch {
				case s.begin:
					require.NoError(t, tr.Begin(), "step %d", i)
				case s.publish != 0:
					require.NoError(t, tr.Published(s.publish), "step %d", i)
				case s.commit != 0:
					require.NoError(t, tr.Commit(s.commit, time.Time{}), "step %d", i)
				case s.confirm != 0:
					tr.Confirm(s.confirm, s.multiple)
				case s.fail != 0:
					tr.Fail(s.fail)
				case s.keepalive != 0:
					tr.Keepalive(s.keepalive)
				}
				if s.want != 0 {
					require.Equal(t, s.want, tr.Positions().Confirmed, "confirmed after step %d %+v", i, s)
				}
			}
			got := tr.Positions()
			got.ConfirmedMessages = 0
			assert.Equal(t, tt.final, got)
		})
	}
}

func TestTrackerRejectsProtocolViolations(t *testing.T) {
	tests := []struct {
		name string
		run  func(*Tracker) error
	}{
		{"message outside a transaction", func(tr *Tracker) error { return tr.Published(1) }},
		{"commit without begin", func(tr *Tracker) error { return tr.Commit(10, time.Time{}) }},
		{"begin twice", func(tr *Tracker) error { _ = tr.Begin(); return tr.Begin() }},
		{"tags going backwards", func(tr *Tracker) error {
			_ = tr.Begin()
			_ = tr.Published(2)
			return tr.Published(2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, tt.run(New(1)))
		})
	}
}

func TestTrackerCountsConfirmedMessages(t *testing.T) {
	tr := New(1)
	require.NoError(t, tr.Begin())
	for seq := uint64(1); seq <= 3; seq++ {
		require.NoError(t, tr.Published(seq))
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	require.NoError(t, tr.Commit(50, at))
	assert.True(t, tr.Positions().ConfirmedCommit.IsZero(), "not confirmed yet")
	tr.Confirm(3, true)
	p := tr.Positions()
	assert.Equal(t, uint64(3), p.ConfirmedMessages)
	assert.Equal(t, at, p.ConfirmedCommit)
	assert.True(t, p.Idle())
}

// One unconfirmed message, then a million transactions that publish nothing
// (another table's writes, heartbeats): the tracker must not keep one entry
// per transaction, and the confirm must acknowledge up to the last of them.
func TestTrackerStaysBoundedBehindAnUnconfirmedMessage(t *testing.T) {
	tr := New(1)
	require.NoError(t, tr.Begin())
	require.NoError(t, tr.Published(1))
	require.NoError(t, tr.Commit(100, time.Time{}))
	end := LSN(100)
	for range 1_000_000 {
		end += 10
		require.NoError(t, tr.Begin())
		require.NoError(t, tr.Commit(end, time.Time{}))
		tr.Keepalive(end)
	}
	assert.Equal(t, 1, len(tr.pending), "pending entries")
	assert.LessOrEqual(t, cap(tr.pending), 4, "pending capacity")
	p := tr.Positions()
	assert.Equal(t, LSN(1), p.Confirmed, "nothing acknowledged past the unconfirmed message")
	assert.Equal(t, 1, p.Unacked)

	tr.Confirm(1, false)
	p = tr.Positions()
	assert.Equal(t, end, p.Confirmed)
	assert.True(t, p.Idle())
}

// A long queue of single-row transactions, confirmed in order and out of
// order, crosses the points where the queue's front is reclaimed: every
// confirmed position is the end of the last transaction whose messages are
// all confirmed, never further.
func TestTrackerLongQueue(t *testing.T) {
	const n = 3000
	tr := New(0)
	end := func(i uint64) LSN { return LSN(1000 + 10*i) }
	for i := uint64(1); i <= n; i++ {
		require.NoError(t, tr.Begin())
		require.NoError(t, tr.Published(i))
		require.NoError(t, tr.Commit(end(i), time.Time{}))
	}
	assert.Equal(t, n, tr.Positions().Unacked)
	// In order up to 1000, then every even tag before the odd ones up to 2000.
	for i := uint64(1); i <= 1000; i++ {
		tr.Confirm(i, false)
		require.Equal(t, end(i), tr.Positions().Confirmed, "after confirm %d", i)
	}
	for i := uint64(1002); i <= 2000; i += 2 {
		tr.Confirm(i, false)
		require.Equal(t, end(1000), tr.Positions().Confirmed, "tag 1001 is not confirmed yet")
	}
	for i := uint64(1001); i < 2000; i += 2 {
		tr.Confirm(i, false)
		require.Equal(t, end(i+1), tr.Positions().Confirmed, "after confirm %d", i)
	}
	tr.Confirm(n, true)
	p := tr.Positions()
	assert.Equal(t, end(n), p.Confirmed)
	assert.Zero(t, p.Unacked)
	assert.Zero(t, p.InFlight)
	assert.Equal(t, uint64(n), p.ConfirmedMessages)
}

// BenchmarkTrackerSingleRowTransactions is the tracker's work per message
// with single-row transactions and a full window of 1000: Begin, Published,
// Commit, and the confirm of the message 1000 before.
func BenchmarkTrackerSingleRowTransactions(b *testing.B) {
	const window = 1000
	tr := New(0)
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		_ = tr.Begin()
		_ = tr.Published(seq)
		_ = tr.Commit(LSN(seq*10), time.Time{})
		if seq > window {
			tr.Confirm(seq-window, false)
		}
	}
}
