// Package replication is the relay's side of Postgres logical replication:
// it checks and prepares the database (wal_level, the outbox table, the
// publication, the slot; prepare.go), reads the pgoutput stream of one slot
// with protocol version 1 (stream.go, decode.go), reads outbox rows from an
// exported snapshot or the table itself (rows.go), and runs the heartbeat
// statement (heartbeat.go).
package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Target names what the relay reads.
type Target struct {
	Slot        string
	Publication string
	Schema      string
	Table       string
}

func (t Target) qualified() string { return pgx.Identifier{t.Schema, t.Table}.Sanitize() }

// String is schema.table, unquoted.
func (t Target) String() string { return t.Schema + "." + t.Table }

// SeqColumn is the optional insertion-order column of the outbox
// (bigint GENERATED ALWAYS AS IDENTITY): with it, rows of one transaction are
// read back in the order they were inserted (docs/contracts.md, "The outbox table").
const SeqColumn = "seq"

// Table describes the outbox table as Prepare found it.
type Table struct {
	OID uint32
	// Partitioned is a partitioned table: its publication must publish via
	// the partition root, so every partition's inserts arrive as the table's.
	Partitioned bool
	// HasSeq is whether the table has the insertion-order column.
	HasSeq bool
}

// SlotState is the relay's slot as Prepare found it.
type SlotState struct {
	Exists           bool
	ConfirmedFlush   LSN
	RetainedWALBytes int64
	// Failover is whether it is a failover slot (Postgres 17 and later).
	Failover bool
}

// Prepared is what Prepare found and made.
type Prepared struct {
	Database string
	// Version is server_version_num (170004 for 17.4).
	Version int
	Table   Table
	// CommitTimestamps is track_commit_timestamp: rows can then be read back
	// in commit order (replay, the first start's snapshot).
	CommitTimestamps bool
	// PublicationCreated is set when Prepare created the publication.
	PublicationCreated bool
	Slot               SlotState
}

// Prepare checks the database on a regular connection, creates the
// publication when it is missing, and reads the slot. It does not create the
// slot: the relay does that on its replication connection, with an exported
// snapshot (Stream.CreateSlot). The publication must exist before the slot:
// pgoutput reads publications with the historic snapshot of each
// transaction, so a publication created after the slot makes decoding fail.
//
// A slot streamed by another connection is fault.ErrSlotActive; one that is lost,
// of another plugin or of another database is fatal.
func Prepare(ctx context.Context, conn *pgx.Conn, t Target) (Prepared, error) {
	var p Prepared
	var walLevel, commitTS string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_database(), current_setting('track_commit_timestamp'),
			current_setting('server_version_num')::int`).
		Scan(&walLevel, &p.Database, &commitTS, &p.Version); err != nil {
		return Prepared{}, fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return Prepared{}, fault.Fatalf("wal_level is %q, logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical; and restart Postgres", walLevel)
	}
	p.CommitTimestamps = commitTS == "on"
	var err error
	if p.Table, err = CheckTable(ctx, conn, t); err != nil {
		return Prepared{}, err
	}
	if p.PublicationCreated, err = EnsurePublication(ctx, conn, t, p.Table.Partitioned); err != nil {
		return Prepared{}, err
	}
	if p.Slot, err = readSlot(ctx, conn, t.Slot, p.Database, p.Version); err != nil {
		return Prepared{}, err
	}
	return p, nil
}

// CheckTable checks that the outbox table exists as a table (plain or
// partitioned), has the outbox columns and can be read.
func CheckTable(ctx context.Context, conn *pgx.Conn, t Target) (Table, error) {
	var (
		tab       Table
		kind      string
		cols      []string
		canSelect bool
	)
	err := conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text,
			ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped),
			has_table_privilege(c.oid, 'SELECT')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Table).Scan(&tab.OID, &kind, &cols, &canSelect)
	if errors.Is(err, pgx.ErrNoRows) {
		return Table{}, fault.Fatalf("table %s does not exist: create it with the outbox migration (docs/contracts.md, \"The outbox table\") or set CDC_RELAY_TABLE", t)
	}
	if err != nil {
		return Table{}, fmt.Errorf("read table %s: %w", t, err)
	}
	switch kind {
	case "r":
	case "p":
		tab.Partitioned = true
	default:
		return Table{}, fault.Fatalf("%s is not a table (relkind %q): logical replication publishes tables only; set CDC_RELAY_TABLE to the outbox table", t, kind)
	}
	var missing []string
	for _, c := range outbox.Columns {
		if !slices.Contains(cols, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Table{}, fault.Fatalf("table %s lacks column(s) %s of the outbox table (docs/contracts.md, \"The outbox table\")", t, strings.Join(missing, ", "))
	}
	if !canSelect {
		return Table{}, fault.Fatalf("the relay's role cannot SELECT from %s: GRANT SELECT ON %s TO %s;", t, t.qualified(), currentUser(ctx, conn))
	}
	tab.HasSeq = slices.Contains(cols, SeqColumn)
	return tab, nil
}

func currentUser(ctx context.Context, conn *pgx.Conn) string {
	var u string
	if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&u); err != nil {
		return "<relay role>"
	}
	return pgx.Identifier{u}.Sanitize()
}

// PublicationSQL is the statement that creates the relay's publication:
// inserts only, and via the partition root for a partitioned table.
func PublicationSQL(t Target, partitioned bool) string {
	with := "publish = 'insert'"
	if partitioned {
		with += ", publish_via_partition_root = true"
	}
	return fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE %s WITH (%s)`, pgx.Identifier{t.Publication}.Sanitize(), t.qualified(), with)
}

