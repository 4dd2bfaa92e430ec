package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// fakeStream is a replication stream scripted by the test: Receive hands
// out msgs in order, then times out; SendStatus records each report.
type fakeStream struct {
	msgs     []replication.Message
	statuses []status
	sendErr  error
	recvErr  error // once msgs are out: returned instead of a timeout
}

type status struct{ write, flush replication.LSN }

func (f *fakeStream) Receive(ctx context.Context, _ time.Time) (replication.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(f.msgs) == 0 {
		if f.recvErr != nil {
			return nil, f.recvErr
		}
		return nil, replication.ErrTimeout
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, nil
}

func (f *fakeStream) SendStatus(_ context.Context, write, flush replication.LSN, _ bool) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	f.statuses = append(f.statuses, status{write, flush})
	return nil
}

// fakeBroker is a publisher with a window of room places; what is
// published is kept, confirmed by the test through session.Confirmed.
type fakeBroker struct {
	room       int // places TryAcquire gives before the window is full
	acquireErr error
	waits      int // Acquire calls that fail with acquireErr before one succeeds
	published  []published
	inFlight   int
	flushes    int
	publishErr error
}

type published struct {
	exchange, key, route string
	msg                  amqp.Publishing
}

func (f *fakeBroker) TryAcquire() bool {
	if f.room == 0 {
		return false
	}
	f.room--
	return true
}

func (f *fakeBroker) Acquire(ctx context.Context) error {
	if f.waits > 0 {
		f.waits--
		return f.acquireErr
	}
	return nil
}

func (f *fakeBroker) PublishTo(_ context.Context, exchange, key, route string, msg amqp.Publishing, _ time.Time) (uint64, error) {
	if f.publishErr != nil {
		return 0, f.publishErr
	}
	f.published = append(f.published, published{exchange, key, route, msg})
	f.inFlight++
	return uint64(len(f.published)), nil
}

func (f *fakeBroker) InFlight() int                                          { return f.inFlight }
func (f *fakeBroker) Flush()                                                 { f.flushes++ }
func (f *fakeBroker) FrameMax() int                                          { return 131072 }
func (f *fakeBroker) Abort()                                                 {}
func (f *fakeBroker) WatchParked(context.Context, func(amqp.Delivery)) error { return nil }

// countingObserver counts what the session reports.
type countingObserver struct {
	nopObserver
	heartbeats, published, positions int
}

func (o *countingObserver) HeartbeatSeen(time.Time) { o.heartbeats++ }
func (o *countingObserver) Published(string)        { o.published++ }
func (o *countingObserver) Positions(checkpoint.LSN, checkpoint.LSN, checkpoint.LSN) {
	o.positions++
}

const outboxOID = 16384

func newTestSession(t *testing.T, msgs ...replication.Message) (*session, *fakeStream, *fakeBroker, *countingObserver) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Slot, cfg.MaxInFlight = "s1", 10
	st := &fakeStream{msgs: msgs}
	br := &fakeBroker{room: 1000}
	obs := &countingObserver{}
	s := &session{
		cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), obs: obs,
		st: &state{name: cfg.Name, slot: cfg.Slot}, mem: &memory{},
		stream: st, pub: br, tracker: checkpoint.New(0x1000),
		target:    replication.Target{Slot: cfg.Slot, Publication: cfg.Publication, Schema: "public", Table: "outbox"},
		mapper:    outbox.Mapper{Source: "/cdc-relay/db/public.outbox", Groups: outbox.AllGroups},
		root:      outboxOID,
		relations: map[uint32]*outbox.Layout{},
		streaming: true, drain: time.Second, sentFlush: 0x1000,
	}
	return s, st, br, obs
}

func data(walStart replication.LSN, m pglogrepl.Message) replication.Message {
	return replication.Data{WALStart: walStart, Message: m}
}

