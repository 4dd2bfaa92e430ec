package relay

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// slotReadBack is a slot whose confirmed position shows what was last
// reported after a number of reads (the walsender takes a moment).
type slotReadBack struct {
	mu    sync.Mutex
	st    *fakeStream
	lag   int // reads before the report shows
	reads int
	err   error
}

func (f *slotReadBack) flushed(context.Context) (checkpoint.LSN, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return 0, f.err
	}
	if f.reads <= f.lag || len(f.st.statuses) == 0 {
		return 0, nil
	}
	return f.st.statuses[len(f.st.statuses)-1].flush, nil
}

// A stop reads the open transaction to its commit (its rows published),
// drains what is in flight within the deadline, reports the confirmed
// position, and waits until the slot shows it.
func TestSessionStop(t *testing.T) {
	begin := func(s *session) {
		require.NoError(t, handleAll(t, s,
			data(0x1100, outboxRelation()),
			data(0x1100, &pglogrepl.BeginMessage{Xid: 9, CommitTime: time.Now()}),
			data(0x1110, insert(outboxOID, "a", "k.1")),
		))
	}
	rest := []replication.Message{
		data(0x1120, insert(outboxOID, "b", "k.2")),
		data(0x1130, &pglogrepl.CommitMessage{TransactionEndLSN: 0x1140, CommitTime: time.Now()}),
	}
	tests := []struct {
		name     string
		setup    func(s *session, st *fakeStream, br *fakeBroker, slot *slotReadBack)
		deadline time.Duration
		wantErr  string
		check    func(t *testing.T, s *session, st *fakeStream, br *fakeBroker, slot *slotReadBack)
	}{
		{name: "the open transaction is read to its commit and confirmed before the report",
			setup: func(s *session, st *fakeStream, br *fakeBroker, _ *slotReadBack) {
				begin(s)
				st.msgs = rest
			},
			deadline: time.Second,
			check: func(t *testing.T, s *session, st *fakeStream, br *fakeBroker, slot *slotReadBack) {
				require.Len(t, br.published, 2, "the rest of the transaction was published")
				assert.False(t, s.tracker.Positions().Open)
				require.NotEmpty(t, st.statuses)
				assert.Equal(t, s.tracker.Positions().Confirmed, st.statuses[len(st.statuses)-1].flush)
			}},
		{name: "everything confirmed: the commit is reported and read back",
			setup: func(s *session, st *fakeStream, br *fakeBroker, slot *slotReadBack) {
				begin(s)
				require.NoError(t, handleAll(t, s, rest...))
				s.Confirmed(1, time.Now(), time.Now())
				s.Confirmed(2, time.Now(), time.Now())
				br.inFlight = 0
				slot.lag = 3
			},
			deadline: time.Second,
			check: func(t *testing.T, _ *session, st *fakeStream, _ *fakeBroker, slot *slotReadBack) {
				require.Len(t, st.statuses, 1)
				assert.Equal(t, replication.LSN(0x1140), st.statuses[0].flush)
				assert.Equal(t, 4, slot.reads, "waited until the slot showed the report")
			}},
		{name: "what the broker never confirms is left past the deadline, unreported",
			setup: func(s *session, _ *fakeStream, br *fakeBroker, _ *slotReadBack) {
				begin(s)
				require.NoError(t, handleAll(t, s, rest...))
				br.inFlight = 2
			},
			deadline: 30 * time.Millisecond,
			check: func(t *testing.T, _ *session, st *fakeStream, _ *fakeBroker, _ *slotReadBack) {
				require.Len(t, st.statuses, 1)
				assert.Less(t, st.statuses[0].flush, replication.LSN(0x1140))
			}},
		{name: "a lost stream while reading the rest: what is out is drained and reported",
			setup: func(s *session, st *fakeStream, br *fakeBroker, _ *slotReadBack) {
				begin(s)
				st.recvErr = errors.New("connection reset")
				br.inFlight = 0
			},
			deadline: time.Second,
			check: func(t *testing.T, s *session, st *fakeStream, br *fakeBroker, _ *slotReadBack) {
				assert.Len(t, br.published, 1)
				assert.True(t, s.tracker.Positions().Open)
				assert.Len(t, st.statuses, 1)
			}},
		{name: "a fatal row in the rest of the transaction is returned",
			setup: func(s *session, st *fakeStream, _ *fakeBroker, _ *slotReadBack) {
				begin(s)
				st.msgs = []replication.Message{data(0x1120, &pglogrepl.RelationMessage{RelationID: outboxOID, Namespace: "public",
					RelationName: "outbox", Columns: []*pglogrepl.RelationMessageColumn{{Name: "id"}}})}
			},
			deadline: time.Second,
			wantErr:  "lacks column(s)"},
		{name: "the final report fails: the error is returned",
			setup: func(_ *session, st *fakeStream, _ *fakeBroker, _ *slotReadBack) {
				st.sendErr = errors.New("broken pipe")
			},
			deadline: time.Second,
			wantErr:  "broken pipe"},
		{name: "a slot that cannot be read back is not waited for",
			setup: func(_ *session, _ *fakeStream, _ *fakeBroker, slot *slotReadBack) {
				slot.err = errNoFlush
			},
			deadline: time.Second,
			check: func(t *testing.T, _ *session, st *fakeStream, _ *fakeBroker, slot *slotReadBack) {
				assert.Len(t, st.statuses, 1)
				assert.Equal(t, 1, slot.reads)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, br, _ := newTestSession(t)
			slot := &slotReadBack{st: st}
			s.flushed = slot.flushed
			tt.setup(s, st, br, slot)
			start := time.Now()
			err := s.stop(context.Background(), time.Now().Add(tt.deadline))
			assert.Less(t, time.Since(start), tt.deadline+2*time.Second)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, s, st, br, slot)
			}
		})
	}
}

