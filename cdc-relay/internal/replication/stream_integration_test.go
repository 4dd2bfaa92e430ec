package replication

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// stallConn is a connection whose writes can be made to block, as on a peer
// that stopped reading; a blocked write ends at the write deadline, as a
// real socket's does.
type stallConn struct {
	net.Conn
	mu       sync.Mutex
	stalled  bool
	deadline time.Time
}

func (c *stallConn) stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stalled = true
}

func (c *stallConn) Write(b []byte) (int, error) {
	for {
		c.mu.Lock()
		stalled, deadline := c.stalled, c.deadline
		c.mu.Unlock()
		if !stalled {
			return c.Conn.Write(b)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// A server that stops reading cannot hold a status update or the close of
// the stream: both end at their deadline.
func TestStreamWritesHaveDeadlines(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	ctx := context.Background()
	ctl, err := Connect(ctx, dbURL)
	require.NoError(t, err)
	defer ctl.Close(ctx)
	require.NoError(t, migrations.Apply(ctx, ctl, migrations.Outbox()))
	target := Target{Slot: testenv.RandomName("t_slot_"), Publication: "cdc_relay_outbox", Schema: "public", Table: "outbox"}
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, target.Slot) })

	cfg, err := pgconn.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.RuntimeParams["replication"] = "database"
	var conn *stallConn
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn = &stallConn{Conn: c}
		return conn, nil
	}
	s, err := openConfig(ctx, cfg)
	require.NoError(t, err)
	created, err := s.CreateSlot(ctx, target.Slot, false)
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx, target, created.ConsistentPoint))
	require.NoError(t, s.SendStatus(ctx, created.ConsistentPoint, created.ConsistentPoint, false))

	conn.stall()
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = s.SendStatus(sctx, created.ConsistentPoint, created.ConsistentPoint, false)
	require.Error(t, err)
	assert.Less(t, time.Since(began), 3*time.Second, "a status update waited past its deadline")

	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	began = time.Now()
	_ = s.Close(cctx)
	assert.Less(t, time.Since(began), 3*time.Second, "closing the stream waited past its deadline")
}

// Receive gives up at its deadline and leaves the stream usable; the end
// of its parent context interrupts a read at once, even one whose
// deadline is far off, and even when the parent ends between two reads.
func TestReceiveDeadlinesAndInterruption(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	ctx := context.Background()
	ctl, err := Connect(ctx, dbURL)
	require.NoError(t, err)
	defer ctl.Close(ctx)
	require.NoError(t, migrations.Apply(ctx, ctl, migrations.Outbox()))
	target := Target{Slot: testenv.RandomName("t_slot_"), Publication: "cdc_relay_outbox", Schema: "public", Table: "outbox"}
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, target.Slot) })
	s, err := Open(ctx, dbURL)
	require.NoError(t, err)
	defer s.Close(ctx)
	created, err := s.CreateSlot(ctx, target.Slot, false)
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx, target, created.ConsistentPoint))

	// Past the deadline with nothing to read (keepalives may come first).
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		_, err := s.Receive(ctx, deadline)
		if err != nil {
			require.ErrorIs(t, err, ErrTimeout)
			break
		}
	}
	// Still usable: a row written now is read. The OnRead hook runs
	// before the socket is read: before each wait for the server, not once
	// per message.
	var hooked atomic.Int64
	s.OnRead(func() { hooked.Add(1) })
	_, err = ctl.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload) VALUES ('t', '1', 't.x', 'k', '{}')`)
	require.NoError(t, err)
	var inserted bool
	messages := 0
	for !inserted {
		msg, err := s.Receive(ctx, time.Now().Add(10*time.Second))
		require.NoError(t, err)
		messages++
		if d, ok := msg.(Data); ok {
			_, inserted = d.Message.(*pglogrepl.InsertMessage)
		}
	}
	assert.Positive(t, hooked.Load(), "the hook never ran")
	assert.LessOrEqual(t, hooked.Load(), int64(messages), "the hook ran more often than the socket can have been read")

	// A parent that ends during a read far from its deadline.
	parent, cancel := context.WithCancel(ctx)
	time.AfterFunc(150*time.Millisecond, cancel)
	began := time.Now()
	for {
		_, err := s.Receive(parent, time.Now().Add(time.Minute))
		if err != nil {
			require.ErrorIs(t, err, context.Canceled)
			break
		}
	}
	assert.Less(t, time.Since(began), 5*time.Second, "the end of the parent did not interrupt the read")
	// A parent already ended is refused without reading.
	_, err = s.Receive(parent, time.Now().Add(time.Minute))
	require.ErrorIs(t, err, context.Canceled)
	// And a new parent reads again.
	_, err = s.Receive(ctx, time.Now().Add(100*time.Millisecond))
	if err != nil {
		require.ErrorIs(t, err, ErrTimeout)
	}
}
