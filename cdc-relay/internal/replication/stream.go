package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
)

// Stream is a replication connection (replication=database): it may create
// the slot, then streams it.
type Stream struct {
	conn *pgconn.PgConn

	// Receive bounds its read by the socket's read deadline, not by a
	// context: pgconn watches a context with a goroutine of its own per
	// call, which was a tenth of the relay's CPU while draining (the
	// goroutine, its wake-ups, a timer per message). The parent context
	// still interrupts a read at once: when it ends, rstop's function sets
	// the deadline in the past. rmu orders that against Receive setting
	// the deadline, so an end is never overwritten by a later deadline.
	rmu       sync.Mutex
	rparent   context.Context
	rstop     func() bool
	rdeadline time.Time

	beforeRead *atomic.Pointer[func()] // see OnRead
}

// Open opens a replication connection to the database of dbURL.
func Open(ctx context.Context, dbURL string) (*Stream, error) {
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "cdc-relay"
	// pgoutput sends values as text, formatted with the walsender's settings:
	// fix them so created_at always parses the same way.
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO, YMD"
	return openConfig(ctx, cfg)
}

func openConfig(ctx context.Context, cfg *pgconn.Config) (*Stream, error) {
	hook := new(atomic.Pointer[func()])
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &hookedConn{Conn: c, beforeRead: hook}, nil
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(err)
	}
	return &Stream{conn: conn, beforeRead: hook}, nil
}

// OnRead makes fn run before each read of the replication socket: pgconn
// reads in chunks, so that is once the messages of the last chunk are all
// handled. The relay sends its corked publishes then (see
// publisher.Publisher.Flush). fn must not block.
func (s *Stream) OnRead(fn func()) { s.beforeRead.Store(&fn) }

// hookedConn is the replication socket, running a hook before each read.
type hookedConn struct {
	net.Conn
	beforeRead *atomic.Pointer[func()]
}

func (c *hookedConn) Read(p []byte) (int, error) {
	if fn := c.beforeRead.Load(); fn != nil {
		(*fn)()
	}
	return c.Conn.Read(p)
}

// System is what IDENTIFY_SYSTEM tells of the server.
type System struct {
	// ID is the system identifier: the same on a primary and its physical
	// standbys, another on any other cluster.
	ID string
	// WALEnd is the server's current WAL position.
	WALEnd LSN
}

// Identify runs IDENTIFY_SYSTEM.
func (s *Stream) Identify(ctx context.Context) (System, error) {
	r, err := pglogrepl.IdentifySystem(ctx, s.conn)
	if err != nil {
		return System{}, fmt.Errorf("identify the server: %w", err)
	}
	return System{ID: r.SystemID, WALEnd: r.XLogPos}, nil
}

// CreatedSlot is a slot created by Stream.CreateSlot.
type CreatedSlot struct {
	// ConsistentPoint is where the slot's stream begins: every transaction
	// committed before it is visible in Snapshot, every one after it is in
	// the stream, none in both.
	ConsistentPoint LSN
	// Snapshot names the exported snapshot. It can be imported (ImportSnapshot)
	// until the next command on this connection.
	Snapshot string
}

// CreateSlot creates the permanent pgoutput slot and exports the snapshot of
// its consistent point. The outbox rows visible in that snapshot are the ones
// the stream will not carry: the relay publishes them before streaming.
// Postgres waits for transactions running at the call to end before it
// reaches the consistent point.
// With failover (Postgres 17 and later) it is a failover slot, synchronised
// to standbys that have sync_replication_slots on.
func (s *Stream) CreateSlot(ctx context.Context, slot string, failover bool) (CreatedSlot, error) {
	// The option list is Postgres 15's syntax; 14 knows only the keyword.
	sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT", slot)
	if failover {
		sql = fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)", slot)
	}
	res, err := pglogrepl.ParseCreateReplicationSlot(s.conn.Exec(ctx, sql))
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" {
			return CreatedSlot{}, fmt.Errorf("%w: slot %q was created by another connection meanwhile", fault.ErrSlotActive, slot)
		}
		return CreatedSlot{}, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return CreatedSlot{}, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	return CreatedSlot{ConsistentPoint: lsn, Snapshot: res.SnapshotName}, nil
}

// SetFailover makes an existing slot a failover slot (Postgres 17 and
// later). The slot must not be streaming.
func (s *Stream) SetFailover(ctx context.Context, slot string) error {
	if _, err := s.conn.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER true)", slot)).ReadAll(); err != nil {
		return fmt.Errorf("make slot %q a failover slot: %w", slot, err)
	}
	return nil
}

