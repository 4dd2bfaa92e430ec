// Package replication is the relay's side of Postgres logical replication:
// it checks and prepares the database (wal_level, table, publication, slot),
// and reads the pgoutput stream (protocol version 1) of one slot.
package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Errors callers branch on. Fatal ones need an operator; the relay stops with
// their message. ErrSlotActive means another relay holds the slot.
var (
	ErrFatal      = errors.New("fatal: retrying will not help")
	ErrSlotActive = errors.New("replication slot is in use by another connection")
)

// fatalError is a problem that retrying will not fix; its message says what
// the operator should do, and it matches ErrFatal.
type fatalError struct{ err error }

func (e *fatalError) Error() string        { return e.err.Error() }
func (e *fatalError) Unwrap() error        { return e.err }
func (e *fatalError) Is(target error) bool { return target == ErrFatal }

// Fatal marks err as one that retrying will not fix.
func Fatal(err error) error { return &fatalError{err: err} }

func fatal(format string, args ...any) error { return Fatal(fmt.Errorf(format, args...)) }

// Target names what the relay reads.
type Target struct {
	Slot        string
	Publication string
	Schema      string
	Table       string
}

func (t Target) qualified() string { return pgx.Identifier{t.Schema, t.Table}.Sanitize() }

// Slot describes the slot found or created by Prepare.
type Slot struct {
	Name             string
	Database         string
	ConfirmedFlush   LSN
	Created          bool
	RetainedWALBytes int64
	// RowsAtCreation counts outbox rows present right after the slot was
	// created: written while it was being created, some may predate its
	// consistent point and not be streamed.
	RowsAtCreation struct {
		Count  int64
		Oldest *time.Time
	}
}