func outboxRelation() *pglogrepl.RelationMessage {
	rel := &pglogrepl.RelationMessage{RelationID: outboxOID, Namespace: "public", RelationName: "outbox"}
	for _, c := range outbox.Columns {
		rel.Columns = append(rel.Columns, &pglogrepl.RelationMessageColumn{Name: c})
	}
	return rel
}

func insert(rel uint32, id, key string) *pglogrepl.InsertMessage {
	vals := map[string]string{"id": id, "aggregate_type": "order", "aggregate_id": "7", "event_type": "order.created",
		"routing_key": key, "payload": `{"a": 1}`, "headers": `{}`, "created_at": "2026-12-02 10:00:00.123456+00"}
	tuple := &pglogrepl.TupleData{}
	for _, c := range outbox.Columns {
		tuple.Columns = append(tuple.Columns, &pglogrepl.TupleDataColumn{DataType: 't', Data: []byte(vals[c])})
	}
	return &pglogrepl.InsertMessage{RelationID: rel, Tuple: tuple}
}

// handleAll runs msgs through the session as the stream loop does.
func handleAll(t *testing.T, s *session, msgs ...replication.Message) error {
	t.Helper()
	for _, m := range msgs {
		if err := s.dispatch(context.Background(), m); err != nil {
			return err
		}
	}
	return nil
}

// A transaction's rows are published in order with their mapping, and its
// end is reported once the broker confirmed them all, not before.
func TestSessionPublishesATransactionAndReportsItsEnd(t *testing.T) {
	s, st, br, obs := newTestSession(t)
	require.NoError(t, handleAll(t, s,
		data(0x1100, outboxRelation()),
		data(0x1100, &pglogrepl.BeginMessage{Xid: 42, CommitTime: time.Now()}),
		data(0x1110, insert(outboxOID, "a", "k.1")),
		data(0x1120, insert(outboxOID, "b", "k.2")),
		data(0x1130, &pglogrepl.CommitMessage{TransactionEndLSN: 0x1140, CommitTime: time.Now()}),
	))
	require.Len(t, br.published, 2)
	assert.Equal(t, "a", br.published[0].msg.MessageId)
	assert.Equal(t, "k.1", br.published[0].key)
	assert.Equal(t, "order/7", br.published[0].route, "routed by aggregate")
	assert.Equal(t, "order.created", br.published[1].msg.Type)
	assert.Equal(t, 2, obs.published)

	s.lastStatus = time.Now().Add(-time.Hour)
	_, err := s.report(context.Background(), false)
	require.NoError(t, err)
	for _, r := range st.statuses {
		assert.Less(t, r.flush, replication.LSN(0x1140), "reported before every row was confirmed")
	}
	s.Confirmed(1, time.Now(), time.Now())
	_, err = s.report(context.Background(), false)
	require.NoError(t, err)
	for _, r := range st.statuses {
		assert.Less(t, r.flush, replication.LSN(0x1140), "reported with one row unconfirmed")
	}
	s.Confirmed(2, time.Now(), time.Now())
	s.lastStatus = time.Now().Add(-time.Hour)
	_, err = s.report(context.Background(), false)
	require.NoError(t, err)
	require.NotEmpty(t, st.statuses)
	assert.Equal(t, replication.LSN(0x1140), st.statuses[len(st.statuses)-1].flush)
}

