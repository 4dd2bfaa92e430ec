package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// SlotInfo is one row of slot list. Pointers are null in JSON where Postgres
// has no value (a physical slot has no plugin; a lost slot no restart_lsn;
// safe_wal_size is null when max_slot_wal_keep_size is -1).
type SlotInfo struct {
	Name              string  `json:"slot_name"`
	Type              string  `json:"slot_type"`
	Plugin            *string `json:"plugin"`
	Database          *string `json:"database"`
	Active            bool    `json:"active"`
	ActivePID         *int32  `json:"active_pid"`
	ConfirmedFlushLSN *string `json:"confirmed_flush_lsn"`
	RestartLSN        *string `json:"restart_lsn"`
	// LagBytes is the current WAL position minus confirmed_flush_lsn: WAL
	// written that the slot's consumer has not confirmed.
	LagBytes *int64 `json:"lag_bytes"`
	// RetainedWALBytes is the current WAL position minus restart_lsn: WAL
	// the server keeps on disk for this slot.
	RetainedWALBytes *int64  `json:"retained_wal_bytes"`
	WALStatus        *string `json:"wal_status"`
	SafeWALSize      *int64  `json:"safe_wal_size"`
	// Failover and Synced are Postgres 17's: a failover slot is synchronised
	// to standbys with sync_replication_slots; on a standby, synced marks
	// such a copy. Null before 17.
	Failover *bool `json:"failover"`
	Synced   *bool `json:"synced"`
}

// slotsQuery reads pg_replication_slots. The current position is the
// replay position on a standby, where pg_current_wal_lsn() fails; failover
// and synced exist from Postgres 17 on.
func slotsQuery(version int) string {
	failover := "NULL::bool, NULL::bool"
	if version >= replication.FailoverVersion {
		failover = "s.failover, s.synced"
	}
	return `
WITH cur AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT s.slot_name::text, s.slot_type, s.plugin::text, s.database::text, s.active, s.active_pid,
       s.confirmed_flush_lsn::text, s.restart_lsn::text,
       (cur.lsn - s.confirmed_flush_lsn)::bigint, (cur.lsn - s.restart_lsn)::bigint,
       s.wal_status, s.safe_wal_size, ` + failover + `
FROM pg_replication_slots s, cur`
}

func serverVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v int
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&v)
	return v, err
}

func querySlots(ctx context.Context, conn *pgx.Conn, where string, args ...any) ([]SlotInfo, error) {
	version, err := serverVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, slotsQuery(version)+" "+where+" ORDER BY s.slot_name", args...)
	if err != nil {
		return nil, err
	}
	slots := []SlotInfo{}
	for rows.Next() {
		var s SlotInfo
		if err := rows.Scan(&s.Name, &s.Type, &s.Plugin, &s.Database, &s.Active, &s.ActivePID,
			&s.ConfirmedFlushLSN, &s.RestartLSN, &s.LagBytes, &s.RetainedWALBytes, &s.WALStatus, &s.SafeWALSize, &s.Failover, &s.Synced); err != nil {
			return nil, err
		}
		slots = append(slots, s)
	}
	return slots, rows.Err()
}

// errNoSlot reports a slot that does not exist.
var errNoSlot = errors.New("no such replication slot")

func getSlot(ctx context.Context, conn *pgx.Conn, name string) (SlotInfo, error) {
	slots, err := querySlots(ctx, conn, "WHERE s.slot_name = $1", name)
	if err != nil {
		return SlotInfo{}, err
	}
	if len(slots) == 0 {
		return SlotInfo{}, errNoSlot
	}
	return slots[0], nil
}

func runSlotList(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	slots, err := querySlots(ctx, conn, "")
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	if o.json {
		return writeJSON(stdout, slots)
	}
	return renderSlots(stdout, slots)
}