// Prepare checks the database on a regular connection and creates what is
// missing: the publication first, then the slot (pgoutput reads publications
// with the historic snapshot of each transaction, so a publication created
// after the slot makes decoding fail).
func Prepare(ctx context.Context, dbURL string, t Target) (Slot, error) {
	conn, err := Connect(ctx, dbURL)
	if err != nil {
		return Slot{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return PrepareConn(ctx, conn, t)
}

// PrepareConn is Prepare on an open connection.
func PrepareConn(ctx context.Context, conn *pgx.Conn, t Target) (Slot, error) {
	return prepare(ctx, conn, t, false)
}

// CreateSlot is the operator's `cdc-relay slot create`: Prepare's checks and
// creations, except that a missing slot is created even when the outbox
// already holds rows. The operator has decided (a first start on a busy
// outbox, or the repair of a lost slot followed by a replay).
func CreateSlot(ctx context.Context, dbURL string, t Target) (Slot, error) {
	conn, err := Connect(ctx, dbURL)
	if err != nil {
		return Slot{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return prepare(ctx, conn, t, true)
}

func prepare(ctx context.Context, conn *pgx.Conn, t Target, operator bool) (Slot, error) {
	var walLevel, db string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_database()`).Scan(&walLevel, &db); err != nil {
		return Slot{}, fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return Slot{}, fatal("wal_level is %q, logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical; and restart Postgres", walLevel)
	}
	if err := checkTable(ctx, conn, t); err != nil {
		return Slot{}, err
	}
	if err := ensurePublication(ctx, conn, t); err != nil {
		return Slot{}, err
	}
	return ensureSlot(ctx, conn, t, db, operator)
}

func checkTable(ctx context.Context, conn *pgx.Conn, t Target) error {
	var cols []string
	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2`, t.Schema, t.Table)
	if err != nil {
		return fmt.Errorf("read columns of %s.%s: %w", t.Schema, t.Table, err)
	}
	cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read columns of %s.%s: %w", t.Schema, t.Table, err)
	}
	if len(cols) == 0 {
		return fatal("table %s.%s does not exist (or the relay's role cannot see it): create it with the outbox migration (design §3) or set CDC_RELAY_TABLE", t.Schema, t.Table)
	}
	have := map[string]bool{}
	for _, c := range cols {
		have[c] = true
	}
	var missing []string
	for _, c := range outbox.Columns {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fatal("table %s.%s lacks column(s) %s of the outbox table (design §3)", t.Schema, t.Table, strings.Join(missing, ", "))
	}
	return nil
}

func ensurePublication(ctx context.Context, conn *pgx.Conn, t Target) error {
	var exists, inserts bool
	err := conn.QueryRow(ctx, `SELECT true, pubinsert FROM pg_publication WHERE pubname = $1`, t.Publication).Scan(&exists, &inserts)
	if errors.Is(err, pgx.ErrNoRows) {
		stmt := fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')`, pgx.Identifier{t.Publication}.Sanitize(), t.qualified())
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create publication %q (as the table's owner, run: %s): %w", t.Publication, stmt, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication %q: %w", t.Publication, err)
	}
	if !inserts {
		return fatal("publication %q does not publish inserts: ALTER PUBLICATION %s SET (publish = 'insert')", t.Publication, t.Publication)
	}
	var holds bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, t.Publication, t.Schema, t.Table).Scan(&holds); err != nil {
		return fmt.Errorf("read tables of publication %q: %w", t.Publication, err)
	}
	if !holds {
		return fatal("publication %q does not include table %s.%s: ALTER PUBLICATION %s ADD TABLE %s.%s", t.Publication, t.Schema, t.Table, t.Publication, t.Schema, t.Table)
	}
	return nil
}

func ensureSlot(ctx context.Context, conn *pgx.Conn, t Target, db string, operator bool) (Slot, error) {
	s := Slot{Name: t.Slot, Database: db}
	var (
		plugin, slotDB, walStatus *string
		confirmed                 *string
		retained                  *int64
		active                    bool
		pid                       *int32
	)
	err := conn.QueryRow(ctx, `SELECT plugin, database, wal_status, confirmed_flush_lsn::text,
			(pg_current_wal_lsn() - restart_lsn)::bigint, active, active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, t.Slot).Scan(&plugin, &slotDB, &walStatus, &confirmed, &retained, &active, &pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return createSlot(ctx, conn, t, db, operator)
	}
	if err != nil {
		return Slot{}, fmt.Errorf("read replication slot %q: %w", t.Slot, err)
	}
	if plugin == nil || *plugin != "pgoutput" {
		return Slot{}, fatal("replication slot %q is not a pgoutput logical slot: drop it or set CDC_RELAY_SLOT to another name", t.Slot)
	}
	if slotDB == nil || *slotDB != db {
		return Slot{}, fatal("replication slot %q belongs to database %q, not %q: set CDC_RELAY_SLOT to a slot of this database", t.Slot, deref(slotDB), db)
	}
	if walStatus != nil && *walStatus == "lost" || confirmed == nil {
		return Slot{}, SlotLost(t.Slot, "its WAL was removed (max_slot_wal_keep_size)")
	}
	if active {
		// Checked here, before a replication connection is opened, so a
		// standby polling for the slot costs one query.
		return Slot{}, fmt.Errorf("%w: slot %q is streaming to pid %d", ErrSlotActive, t.Slot, derefInt(pid))
	}
	s.ConfirmedFlush, err = pglogrepl.ParseLSN(*confirmed)
	if retained != nil {
		s.RetainedWALBytes = *retained
	}
	return s, err
}

// SlotLost is the fatal error of a slot that can no longer deliver what was
// written since it last streamed; it names the repair (design §4.6).
func SlotLost(slot, why string) error {
	return fatal("replication slot %q is lost: %s; rows written since it last streamed are not in its stream. "+
		"Repair: `cdc-relay slot create` (after `cdc-relay slot drop --force` if it still exists), "+
		"then `cdc-relay replay --since <created_at of the last row consumers received>`, then start the relay; consumers dedup the overlap by message id", slot, why)
}

// createSlot creates the missing slot, unless the outbox already holds rows:
// then the slot was lost (dropped, or missing after a failover) or never
// streamed those rows, and creating it silently would skip them. An empty
// outbox is the first start. The relay needs only SELECT for this check.
func createSlot(ctx context.Context, conn *pgx.Conn, t Target, db string, operator bool) (Slot, error) {
	var oldest time.Time
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT created_at FROM %s ORDER BY created_at LIMIT 1`, t.qualified())).Scan(&oldest)
	switch {
	case operator:
	case err == nil:
		return Slot{}, SlotLost(t.Slot, fmt.Sprintf("it does not exist but table %s.%s holds rows (oldest from %s); "+
			"if this is a first start on an outbox that already has rows, create the slot with `cdc-relay slot create` and replay what consumers should get", t.Schema, t.Table, oldest.UTC().Format(time.RFC3339)))
	case !errors.Is(err, pgx.ErrNoRows):
		return Slot{}, fmt.Errorf("read %s.%s: %w", t.Schema, t.Table, err)
	}
	var lsn string
	if err := conn.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, t.Slot).Scan(&lsn); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // another relay created it meanwhile
			return ensureSlot(ctx, conn, t, db, operator)
		}
		return Slot{}, fmt.Errorf("create replication slot %q: %w", t.Slot, err)
	}
	s := Slot{Name: t.Slot, Database: db, Created: true}
	if s.ConfirmedFlush, err = pglogrepl.ParseLSN(lsn); err != nil {
		return Slot{}, err
	}
	// Rows committed between the emptiness check and the slot's consistent
	// point are not in its stream; they can only be found by age.
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT min(created_at), count(*) FROM %s`, t.qualified())).Scan(&s.RowsAtCreation.Oldest, &s.RowsAtCreation.Count)
	if err != nil {
		return Slot{}, fmt.Errorf("read %s.%s after creating the slot: %w", t.Schema, t.Table, err)
	}
	return s, nil
}

func derefInt(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// connectTimeout bounds a connection attempt when the URL sets none
// (connect_timeout), so an unreachable server is retried rather than waited on.
const connectTimeout = 10 * time.Second

// Connect opens a regular connection (for checks, heartbeats, admin).
func Connect(ctx context.Context, dbURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	cfg.RuntimeParams["application_name"] = "cdc-relay"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(err)
	}
	return conn, nil
}

// connectError marks as fatal what retrying cannot fix: the server refused
// the credentials or the database does not exist (a bad CDC_RELAY_DATABASE_URL).
func connectError(err error) error {
	err = fmt.Errorf("connect to database: %w", err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "3D000":
			return Fatal(fmt.Errorf("%w; check CDC_RELAY_DATABASE_URL", err))
		}
	}
	return err
}

// Stream is a replication connection streaming one slot.
type Stream struct {
	conn *pgconn.PgConn

	// A deadline context is reused across Receive calls until it expires:
	// making one (and its timer) per message was a measurable part of the
	// relay's CPU while draining.
	rctx      context.Context
	rparent   context.Context
	rdeadline time.Time
	rcancel   context.CancelFunc
}

// Start opens a replication connection (replication=database) and starts
// streaming the slot from start with pgoutput protocol version 1 (never
// streaming mode, so only committed transactions are sent, whole and in
// commit order), including logical decoding messages for the heartbeat.
func Start(ctx context.Context, dbURL string, t Target, start LSN) (*Stream, error) {
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
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(err)
	}
	err = pglogrepl.StartReplication(ctx, conn, t.Slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(t.Publication),
			"messages 'true'",
		},
	})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return nil, fmt.Errorf("%w: %s", ErrSlotActive, pgErr.Message)
		}
		if errors.As(err, &pgErr) && pgErr.Code == "42704" {
			return nil, SlotLost(t.Slot, "it was dropped")
		}
		return nil, fmt.Errorf("start replication on slot %q: %w", t.Slot, err)
	}
	return &Stream{conn: conn}, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Keepalive is a primary keepalive message.
type Keepalive struct {
	ServerWALEnd   LSN
	ReplyRequested bool
}

// Data is one decoded pgoutput message with its WAL position.
type Data struct {
	WALStart LSN
	Message  pglogrepl.Message
}

// ErrTimeout is returned by Receive when its deadline passed with nothing read.
var ErrTimeout = errors.New("no replication message before the deadline")

// Receive reads the next message until deadline (or an earlier one it is
// still using): a Keepalive or a Data.
func (s *Stream) Receive(parent context.Context, deadline time.Time) (any, error) {
	ctx := s.receiveContext(parent, deadline)
	raw, err := s.conn.ReceiveMessage(ctx)
	if err != nil {
		if pgconn.Timeout(err) && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ErrTimeout
		}
		return nil, fmt.Errorf("receive from replication stream: %w", err)
	}
	switch m := raw.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return nil, errors.New("receive from replication stream: empty CopyData")
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return nil, fmt.Errorf("parse keepalive: %w", err)
			}
			return Keepalive{ServerWALEnd: ka.ServerWALEnd, ReplyRequested: ka.ReplyRequested}, nil
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return nil, fmt.Errorf("parse XLogData: %w", err)
			}
			msg, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				return nil, fmt.Errorf("decode pgoutput message at %s: %w", xld.WALStart, err)
			}
			return Data{WALStart: xld.WALStart, Message: msg}, nil
		default:
			return nil, fmt.Errorf("receive from replication stream: unknown CopyData type %q", m.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return nil, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return nil, errors.New("replication stream ended by the server")
	default:
		return nil, fmt.Errorf("replication stream: unexpected message %T", raw)
	}
}

func (s *Stream) receiveContext(parent context.Context, deadline time.Time) context.Context {
	if s.rctx != nil && s.rparent == parent && !s.rdeadline.After(deadline) && s.rctx.Err() == nil {
		return s.rctx
	}
	if s.rcancel != nil {
		s.rcancel()
	}
	s.rctx, s.rcancel = context.WithDeadline(parent, deadline)
	s.rparent, s.rdeadline = parent, deadline
	return s.rctx
}

// SendStatus reports positions to the server. All three are set explicitly:
// pglogrepl fills zero fields with the write position, which would report
// unconfirmed data as flushed.
func (s *Stream) SendStatus(ctx context.Context, write, flush LSN, replyRequested bool) error {
	if flush == 0 {
		return errors.New("send standby status: refusing to report flush position 0")
	}
	write = max(write, flush)
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

// Close ends the stream and the connection.
func (s *Stream) Close(ctx context.Context) error {
	if s.rcancel != nil {
		s.rcancel()
	}
	return s.conn.Close(ctx)
}

// HeartbeatPrefix is the prefix of the relay's logical decoding messages.
const HeartbeatPrefix = "cdc-relay-heartbeat"

// SlotHealth is what the heartbeat statement reads of the slot.
type SlotHealth struct {
	Exists           bool
	WALStatus        string // reserved, extended, unreserved, lost
	SafeWALSize      *int64 // bytes before invalidation; nil when max_slot_wal_keep_size is -1
	RetainedWALBytes int64  // current WAL − restart_lsn
	LagBytes         int64  // current WAL − confirmed_flush_lsn
}

// Heartbeat writes a transactional logical decoding message carrying
// payload, which the slot's stream reads back (proof the stream moves), and
// reads the slot's health, in one statement: on an idle database this is
// all the relay runs.
func Heartbeat(ctx context.Context, conn *pgx.Conn, slot, payload string) (SlotHealth, error) {
	var (
		h                   SlotHealth
		walStatus           *string
		retained, lag, safe *int64
	)
	err := conn.QueryRow(ctx, `SELECT s.slot_name IS NOT NULL, s.wal_status, s.safe_wal_size,
			(pg_current_wal_lsn() - s.restart_lsn)::bigint, (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint
		FROM (SELECT pg_logical_emit_message(true, $1, $2)) AS hb
		LEFT JOIN pg_replication_slots s ON s.slot_name = $3`, HeartbeatPrefix, payload, slot).
		Scan(&h.Exists, &walStatus, &safe, &retained, &lag)
	if err != nil {
		return SlotHealth{}, fmt.Errorf("heartbeat: %w", err)
	}
	h.WALStatus = deref(walStatus)
	h.SafeWALSize = safe
	if retained != nil {
		h.RetainedWALBytes = *retained
	}
	if lag != nil {
		h.LagBytes = *lag
	}
	return h, nil
}