// The stream loop's own exits: a requested stop drains and reports; a
// failed confirm loop returns at once (its error is the session's); a lost
// stream, a fatal row and a failed report are returned.
func TestSessionRun(t *testing.T) {
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	tests := []struct {
		name         string
		stop, failed context.Context
		setup        func(s *session, st *fakeStream)
		wantErr      string
		wantStatuses int
	}{
		{name: "stop requested: the position is reported, nil", stop: cancelled(), failed: context.Background(), wantStatuses: 1},
		{name: "the confirm loop failed: nil at once, nothing reported", stop: context.Background(), failed: cancelled(), wantStatuses: 0},
		{name: "the stream is lost", stop: context.Background(), failed: context.Background(),
			setup:   func(_ *session, st *fakeStream) { st.recvErr = errors.New("unexpected EOF") },
			wantErr: "unexpected EOF", wantStatuses: -1},
		{name: "a fatal relation", stop: context.Background(), failed: context.Background(),
			setup: func(_ *session, st *fakeStream) {
				st.msgs = []replication.Message{data(0x1100, &pglogrepl.RelationMessage{RelationID: outboxOID, Namespace: "public",
					RelationName: "outbox", Columns: []*pglogrepl.RelationMessageColumn{{Name: "id"}}})}
			},
			wantErr: "lacks column(s)", wantStatuses: -1},
		{name: "a status update that cannot be sent", stop: context.Background(), failed: context.Background(),
			setup: func(s *session, st *fakeStream) {
				st.sendErr = errors.New("broken pipe")
				s.nextStatus = time.Time{} // due now
			},
			wantErr: "broken pipe", wantStatuses: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, _, _ := newTestSession(t)
			slot := &slotReadBack{st: st}
			s.flushed = slot.flushed
			if tt.setup != nil {
				tt.setup(s, st)
			}
			done := make(chan error, 1)
			go func() { done <- s.run(tt.stop, tt.failed) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("run did not return")
			}
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tt.wantStatuses >= 0 {
				assert.Len(t, st.statuses, tt.wantStatuses)
			}
		})
	}
}

// The heartbeat loop: a failing statement is logged once and the loop goes
// on; a slot dropped or invalidated while streaming ends it with the
// repair; the health it reads is what /status shows.
func TestSessionHeartbeats(t *testing.T) {
	down := errors.New("statement timeout")
	safe := int64(1 << 20)
	tests := []struct {
		name    string
		beats   []any // replication.SlotHealth or error, in turn
		wantErr string
		warns   int
	}{
		{name: "dropped while streaming", beats: []any{down, down, replication.SlotHealth{Exists: true, WALStatus: "reserved", SafeWALSize: &safe}, down, replication.SlotHealth{}},
			wantErr: "it was dropped while the relay streamed", warns: 2},
		{name: "its WAL removed", beats: []any{replication.SlotHealth{Exists: true, WALStatus: "lost"}},
			wantErr: "its WAL was removed (max_slot_wal_keep_size)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _, _ := newTestSession(t)
			var logs strings.Builder
			s.log = slog.New(slog.NewTextHandler(&logs, nil))
			s.cfg.HeartbeatInterval = time.Millisecond
			var seen []replication.SlotHealth
			i := 0
			s.beat = func(context.Context) (replication.SlotHealth, error) {
				b := tt.beats[min(i, len(tt.beats)-1)]
				i++
				if err, ok := b.(error); ok {
					return replication.SlotHealth{}, err
				}
				seen = append(seen, b.(replication.SlotHealth))
				return b.(replication.SlotHealth), nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := s.heartbeats(ctx)
			require.Error(t, err)
			assert.ErrorIs(t, err, fault.ErrFatal)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, tt.warns, strings.Count(logs.String(), "heartbeat statement failed"), "one warning per failing streak")
			require.NotEmpty(t, seen)
			assert.Equal(t, seen[len(seen)-1].WALStatus, s.st.snapshot().WALStatus, "the last health read is shown")
		})
	}

	t.Run("a stop ends it with nil", func(t *testing.T) {
		s, _, _, _ := newTestSession(t)
		s.cfg.HeartbeatInterval = time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		s.beat = func(context.Context) (replication.SlotHealth, error) {
			cancel()
			return replication.SlotHealth{}, down
		}
		assert.NoError(t, s.heartbeats(ctx))
	})
}