func renderSlots(w io.Writer, slots []SlotInfo) error {
	if len(slots) == 0 {
		_, err := fmt.Fprintln(w, "no replication slots")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SLOT\tPLUGIN\tDATABASE\tACTIVE\tPID\tCONFIRMED_FLUSH\tLAG\tRETAINED\tWAL_STATUS\tSAFE_WAL_SIZE\tFAILOVER\tSYNCED")
	pid := func(p int32) string { return strconv.Itoa(int(p)) }
	yes := func(b bool) string { return strconv.FormatBool(b) }
	for _, s := range slots {
		plugin := orDash(s.Plugin, str)
		if s.Type == "physical" {
			plugin = "(physical)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.Name, plugin, orDash(s.Database, str), s.Active, orDash(s.ActivePID, pid),
			orDash(s.ConfirmedFlushLSN, str), orDash(s.LagBytes, FormatBytes), orDash(s.RetainedWALBytes, FormatBytes),
			orDash(s.WALStatus, str), orDash(s.SafeWALSize, FormatBytes), orDash(s.Failover, yes), orDash(s.Synced, yes))
	}
	return tw.Flush()
}

// SlotCreated is the result of slot create.
type SlotCreated struct {
	Slot              string `json:"slot"`
	Database          string `json:"database"`
	Publication       string `json:"publication"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn"`
	// Created is false when the slot existed already (and was found fit).
	Created bool `json:"created"`
	// Failover is whether it was created as a failover slot (Postgres 17+).
	Failover bool `json:"failover"`
}

// runSlotCreate prepares the database as the daemon does at start
// (replication.Prepare: wal_level and table checked, the publication created
// when missing), then, unlike the daemon, creates a missing slot even when
// the outbox already holds rows: the operator has decided, typically in the
// repair of a lost slot before a replay (docs/operations.md). It takes the
// slot's lock first, as relays do, so it cannot race a relay's first start.
// An existing fit slot is not an error, so the repair steps can be rerun.
func runSlotCreate(ctx context.Context, o options, stdout, _ io.Writer) error {
	r, err := createSlot(ctx, o)
	if errors.Is(err, fault.ErrSlotActive) {
		// It exists and a relay streams it: as fit as it gets.
		r, err = existingSlot(ctx, o)
	}
	if err != nil {
		return fmt.Errorf("create slot %q: %w", o.slot, err)
	}
	if o.json {
		return writeJSON(stdout, r)
	}
	if r.Created {
		_, err = fmt.Fprintf(stdout, "created slot %q in database %q at %s (pgoutput, publication %q)\n", r.Slot, r.Database, r.ConfirmedFlushLSN, r.Publication)
	} else {
		_, err = fmt.Fprintf(stdout, "slot %q already exists in database %q at %s\n", r.Slot, r.Database, r.ConfirmedFlushLSN)
	}
	return err
}

func createSlot(ctx context.Context, o options) (SlotCreated, error) {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return SlotCreated{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	locked, err := replication.Lock(ctx, conn, o.slot)
	if err != nil {
		return SlotCreated{}, err
	}
	if !locked {
		return SlotCreated{}, fmt.Errorf("%w: a relay holds the lock of slot %q (it is creating or streaming it)", fault.ErrSlotActive, o.slot)
	}
	t := replication.Target{Slot: o.slot, Publication: o.publication, Schema: o.table.Schema, Table: o.table.Name}
	p, err := replication.Prepare(ctx, conn, t)
	if err != nil {
		return SlotCreated{}, err
	}
	r := SlotCreated{Slot: o.slot, Database: p.Database, Publication: o.publication, ConfirmedFlushLSN: p.Slot.ConfirmedFlush.String()}
	if p.Slot.Exists {
		return r, nil
	}
	failover, err := replication.WantFailover(o.slotFailover, p.Version)
	if err != nil {
		return SlotCreated{}, err
	}
	lsn, err := replication.CreateSlotSQL(ctx, conn, o.slot, failover)
	if isCode(err, "42710") { // created meanwhile
		return existingSlot(ctx, o)
	}
	if err != nil {
		return SlotCreated{}, err
	}
	r.ConfirmedFlushLSN, r.Created, r.Failover = lsn.String(), true, failover
	return r, nil
}

func existingSlot(ctx context.Context, o options) (SlotCreated, error) {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return SlotCreated{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s, err := getSlot(ctx, conn, o.slot)
	if err != nil {
		return SlotCreated{}, err
	}
	return SlotCreated{Slot: s.Name, Database: deref(s.Database), Publication: o.publication, ConfirmedFlushLSN: orDash(s.ConfirmedFlushLSN, str)}, nil
}

// SlotDropped is the result of slot drop.
type SlotDropped struct {
	Slot string `json:"slot"`
	// TerminatedPIDs are the walsenders ended by --force.
	TerminatedPIDs []int32 `json:"terminated_pids"`
}

const pollInterval = 100 * time.Millisecond

// SQLSTATEs this package branches on.
const (
	codeObjectInUse     = "55006"
	codeUndefinedObject = "42704"
)

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

func runSlotDrop(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("drop slot %q: %w", o.slot, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s, err := usableSlot(ctx, conn, o.slot)
	if err != nil {
		return fmt.Errorf("drop slot %q: %w", o.slot, err)
	}
	if s.Active && !o.force {
		return fmt.Errorf("drop slot %q: %w: it is active, streamed by walsender pid %d (a running relay?). "+
			"Stop that relay first (a relay that keeps running stops on the missing slot), or pass --force to terminate the walsender",
			o.slot, ErrRefused, deref(s.ActivePID))
	}
	r := SlotDropped{Slot: o.slot, TerminatedPIDs: []int32{}}
	// A relay whose walsender was terminated reconnects with backoff and may
	// take the slot again before the drop: terminate and retry until the
	// deadline.
	deadline := time.Now().Add(o.wait)
	for {
		s, err := getSlot(ctx, conn, o.slot)
		if errors.Is(err, errNoSlot) {
			break // dropped meanwhile
		}
		if err != nil {
			return fmt.Errorf("drop slot %q: %w", o.slot, err)
		}
		if !s.Active {
			_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, o.slot)
			if err == nil || isCode(err, codeUndefinedObject) {
				break
			}
			if !isCode(err, codeObjectInUse) {
				return fmt.Errorf("drop slot %q: %w", o.slot, err)
			}
		} else if s.ActivePID != nil && (len(r.TerminatedPIDs) == 0 || r.TerminatedPIDs[len(r.TerminatedPIDs)-1] != *s.ActivePID) {
			if !o.force {
				return fmt.Errorf("drop slot %q: %w: it became active (walsender pid %d); pass --force to terminate it", o.slot, ErrRefused, *s.ActivePID)
			}
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, *s.ActivePID).Scan(&ok); err != nil {
				return fmt.Errorf("drop slot %q: terminate walsender %d (needs superuser, or membership in pg_signal_backend or the walsender's role): %w", o.slot, *s.ActivePID, err)
			}
			r.TerminatedPIDs = append(r.TerminatedPIDs, *s.ActivePID)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drop slot %q: still active after %s (walsender pid %d)", o.slot, o.wait, deref(s.ActivePID))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop slot %q: %w", o.slot, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
	if o.json {
		return writeJSON(stdout, r)
	}
	if len(r.TerminatedPIDs) > 0 {
		fmt.Fprintf(stdout, "terminated walsender pid(s) %v\n", r.TerminatedPIDs)
	}
	_, err = fmt.Fprintf(stdout, "dropped slot %q\n", o.slot)
	return err
}

// usableSlot finds a slot that this connection may change: logical slots are
// dropped and advanced only from their own database.
func usableSlot(ctx context.Context, conn *pgx.Conn, name string) (SlotInfo, error) {
	s, err := getSlot(ctx, conn, name)
	if errors.Is(err, errNoSlot) {
		return SlotInfo{}, fmt.Errorf("%w (cdc-relay slot list shows the slots)", err)
	}
	if err != nil {
		return SlotInfo{}, err
	}
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return SlotInfo{}, err
	}
	if s.Database != nil && *s.Database != db {
		return SlotInfo{}, fmt.Errorf("%w: it belongs to database %q, not %q: point --database-url at that database", ErrRefused, *s.Database, db)
	}
	return s, nil
}

// SlotAdvanced is the result of slot advance.
type SlotAdvanced struct {
	Slot string `json:"slot"`
	From string `json:"from"`
	To   string `json:"to"`
	// SkippedBytes is the WAL the slot's consumer will never read.
	SkippedBytes int64 `json:"skipped_bytes"`
}

func runSlotAdvance(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("advance slot %q: %w", o.slot, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s, err := usableSlot(ctx, conn, o.slot)
	if err != nil {
		return fmt.Errorf("advance slot %q: %w", o.slot, err)
	}
	if s.Active {
		return fmt.Errorf("advance slot %q: %w: it is active, streamed by walsender pid %d; stop its relay first", o.slot, ErrRefused, deref(s.ActivePID))
	}
	fromText := s.ConfirmedFlushLSN
	if fromText == nil {
		fromText = s.RestartLSN // a physical slot
	}
	if fromText == nil {
		return fmt.Errorf("advance slot %q: it has no position (wal_status %s): drop and recreate it", o.slot, orDash(s.WALStatus, str))
	}
	from, err := ParseLSN(*fromText)
	if err != nil {
		return fmt.Errorf("advance slot %q: read its position: %w", o.slot, err)
	}
	var to LSN
	if o.to == "now" {
		var cur string
		if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&cur); err != nil {
			return fmt.Errorf("advance slot %q: read the current WAL position: %w", o.slot, err)
		}
		if to, err = ParseLSN(cur); err != nil {
			return fmt.Errorf("advance slot %q: %w", o.slot, err)
		}
	} else if to, err = ParseLSN(o.to); err != nil {
		return UsageError{Err: fmt.Errorf("advance slot %q: --to: %w", o.slot, err)}
	}
	if to < from {
		return fmt.Errorf("advance slot %q: %w: %s is behind the slot's confirmed position %s, and a slot never moves back. "+
			"To deliver older rows again use cdc-relay replay --since", o.slot, ErrRefused, to, from)
	}
	// Postgres caps the target at the flushed WAL position and returns
	// where the slot ended up.
	var endText string
	if err := conn.QueryRow(ctx, `SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::pg_lsn)`, o.slot, to.String()).Scan(&endText); err != nil {
		return fmt.Errorf("advance slot %q to %s: %w", o.slot, to, err)
	}
	end, err := ParseLSN(endText)
	if err != nil {
		return fmt.Errorf("advance slot %q: %w", o.slot, err)
	}
	r := SlotAdvanced{Slot: o.slot, From: from.String(), To: end.String(), SkippedBytes: int64(end - from)}
	if o.json {
		return writeJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "advanced slot %q from %s to %s, skipping %s of WAL: rows committed in it are not relayed (cdc-relay replay --since re-publishes them)\n",
		r.Slot, r.From, r.To, FormatBytes(r.SkippedBytes))
	return err
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