// EnsurePublication creates the publication when it is missing and checks an
// existing one: it must publish inserts, include the table, and for a
// partitioned table publish via the partition root (otherwise pgoutput names
// each partition, and the partitions' rows would not be the outbox's).
func EnsurePublication(ctx context.Context, conn *pgx.Conn, t Target, partitioned bool) (created bool, err error) {
	var inserts, viaRoot bool
	err = conn.QueryRow(ctx, `SELECT pubinsert, pubviaroot FROM pg_publication WHERE pubname = $1`, t.Publication).Scan(&inserts, &viaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		stmt := PublicationSQL(t, partitioned)
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return false, fmt.Errorf("create publication %q (as the table's owner, run: %s): %w", t.Publication, stmt, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read publication %q: %w", t.Publication, err)
	}
	pub := pgx.Identifier{t.Publication}.Sanitize()
	if !inserts {
		return false, fault.Fatalf("publication %q does not publish inserts: ALTER PUBLICATION %s SET (publish = 'insert');", t.Publication, pub)
	}
	if partitioned && !viaRoot {
		return false, fault.Fatalf("publication %q publishes the partitions of the partitioned table %s under their own names, so their rows would not reach the relay as the outbox's: "+
			"ALTER PUBLICATION %s SET (publish_via_partition_root = true);", t.Publication, t, pub)
	}
	var holds bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, t.Publication, t.Schema, t.Table).Scan(&holds); err != nil {
		return false, fmt.Errorf("read tables of publication %q: %w", t.Publication, err)
	}
	if !holds {
		return false, fault.Fatalf("publication %q does not include table %s: ALTER PUBLICATION %s ADD TABLE %s;", t.Publication, t, pub, t.qualified())
	}
	return false, nil
}

// readSlot reads the slot. The checks run in an order that makes a slot
// being created by another relay (active, with no confirmed position yet) a
// standby's case, not a lost slot.
func readSlot(ctx context.Context, conn *pgx.Conn, slot, db string, version int) (SlotState, error) {
	var (
		plugin, slotDB, walStatus, confirmed *string
		retained                             *int64
		active, failover                     bool
		pid                                  *int32
	)
	failoverCol := "false"
	if version >= FailoverVersion {
		failoverCol = "failover"
	}
	err := conn.QueryRow(ctx, `SELECT plugin, database, wal_status, confirmed_flush_lsn::text,
			(pg_current_wal_lsn() - restart_lsn)::bigint, active, active_pid, `+failoverCol+`
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&plugin, &slotDB, &walStatus, &confirmed, &retained, &active, &pid, &failover)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotState{}, nil
	}
	if err != nil {
		return SlotState{}, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	if plugin == nil || *plugin != "pgoutput" {
		return SlotState{}, fault.Fatalf("replication slot %q is not a pgoutput logical slot: drop it or set CDC_RELAY_SLOT to another name", slot)
	}
	if slotDB == nil || *slotDB != db {
		return SlotState{}, fault.Fatalf("replication slot %q belongs to database %q, not %q: set CDC_RELAY_SLOT to a slot of this database", slot, deref(slotDB), db)
	}
	if active {
		// Checked before the slot's position: a slot that another relay is
		// creating is active and has none yet.
		return SlotState{}, fmt.Errorf("%w: slot %q is streaming to pid %d", fault.ErrSlotActive, slot, deref(pid))
	}
	if deref(walStatus) == "lost" {
		return SlotState{}, fault.SlotLost(slot, "its WAL was removed (max_slot_wal_keep_size)", fault.RepairHint{})
	}
	if confirmed == nil {
		return SlotState{}, fault.SlotLost(slot, "it has no confirmed position", fault.RepairHint{})
	}
	s := SlotState{Exists: true, RetainedWALBytes: deref(retained), Failover: failover}
	if s.ConfirmedFlush, err = pglogrepl.ParseLSN(*confirmed); err != nil {
		return SlotState{}, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	return s, nil
}

// lockClass is the first key of the relays' advisory locks ("cdcr").
const lockClass = 0x63646372

// Lock takes the advisory lock of slot on conn, for as long as conn lives,
// if no other session holds it. Relays of one slot take it before they look
// at the slot: so a relay creating the slot, which is inactive while its
// first rows are read from the snapshot, has no standby start streaming it
// under its feet. Advisory locks need no privilege.
func Lock(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, slot).Scan(&ok); err != nil {
		return false, fmt.Errorf("take the lock of slot %q: %w", slot, err)
	}
	return ok, nil
}

// OldestRow returns the created_at of the oldest row of the outbox, or nil
// when it is empty.
func OldestRow(ctx context.Context, conn *pgx.Conn, t Target) (*time.Time, error) {
	var oldest time.Time
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT created_at FROM %s ORDER BY created_at LIMIT 1`, t.qualified())).Scan(&oldest)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t, err)
	}
	return &oldest, nil
}

