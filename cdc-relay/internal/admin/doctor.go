package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// Level is how bad a finding is. Only LevelError makes doctor exit 1.
type Level string

// Levels of a finding.
const (
	LevelOK    Level = "ok"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

// Finding is one result of doctor: what was checked, what was found, and the
// statement that fixes it (empty when there is nothing to fix).
type Finding struct {
	Level Level  `json:"level"`
	Check string `json:"check"`
	What  string `json:"what"`
	Fix   string `json:"fix,omitempty"`
}

// Facts is what doctor reads from the server; Evaluate turns it into
// findings without I/O, so every rule is unit-tested.
type Facts struct {
	Database string
	// Version is server_version_num.
	Version  int
	WALLevel string

	MaxReplicationSlots int
	MaxWALSenders       int
	// WALSendersInUse counts walsender processes of the whole server.
	WALSendersInUse int
	// MaxSlotWALKeepSizeMB is max_slot_wal_keep_size in MB; -1 is unlimited.
	MaxSlotWALKeepSizeMB int64

	Role        string
	Superuser   bool
	Replication bool

	// CommitTimestamps is track_commit_timestamp: replay orders and selects
	// rows by commit time with it, by transaction start without.
	CommitTimestamps bool

	Table       config.Table
	TableExists bool
	// TableKind is pg_class.relkind: r (table) or p (partitioned table).
	TableKind      string
	MissingColumns []string
	// HasSeq is whether the table has the insertion-order column.
	HasSeq    bool
	CanSelect bool
	// OutboxHasRows is whether the table holds any row (false when the role
	// cannot read it).
	OutboxHasRows bool

	Publication                string
	PublicationExists          bool
	PublicationPublishesInsert bool
	PublicationHoldsTable      bool
	PublicationViaRoot         bool

	// Slot is the relay's slot (--slot); Slots are every slot of the server.
	Slot  string
	Slots []SlotInfo

	// Failover is the failover set-up: the primary's and its standbys'.
	Failover FailoverFacts
}

// nearInvalidation is the share of max_slot_wal_keep_size below which a
// slot's safe_wal_size is worth a warning.
const nearInvalidation = 0.2

// Evaluate applies every rule to f, in a stable order.
func Evaluate(f Facts) []Finding {
	var out []Finding
	for _, rule := range []func(Facts) []Finding{
		checkWALLevel, checkSlotsCapacity, checkWALSenders, checkKeepSize, checkCommitTimestamps,
		checkRole, checkTable, checkPublication, checkRelaySlot, checkOtherSlots, checkFailover,
	} {
		out = append(out, rule(f)...)
	}
	return out
}

func one(level Level, check, what, fix string) []Finding {
	return []Finding{{Level: level, Check: check, What: what, Fix: fix}}
}

func checkWALLevel(f Facts) []Finding {
	if f.WALLevel == "logical" {
		return one(LevelOK, "wal_level", "wal_level is logical", "")
	}
	return one(LevelError, "wal_level", fmt.Sprintf("wal_level is %s: logical decoding needs logical", f.WALLevel),
		"ALTER SYSTEM SET wal_level = logical; then restart Postgres")
}

func checkSlotsCapacity(f Facts) []Finding {
	used := len(f.Slots)
	haveOwn := slices.ContainsFunc(f.Slots, func(s SlotInfo) bool { return s.Name == f.Slot })
	fix := fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; then restart Postgres (or drop unused slots)", max(10, 2*used))
	switch {
	case f.MaxReplicationSlots == 0 || !haveOwn && used >= f.MaxReplicationSlots:
		return one(LevelError, "max_replication_slots",
			fmt.Sprintf("max_replication_slots is %d and %d are in use: the relay's slot cannot be created", f.MaxReplicationSlots, used), fix)
	case used >= f.MaxReplicationSlots:
		return one(LevelWarn, "max_replication_slots",
			fmt.Sprintf("all %d replication slots are in use: no other slot (another relay, a standby) can be created", f.MaxReplicationSlots), fix)
	}
	return one(LevelOK, "max_replication_slots", fmt.Sprintf("%d of %d replication slots in use", used, f.MaxReplicationSlots), "")
}

func checkWALSenders(f Facts) []Finding {
	ownActive := slices.ContainsFunc(f.Slots, func(s SlotInfo) bool { return s.Name == f.Slot && s.Active })
	fix := fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart Postgres", max(10, 2*f.WALSendersInUse))
	switch {
	case f.MaxWALSenders == 0 || !ownActive && f.WALSendersInUse >= f.MaxWALSenders:
		return one(LevelError, "max_wal_senders",
			fmt.Sprintf("max_wal_senders is %d and %d are in use: the relay cannot open its replication connection", f.MaxWALSenders, f.WALSendersInUse), fix)
	case f.WALSendersInUse >= f.MaxWALSenders:
		return one(LevelWarn, "max_wal_senders",
			fmt.Sprintf("all %d WAL senders are in use: a standby relay or a reconnect may be refused", f.MaxWALSenders), fix)
	}
	return one(LevelOK, "max_wal_senders", fmt.Sprintf("%d of %d WAL senders in use", f.WALSendersInUse, f.MaxWALSenders), "")
}

func checkKeepSize(f Facts) []Finding {
	if f.MaxSlotWALKeepSizeMB < 0 {
		return one(LevelWarn, "max_slot_wal_keep_size",
			"max_slot_wal_keep_size is -1 (unlimited): a stuck or forgotten slot keeps WAL until the disk is full",
			"ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); (size it below the free disk; a slot past it is lost and needs the repair of docs/operations.md)")
	}
	return one(LevelOK, "max_slot_wal_keep_size",
		fmt.Sprintf("max_slot_wal_keep_size is %s: a slot further behind is invalidated (lost)", FormatBytes(f.MaxSlotWALKeepSizeMB<<20)), "")
}

func checkCommitTimestamps(f Facts) []Finding {
	if f.CommitTimestamps {
		return one(LevelOK, "track_commit_timestamp", "track_commit_timestamp is on: replay selects and orders rows by commit time", "")
	}
	return one(LevelWarn, "track_commit_timestamp",
		"track_commit_timestamp is off: after a lost slot, replay can select and order rows only by created_at, their transaction's start, which a long transaction gets wrong",
		"ALTER SYSTEM SET track_commit_timestamp = on; then restart Postgres")
}

func checkRole(f Facts) []Finding {
	role := pgx.Identifier{f.Role}.Sanitize()
	switch {
	case f.Superuser:
		return one(LevelOK, "role", fmt.Sprintf("role %s is a superuser (the relay needs only REPLICATION and SELECT on the outbox)", f.Role), "")
	case f.Replication:
		return one(LevelOK, "role", fmt.Sprintf("role %s has REPLICATION", f.Role), "")
	}
	return one(LevelError, "role", fmt.Sprintf("role %s has neither REPLICATION nor superuser: it cannot create or stream a slot", f.Role),
		fmt.Sprintf("ALTER ROLE %s WITH REPLICATION; (on Amazon RDS: GRANT rds_replication TO %s;)", role, role))
}

func checkTable(f Facts) []Finding {
	name := f.Table.String()
	qualified := pgx.Identifier{f.Table.Schema, f.Table.Name}.Sanitize()
	if !f.TableExists {
		return one(LevelError, "table", fmt.Sprintf("table %s does not exist (or the role cannot see its schema)", name),
			"apply the outbox migration (migrations/outbox; docs/contracts.md, \"The outbox table\"), or set CDC_RELAY_TABLE")
	}
	var out []Finding
	switch {
	case f.TableKind != "" && f.TableKind != "r" && f.TableKind != "p":
		out = append(out, one(LevelError, "table", fmt.Sprintf("%s is not a table (relkind %s): logical replication publishes tables only", name, f.TableKind),
			"set CDC_RELAY_TABLE to the outbox table")...)
	case len(f.MissingColumns) > 0:
		out = append(out, one(LevelError, "table", fmt.Sprintf("table %s lacks outbox column(s) %s", name, strings.Join(f.MissingColumns, ", ")),
			"alter the table to the outbox schema of docs/contracts.md, \"The outbox table\"")...)
	case f.TableKind == "p":
		out = append(out, one(LevelOK, "table", fmt.Sprintf("table %s is partitioned and has the outbox columns", name), "")...)
	default:
		out = append(out, one(LevelOK, "table", fmt.Sprintf("table %s has the outbox columns", name), "")...)
	}
	if len(f.MissingColumns) == 0 && !f.HasSeq {
		out = append(out, one(LevelWarn, "table", fmt.Sprintf("table %s has no %s column: replay keeps the rows of a transaction in physical order, which DELETEs and VACUUM can break", name, replication.SeqColumn),
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s bigint GENERATED ALWAYS AS IDENTITY; (the outbox migration adds it)", qualified, replication.SeqColumn))...)
	}
	if !f.CanSelect {
		out = append(out, one(LevelError, "privileges", fmt.Sprintf("role %s cannot SELECT from %s (pgoutput and replay read it)", f.Role, name),
			fmt.Sprintf("GRANT SELECT ON %s TO %s;", qualified, pgx.Identifier{f.Role}.Sanitize()))...)
	} else {
		out = append(out, one(LevelOK, "privileges", fmt.Sprintf("role %s can SELECT from %s", f.Role, name), "")...)
	}
	return out
}

func checkPublication(f Facts) []Finding {
	pub := pgx.Identifier{f.Publication}.Sanitize()
	qualified := pgx.Identifier{f.Table.Schema, f.Table.Name}.Sanitize()
	if !f.PublicationExists {
		return one(LevelError, "publication", fmt.Sprintf("publication %s does not exist (the relay creates it at start only if its role may)", f.Publication),
			createPublicationSQL(f.Publication, f.Table, f.TableKind == "p")+" (or: cdc-relay publication create)")
	}
	var out []Finding
	if !f.PublicationHoldsTable {
		out = append(out, one(LevelError, "publication", fmt.Sprintf("publication %s does not include table %s: no row reaches the relay", f.Publication, f.Table),
			fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", pub, qualified))...)
	}
	if !f.PublicationPublishesInsert {
		out = append(out, one(LevelError, "publication", fmt.Sprintf("publication %s does not publish inserts", f.Publication),
			fmt.Sprintf("ALTER PUBLICATION %s SET (publish = 'insert');", pub))...)
	}
	if f.TableKind == "p" && !f.PublicationViaRoot {
		out = append(out, one(LevelError, "publication", fmt.Sprintf("publication %s publishes the partitions of %s under their own names: the relay refuses it", f.Publication, f.Table),
			fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true);", pub))...)
	}
	if len(out) == 0 {
		out = one(LevelOK, "publication", fmt.Sprintf("publication %s publishes inserts of %s", f.Publication, f.Table), "")
	}
	return out
}

func checkRelaySlot(f Facts) []Finding {
	i := slices.IndexFunc(f.Slots, func(s SlotInfo) bool { return s.Name == f.Slot })
	if i < 0 && f.OutboxHasRows {
		// The daemon refuses this case: the rows may never have been relayed.
		return one(LevelError, "slot", fmt.Sprintf("slot %s does not exist but %s holds rows: it was lost (dropped, or missing after a failover), and the relay will not start on it", f.Slot, f.Table),
			fmt.Sprintf("cdc-relay slot create --slot %s; cdc-relay replay --since <commit time of the last transaction consumers received>; start the relay (docs/operations.md, \"4. Repair after a lost slot\")", f.Slot))
	}
	if i < 0 {
		return one(LevelWarn, "slot", fmt.Sprintf("slot %s does not exist: the relay creates it at its first start (on an empty outbox)", f.Slot),
			fmt.Sprintf("start the relay, or cdc-relay slot create --slot %s", f.Slot))
	}
	s := f.Slots[i]
	if s.Type != "logical" || deref(s.Plugin) != "pgoutput" {
		return one(LevelError, "slot", fmt.Sprintf("slot %s is not a pgoutput logical slot (plugin %s)", f.Slot, orDash(s.Plugin, str)),
			fmt.Sprintf("SELECT pg_drop_replication_slot('%s'); or set CDC_RELAY_SLOT to another name", f.Slot))
	}
	if deref(s.Database) != f.Database {
		return one(LevelError, "slot", fmt.Sprintf("slot %s belongs to database %s, not %s", f.Slot, deref(s.Database), f.Database),
			"set CDC_RELAY_SLOT to a slot of this database")
	}
	if out := slotHealth(f, s, true); len(out) > 0 {
		return out
	}
	return one(LevelOK, "slot", fmt.Sprintf("slot %s is active (pid %d), lag %s", f.Slot, deref(s.ActivePID), orDash(s.LagBytes, FormatBytes)), "")
}

// checkOtherSlots reports the server's other slots that hold WAL: they fill
// the same disk. Slots of other databases are not this relay's to repair,
// so they are warnings at most.
func checkOtherSlots(f Facts) []Finding {
	var out []Finding
	for _, s := range f.Slots {
		if s.Name == f.Slot {
			continue
		}
		found := slotHealth(f, s, false)
		if s.Database == nil || *s.Database != f.Database {
			for i := range found {
				if found[i].Level == LevelError {
					found[i].Level = LevelWarn
				}
			}
		}
		out = append(out, found...)
	}
	return out
}

// slotHealth reports a slot that is lost, about to be, or inactive.
func slotHealth(f Facts, s SlotInfo, own bool) []Finding {
	check := "slot " + s.Name
	where := s.Name
	if s.Database != nil {
		where += " (database " + *s.Database + ")"
	}
	drop := fmt.Sprintf("SELECT pg_drop_replication_slot('%s');", s.Name)
	repair := fmt.Sprintf("stop the relay; cdc-relay slot drop --slot %s; cdc-relay slot create --slot %s; cdc-relay replay --since <commit time of the last transaction consumers received>; start the relay (docs/operations.md, \"4. Repair after a lost slot\")", s.Name, s.Name)
	keepFix := "start or fix its consumer now, or raise max_slot_wal_keep_size: ALTER SYSTEM SET max_slot_wal_keep_size = '<more>'; SELECT pg_reload_conf();"
	retained := orDash(s.RetainedWALBytes, FormatBytes)
	switch deref(s.WALStatus) {
	case "lost":
		fix := drop + " (its consumer must recover the missed changes another way)"
		if own {
			fix = repair
		}
		return one(LevelError, check, fmt.Sprintf("slot %s is lost: the WAL it needed was removed", where), fix)
	case "unreserved":
		return one(LevelError, check, fmt.Sprintf("slot %s is past max_slot_wal_keep_size and will be lost at the next checkpoint", where), keepFix)
	}
	var out []Finding
	if s.SafeWALSize != nil && f.MaxSlotWALKeepSizeMB > 0 && float64(*s.SafeWALSize) < nearInvalidation*float64(f.MaxSlotWALKeepSizeMB<<20) {
		out = append(out, Finding{Level: LevelWarn, Check: check,
			What: fmt.Sprintf("slot %s is near invalidation: %s of WAL left before max_slot_wal_keep_size removes what it needs", where, FormatBytes(*s.SafeWALSize)),
			Fix:  keepFix})
	} else if deref(s.WALStatus) == "extended" {
		out = append(out, Finding{Level: LevelWarn, Check: check,
			What: fmt.Sprintf("slot %s retains %s of WAL, more than max_wal_size", where, retained),
			Fix:  keepFix})
	}
	if !s.Active {
		fix := "start its consumer, or drop it if unused (a forgotten slot holds WAL forever): " + drop
		if own {
			fix = "start the relay (cdc-relay run)"
		}
		out = append(out, Finding{Level: LevelWarn, Check: check,
			What: fmt.Sprintf("slot %s is inactive and retains %s of WAL", where, retained), Fix: fix})
	}
	return out
}

// Report is doctor's JSON output.
type Report struct {
	Findings []Finding `json:"findings"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
}

// NewReport counts the findings.
func NewReport(findings []Finding) Report {
	r := Report{Findings: findings}
	for _, f := range findings {
		switch f.Level {
		case LevelError:
			r.Errors++
		case LevelWarn:
			r.Warnings++
		}
	}
	return r
}

// Render writes the report as aligned text, the fix under its finding.
func (r Report) Render(w io.Writer) error {
	tw := newTable(w)
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(f.Level)), f.Check, f.What)
		if f.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d error(s), %d warning(s)\n", r.Errors, r.Warnings)
	return err
}

func runDoctor(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	f, err := gatherFacts(ctx, conn, o)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	r := NewReport(Evaluate(f))
	if o.json {
		err = writeJSON(stdout, r)
	} else {
		err = r.Render(stdout)
	}
	if err != nil {
		return err
	}
	if r.Errors > 0 {
		return fmt.Errorf("%w: %d error(s)", ErrDoctor, r.Errors)
	}
	return nil
}

// gatherFacts reads Facts. It needs no privilege beyond connecting: every
// view it reads is readable by any role.
func gatherFacts(ctx context.Context, conn *pgx.Conn, o options) (Facts, error) {
	f := Facts{Table: o.table, Publication: o.publication, Slot: o.slot, Failover: FailoverFacts{Want: o.slotFailover}}
	err := conn.QueryRow(ctx, `SELECT current_database()::text, current_setting('server_version_num')::int, current_setting('wal_level'), current_setting('track_commit_timestamp') = 'on',
			current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int,
			(SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'),
			(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int,
			current_user::text, r.rolsuper, r.rolreplication
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&f.Database, &f.Version, &f.WALLevel, &f.CommitTimestamps,
		&f.MaxReplicationSlots, &f.MaxWALSenders, &f.MaxSlotWALKeepSizeMB, &f.WALSendersInUse,
		&f.Role, &f.Superuser, &f.Replication)
	if err != nil {
		return Facts{}, fmt.Errorf("read server settings: %w", err)
	}

	qualified := pgx.Identifier{o.table.Schema, o.table.Name}.Sanitize()
	var oid *uint32
	var kind *string
	if err := conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text FROM (SELECT to_regclass($1)::oid AS oid) t LEFT JOIN pg_class c ON c.oid = t.oid`, qualified).Scan(&oid, &kind); err != nil {
		return Facts{}, fmt.Errorf("look up table %s: %w", o.table, err)
	}
	f.TableKind = deref(kind)
	if f.TableExists = oid != nil; f.TableExists {
		rows, err := conn.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, *oid)
		if err != nil {
			return Facts{}, fmt.Errorf("read columns of %s: %w", o.table, err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return Facts{}, fmt.Errorf("read columns of %s: %w", o.table, err)
		}
		for _, c := range outbox.Columns {
			if !slices.Contains(cols, c) {
				f.MissingColumns = append(f.MissingColumns, c)
			}
		}
		f.HasSeq = slices.Contains(cols, replication.SeqColumn)
		if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'SELECT')`, *oid).Scan(&f.CanSelect); err != nil {
			return Facts{}, fmt.Errorf("read privileges on %s: %w", o.table, err)
		}
		if f.CanSelect {
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+qualified+`)`).Scan(&f.OutboxHasRows); err != nil {
				return Facts{}, fmt.Errorf("read %s: %w", o.table, err)
			}
		}
	}

	p, err := getPublication(ctx, conn, o.publication, o.table)
	switch {
	case errors.Is(err, errNoPublication):
	case err != nil:
		return Facts{}, fmt.Errorf("read publication %q: %w", o.publication, err)
	default:
		f.PublicationExists = true
		f.PublicationHoldsTable = p.HoldsOutboxTable
		f.PublicationPublishesInsert = slices.Contains(p.Operations, "insert")
		f.PublicationViaRoot = p.ViaRoot
	}

	if f.Slots, err = querySlots(ctx, conn, ""); err != nil {
		return Facts{}, fmt.Errorf("list slots: %w", err)
	}
	if err := gatherFailover(ctx, conn, o.databaseURL, &f); err != nil {
		return Facts{}, err
	}
	return f, nil
}