// The stream's branches that are not a plain outbox row.
func TestSessionStreamBranches(t *testing.T) {
	tests := []struct {
		name    string
		msgs    []replication.Message
		wantErr string
		check   func(t *testing.T, s *session, st *fakeStream, br *fakeBroker, obs *countingObserver)
	}{
		{name: "an insert before its relation stops the session",
			msgs:    []replication.Message{data(0x1100, &pglogrepl.BeginMessage{Xid: 1}), data(0x1110, insert(99, "a", "k"))},
			wantErr: "insert into relation 99 before its relation message"},
		{name: "an outbox without the outbox's columns is fatal",
			msgs: []replication.Message{data(0x1100, &pglogrepl.RelationMessage{RelationID: outboxOID, Namespace: "public", RelationName: "outbox",
				Columns: []*pglogrepl.RelationMessageColumn{{Name: "id"}}})},
			wantErr: "lacks column(s)"},
		{name: "a row that cannot be decoded stops the relay, naming it (poison=stop)",
			msgs: []replication.Message{data(0x1100, outboxRelation()), data(0x1100, &pglogrepl.BeginMessage{Xid: 3}),
				data(0x1110, func() *pglogrepl.InsertMessage {
					m := insert(outboxOID, "a", "k")
					m.Tuple.Columns[7].Data = []byte("soon")
					return m
				}())},
			wantErr: "CDC_RELAY_POISON=park"},
		{name: "our heartbeat is seen, another relay's is not",
			msgs: []replication.Message{
				data(0x1100, &pglogrepl.LogicalDecodingMessage{Prefix: replication.HeartbeatPrefix, Content: []byte("s1 123")}),
				data(0x1100, &pglogrepl.LogicalDecodingMessage{Prefix: replication.HeartbeatPrefix, Content: []byte("s10 123")}),
				data(0x1100, &pglogrepl.LogicalDecodingMessage{Prefix: "other", Content: []byte("s1 1")}),
			},
			check: func(t *testing.T, s *session, _ *fakeStream, _ *fakeBroker, obs *countingObserver) {
				assert.Equal(t, 1, obs.heartbeats)
				assert.False(t, s.st.heartbeat.IsZero())
			}},
		{name: "a keepalive asking for a reply is answered at once",
			msgs: []replication.Message{replication.Keepalive{ServerWALEnd: 0x2000, ReplyRequested: true}},
			check: func(t *testing.T, _ *session, st *fakeStream, _ *fakeBroker, _ *countingObserver) {
				require.Len(t, st.statuses, 1)
			}},
		{name: "a keepalive without a reply request only moves the server's end",
			msgs: []replication.Message{replication.Keepalive{ServerWALEnd: 0x2000}},
			check: func(t *testing.T, s *session, st *fakeStream, _ *fakeBroker, _ *countingObserver) {
				s.lastStatus, s.nextStatus = time.Now(), time.Now().Add(time.Hour)
				assert.Equal(t, replication.LSN(0x2000), s.tracker.Positions().ServerEnd)
				assert.Empty(t, st.statuses)
			}},
		{name: "updates, deletes and truncates are not events",
			msgs: []replication.Message{data(0x1100, outboxRelation()), data(0x1100, &pglogrepl.BeginMessage{Xid: 4}),
				data(0x1110, &pglogrepl.UpdateMessage{RelationID: outboxOID}), data(0x1110, &pglogrepl.DeleteMessage{RelationID: outboxOID}),
				data(0x1110, &pglogrepl.TruncateMessage{}), data(0x1120, &pglogrepl.CommitMessage{TransactionEndLSN: 0x1130})},
			check: func(t *testing.T, s *session, _ *fakeStream, br *fakeBroker, _ *countingObserver) {
				assert.Empty(t, br.published)
				assert.Equal(t, replication.LSN(0x1130), s.tracker.Positions().Confirmed, "an empty transaction is confirmed at once")
			}},
		{name: "a publish that fails ends the session as the broker's",
			msgs: []replication.Message{data(0x1100, outboxRelation()), data(0x1100, &pglogrepl.BeginMessage{Xid: 5}),
				data(0x1110, insert(outboxOID, "a", "k"))},
			wantErr: "broken pipe",
			check: func(t *testing.T, _ *session, _ *fakeStream, br *fakeBroker, _ *countingObserver) {
				assert.Empty(t, br.published)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, br, obs := newTestSession(t)
			if tt.wantErr == "broken pipe" {
				br.publishErr = errors.New("write: broken pipe")
			}
			s.nextStatus = time.Now().Add(time.Hour)
			err := handleAll(t, s, tt.msgs...)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tt.check != nil {
				tt.check(t, s, st, br, obs)
			}
		})
	}
}