// DropSlot drops slot once it is inactive (a walsender takes a moment to
// exit after its connection closed), waiting at most within. A missing slot
// is not an error.
func DropSlot(ctx context.Context, conn *pgx.Conn, slot string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline):
			return fmt.Errorf("drop replication slot %q: %w", slot, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop replication slot %q: %w", slot, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FailoverVersion is the first server_version_num with failover slots.
const FailoverVersion = 170000

// WantFailover says whether the relay's slot should be a failover slot on a
// server of version (server_version_num) under setting (auto, on, off), or
// why it cannot be.
func WantFailover(setting string, version int) (bool, error) {
	switch {
	case setting == "off":
		return false, nil
	case version >= FailoverVersion:
		return true, nil
	case setting == "on":
		return false, fault.Fatalf("CDC_RELAY_SLOT_FAILOVER=on, but failover slots need Postgres 17 or later and the server is %d.%d: "+
			"set it to auto (or off), and see docs/operations.md, \"Failover\", for what a promotion does then", version/10000, version%10000)
	}
	return false, nil
}

// CreateSlotSQL creates slot with SQL (no exported snapshot): the operator's
// `cdc-relay slot create`, which is followed by a replay. It returns the
// slot's consistent point. failover needs Postgres 17.
func CreateSlotSQL(ctx context.Context, conn *pgx.Conn, slot string, failover bool) (LSN, error) {
	var lsn string
	q := `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`
	if failover {
		q = `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)`
	}
	if err := conn.QueryRow(ctx, q, slot).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("create replication slot %q: %w", slot, err)
	}
	return pglogrepl.ParseLSN(lsn)
}

// Place says what the relay does with a relation of the stream.
type Place int

const (
	// PlaceOther is another table of the publication: its rows are not events.
	PlaceOther Place = iota
	// PlaceOutbox is the outbox table or one of its partitions.
	PlaceOutbox
	// PlaceUnknown is a relation that no longer exists: it cannot be told
	// apart from a dropped partition of the outbox.
	PlaceUnknown
)

// PlaceRelation tells whether relation relid of the stream is the outbox
// (root, its OID) or one of its partitions, another table, or unknown
// (dropped since).
func PlaceRelation(ctx context.Context, conn *pgx.Conn, relid, root uint32) (Place, error) {
	if relid == root {
		return PlaceOutbox, nil
	}
	var exists, partition bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1::oid),
			EXISTS (SELECT 1 FROM pg_partition_ancestors($1::oid::regclass) WHERE relid = $2::oid::regclass)`, relid, root).Scan(&exists, &partition)
	switch {
	case err != nil:
		return 0, fmt.Errorf("look up relation %d of the stream: %w", relid, err)
	case partition:
		return PlaceOutbox, nil
	case exists:
		return PlaceOther, nil
	}
	return PlaceUnknown, nil
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
	if fault.TLSRefused(err) {
		return fault.Fatal(fmt.Errorf("%w; the server's certificate does not match CDC_RELAY_DATABASE_URL's sslrootcert (its CA) or host name", err))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "3D000":
			return fault.Fatal(fmt.Errorf("%w; check CDC_RELAY_DATABASE_URL", err))
		}
	}
	return err
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