// Start starts streaming the slot from start with pgoutput protocol version
// 1 (never streaming mode, so only committed transactions are sent, whole
// and in commit order), including logical decoding messages for the
// heartbeat. Postgres starts at the slot's confirmed position when start is
// behind it.
func (s *Stream) Start(ctx context.Context, t Target, start LSN) error {
	err := pglogrepl.StartReplication(ctx, s.conn, t.Slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(t.Publication),
			"messages 'true'",
		},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return fmt.Errorf("%w: %s", fault.ErrSlotActive, pgErr.Message)
		}
		if errors.As(err, &pgErr) && pgErr.Code == "42704" {
			return fault.SlotLost(t.Slot, "it was dropped", fault.RepairHint{})
		}
		return fmt.Errorf("start replication on slot %q: %w", t.Slot, err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ErrTimeout is returned by Receive when its deadline passed with nothing read.
var ErrTimeout = errors.New("no replication message before the deadline")

// ErrStreamEnded reports that the server ended the replication stream
// (CopyDone or CommandComplete): it is shutting down, or its walsender was
// stopped. The error names the cause when the server sent one.
var ErrStreamEnded = errors.New("the server ended the replication stream")

// Receive reads the next message until deadline (or an earlier one it is
// still using): a Keepalive or a Data.
func (s *Stream) Receive(parent context.Context, deadline time.Time) (Message, error) {
	if err := s.armRead(parent, deadline); err != nil {
		return nil, fmt.Errorf("receive from replication stream: %w", err)
	}
	raw, err := s.conn.ReceiveMessage(context.Background())
	if err != nil {
		if pgconn.Timeout(err) {
			if perr := parent.Err(); perr != nil {
				return nil, fmt.Errorf("receive from replication stream: %w", perr)
			}
			return nil, ErrTimeout
		}
		return nil, fmt.Errorf("receive from replication stream: %w", err)
	}
	switch m := raw.(type) {
	case *pgproto3.CopyData:
		return Decode(m.Data)
	case *pgproto3.ErrorResponse:
		return nil, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return nil, s.ended(parent, "CopyDone")
	case *pgproto3.CommandComplete:
		return nil, s.ended(parent, "CommandComplete")
	default:
		return nil, fmt.Errorf("replication stream: unexpected message %T", raw)
	}
}

// ended reads what the server sends after the end of the stream, for a
// moment, to name the cause: a shutting-down server sends an ErrorResponse
// (57P01, terminating connection due to administrator command).
func (s *Stream) ended(parent context.Context, what string) error {
	s.disarmRead()
	ctx, cancel := context.WithTimeout(parent, 200*time.Millisecond)
	defer cancel()
	for range 4 {
		raw, err := s.conn.ReceiveMessage(ctx)
		// pgconn returns a FATAL ErrorResponse (what a shutting-down
		// server sends) as the error of the read, having closed the
		// connection; any other arrives as a message.
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			return fmt.Errorf("%w (%s): %w", ErrStreamEnded, what, pgErr)
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("%w (%s, then it closed the connection: the server is shutting down or restarting)", ErrStreamEnded, what)
		case err != nil:
			return fmt.Errorf("%w (%s: its walsender ended the stream)", ErrStreamEnded, what)
		}
		if e, ok := raw.(*pgproto3.ErrorResponse); ok {
			return fmt.Errorf("%w (%s): %w", ErrStreamEnded, what, pgconn.ErrorResponseToPgError(e))
		}
	}
	return fmt.Errorf("%w (%s)", ErrStreamEnded, what)
}

// armRead sets the socket's read deadline for one Receive, and makes sure
// that parent's end interrupts the read.
func (s *Stream) armRead(parent context.Context, deadline time.Time) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if parent != s.rparent {
		if s.rstop != nil {
			s.rstop()
		}
		s.rparent = parent
		s.rstop = context.AfterFunc(parent, func() {
			s.rmu.Lock()
			defer s.rmu.Unlock()
			// A parent replaced meanwhile (its end already under way when
			// rstop was called) must not cut the new parent's read short.
			if s.rparent != parent {
				return
			}
			s.rdeadline = time.Unix(1, 0)
			_ = s.conn.Conn().SetReadDeadline(s.rdeadline)
		})
	}
	if err := parent.Err(); err != nil {
		return err
	}
	if !deadline.Equal(s.rdeadline) {
		if err := s.conn.Conn().SetReadDeadline(deadline); err != nil {
			return err
		}
		s.rdeadline = deadline
	}
	return nil
}

// disarmRead clears Receive's deadline and its watch of a parent, before
// the connection is used otherwise.
func (s *Stream) disarmRead() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.rstop != nil {
		s.rstop()
	}
	s.rparent, s.rstop, s.rdeadline = nil, nil, time.Time{}
	_ = s.conn.Conn().SetReadDeadline(time.Time{})
}

// statusWriteTimeout bounds a status update when ctx has no deadline: a
// server that stopped reading must not hold the relay.
const statusWriteTimeout = 10 * time.Second

// SendStatus reports positions to the server. All three are set explicitly:
// pglogrepl fills zero fields with the write position, which would report
// unconfirmed data as flushed. The write has a deadline (ctx's, or
// statusWriteTimeout): pglogrepl ignores the context, and a server that
// stopped reading would otherwise hold it forever.
func (s *Stream) SendStatus(ctx context.Context, write, flush LSN, replyRequested bool) error {
	if flush == 0 {
		return errors.New("send standby status: refusing to report flush position 0")
	}
	write = max(write, flush)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(statusWriteTimeout)
	}
	nc := s.conn.Conn()
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("send standby status (flush %s): %w", flush, err)
	}
	defer nc.SetWriteDeadline(time.Time{})
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: write,
		WALFlushPosition: flush,
		WALApplyPosition: flush,
		ClientTime:       time.Now(),
		ReplyRequested:   replyRequested,
	})
	if err != nil {
		return fmt.Errorf("send standby status (flush %s): %w", flush, err)
	}
	return nil
}

// closeTimeout bounds Close when ctx has no deadline.
const closeTimeout = 5 * time.Second

// Close ends the stream and the connection, within ctx's deadline or
// closeTimeout.
func (s *Stream) Close(ctx context.Context) error {
	s.disarmRead()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, closeTimeout)
		defer cancel()
	}
	return s.conn.Close(ctx)
}