// report sends a moved position at most once per statusGap, at once when a
// window's worth of confirmed messages waits, on the periodic interval
// when nothing moved, when forced; and nothing before the stream started.
func TestReportCadence(t *testing.T) {
	tests := []struct {
		name      string
		streaming bool
		confirmed int           // rows of one transaction confirmed before the report
		sinceLast time.Duration // since the last status
		periodic  bool          // the periodic interval is due
		force     bool
		want      bool
	}{
		{name: "moved, but reported just now", streaming: true, confirmed: 2, sinceLast: time.Millisecond},
		{name: "moved, a gap since the last report", streaming: true, confirmed: 2, sinceLast: statusGap, want: true},
		{name: "moved by a window's worth just after a report", streaming: true, confirmed: 10, sinceLast: time.Millisecond, want: true},
		{name: "nothing moved, the interval is due", streaming: true, sinceLast: time.Hour, periodic: true, want: true},
		{name: "nothing moved, the interval is not due", streaming: true, sinceLast: time.Hour},
		{name: "forced", streaming: true, sinceLast: time.Millisecond, force: true, want: true},
		{name: "before the stream started", confirmed: 2, sinceLast: time.Hour, periodic: true, force: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, _, obs := newTestSession(t)
			msgs := []replication.Message{data(0x1100, outboxRelation()), data(0x1100, &pglogrepl.BeginMessage{Xid: 1})}
			for i := range max(tt.confirmed, 1) {
				msgs = append(msgs, data(replication.LSN(0x1110+i), insert(outboxOID, string(rune('a'+i)), "k")))
			}
			msgs = append(msgs, data(0x1200, &pglogrepl.CommitMessage{TransactionEndLSN: 0x1210}))
			require.NoError(t, handleAll(t, s, msgs...))
			for seq := range tt.confirmed {
				s.Confirmed(uint64(seq+1), time.Now(), time.Now())
			}
			s.streaming = tt.streaming
			s.lastStatus = time.Now().Add(-tt.sinceLast)
			s.nextStatus = time.Now().Add(time.Hour)
			if tt.periodic {
				s.nextStatus = time.Now().Add(-time.Second)
			}
			deadline, err := s.report(context.Background(), tt.force)
			require.NoError(t, err)
			assert.Equal(t, tt.want, len(st.statuses) == 1, "statuses sent: %v", st.statuses)
			assert.Equal(t, tt.want, obs.positions == 1)
			assert.False(t, deadline.IsZero())
			if tt.want && tt.confirmed > 0 {
				assert.Equal(t, replication.LSN(0x1210), st.statuses[0].flush)
			}
		})
	}
	s, st, _, _ := newTestSession(t)
	st.sendErr = errors.New("connection reset")
	_, err := s.report(context.Background(), true)
	assert.ErrorContains(t, err, "connection reset", "a status that cannot be sent ends the session")
}

// With the window full, the session sends what the connection holds back
// before it waits (the broker must have a message to confirm it), and it
// reports the position while it waits.
func TestAcquireWhileTheWindowIsFull(t *testing.T) {
	s, st, br, _ := newTestSession(t)
	br.room = 0
	require.NoError(t, s.acquire(context.Background()))
	assert.Equal(t, 1, br.flushes)

	// The window stays full for three waits: the position is reported
	// after each, and held-back publishes are sent before each.
	br.acquireErr, br.waits = context.DeadlineExceeded, 3
	s.nextStatus = time.Now().Add(-time.Second) // the periodic report is due
	require.NoError(t, s.acquire(context.Background()))
	assert.Len(t, st.statuses, 1, "reported once (then the interval is not due again)")
	assert.Equal(t, 1+4, br.flushes)

	// A stop while it waits ends the wait.
	br.waits = 1000
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	br.acquireErr = context.Canceled
	assert.ErrorIs(t, s.acquire(ctx), context.Canceled)
}
