package admin

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// StandbyFacts is what doctor reads on one standby named in the database
// URL (the hosts of a multi-host URL that are in recovery).
type StandbyFacts struct {
	Host string
	// Err is why the host could not be read ("" when it was).
	Err                  string
	SyncReplicationSlots bool
	HotStandbyFeedback   bool
	PrimarySlotName      string
	// ConninfoHasDBName is whether primary_conninfo names a database, which
	// slot synchronisation needs.
	ConninfoHasDBName bool
	// SlotFound, SlotSynced and SlotTemporary describe the relay's slot
	// on the standby: a synchronised slot is temporary (and dropped at a
	// promotion) until the primary's has moved past where the standby took it.
	SlotFound, SlotSynced, SlotTemporary bool
}

// FailoverFacts is what doctor reads of a failover set-up.
type FailoverFacts struct {
	// Want is CDC_RELAY_SLOT_FAILOVER.
	Want string
	// StreamingStandbys counts the primary's physical walsenders (standbys).
	StreamingStandbys int
	// SynchronizedStandbySlots is the primary's setting, and
	// MissingStandbySlots those of its slots that are not active physical slots.
	SynchronizedStandbySlots string
	MissingStandbySlots      []string
	// Standbys are the other hosts of the URL that are standbys.
	Standbys []StandbyFacts
	// HostsInURL counts the URL's hosts.
	HostsInURL int
}

func checkFailover(f Facts) []Finding {
	ff := f.Failover
	own := -1
	for i, s := range f.Slots {
		if s.Name == f.Slot {
			own = i
		}
	}
	if f.Version < replication.FailoverVersion {
		if ff.StreamingStandbys == 0 {
			return one(LevelOK, "failover", fmt.Sprintf("Postgres %d, no standby streams from this server", f.Version/10000), "")
		}
		return one(LevelWarn, "failover", fmt.Sprintf("Postgres %d has no failover slots: a promotion of its standby loses the relay's slot, and the relay stops with the repair", f.Version/10000),
			"upgrade to Postgres 17 for failover slots, or plan the repair of docs/operations.md, \"4. Repair after a lost slot\" (slot create, replay --since)")
	}
	if ff.Want == config.FailoverOff {
		return one(LevelOK, "failover", "CDC_RELAY_SLOT_FAILOVER=off: the slot is not kept through a promotion", "")
	}
	var out []Finding
	if own >= 0 && (f.Slots[own].Failover == nil || !*f.Slots[own].Failover) {
		out = append(out, one(LevelError, "failover", fmt.Sprintf("slot %s is not a failover slot: a promotion of the standby loses it", f.Slot),
			"restart the relay with CDC_RELAY_SLOT_FAILOVER=auto: it makes its slot a failover slot")...)
	}
	if ff.StreamingStandbys == 0 {
		return append(out, one(LevelOK, "failover", "no standby streams from this primary", "")...)
	}
	switch {
	case strings.TrimSpace(ff.SynchronizedStandbySlots) == "":
		out = append(out, one(LevelWarn, "failover", "synchronized_standby_slots is empty: the relay may read and deliver changes the standby does not have yet, which a promotion loses",
			"ALTER SYSTEM SET synchronized_standby_slots = '<the standby's physical slot>'; SELECT pg_reload_conf();")...)
	case len(ff.MissingStandbySlots) > 0:
		out = append(out, one(LevelError, "failover", fmt.Sprintf("synchronized_standby_slots names %s, which is not an active physical slot: the relay's walsender waits for it", strings.Join(ff.MissingStandbySlots, ", ")),
			"fix synchronized_standby_slots to the standbys' physical slots (cdc-relay slot list shows them), then SELECT pg_reload_conf();")...)
	default:
		out = append(out, one(LevelOK, "failover", "synchronized_standby_slots is "+ff.SynchronizedStandbySlots+": the relay never gets ahead of the standby", "")...)
	}
	if len(ff.Standbys) == 0 {
		what := "the standby's settings were not checked: the database URL names one host"
		if ff.HostsInURL > 1 {
			what = "no other host of the database URL is a standby (unreachable, or not in recovery)"
		}
		out = append(out, one(LevelWarn, "failover", what,
			"list the primary and the standby in CDC_RELAY_DATABASE_URL: postgres://primary,standby/db?target_session_attrs=primary")...)
	}
	for _, s := range ff.Standbys {
		out = append(out, checkStandby(f, s)...)
	}
	return out
}

func checkStandby(f Facts, s StandbyFacts) []Finding {
	check := "standby " + s.Host
	if s.Err != "" {
		return one(LevelWarn, check, "could not read the standby: "+s.Err, "")
	}
	set := func(name, value string) string {
		return fmt.Sprintf("on %s: ALTER SYSTEM SET %s = %s; SELECT pg_reload_conf();", s.Host, name, value)
	}
	var out []Finding
	if !s.SyncReplicationSlots {
		out = append(out, one(LevelError, check, "sync_replication_slots is off: the standby does not keep the relay's slot", set("sync_replication_slots", "on"))...)
	}
	if !s.HotStandbyFeedback {
		out = append(out, one(LevelError, check, "hot_standby_feedback is off: slot synchronisation needs it", set("hot_standby_feedback", "on"))...)
	}
	if s.PrimarySlotName == "" {
		out = append(out, one(LevelError, check, "primary_slot_name is empty: slot synchronisation needs the standby to stream through a physical slot",
			fmt.Sprintf("SELECT pg_create_physical_replication_slot('<name>'); on the primary, then %s", set("primary_slot_name", "'<name>'")))...)
	}
	if !s.ConninfoHasDBName {
		out = append(out, one(LevelError, check, "primary_conninfo names no database: slot synchronisation needs one",
			set("primary_conninfo", "'... dbname="+f.Database+"'"))...)
	}
	switch {
	case !s.SlotFound:
		out = append(out, one(LevelError, check, fmt.Sprintf("slot %s is not on the standby: a promotion now loses it", f.Slot),
			"fix the settings above; the standby's slot sync worker then creates it (it needs the slot to be a failover slot)")...)
	case s.SlotTemporary:
		out = append(out, one(LevelWarn, check, fmt.Sprintf("slot %s is synchronised but still temporary: a promotion now would drop it; it is kept once the relay's slot moves on the primary", f.Slot), "")...)
	}
	if len(out) == 0 {
		out = one(LevelOK, check, fmt.Sprintf("the standby keeps slot %s (synced), ready for a promotion", f.Slot), "")
	}
	return out
}

// gatherFailover reads the failover facts of the primary on conn and of the
// standbys among the other hosts of dbURL.
func gatherFailover(ctx context.Context, conn *pgx.Conn, dbURL string, f *Facts) error {
	ff := &f.Failover
	if err := conn.QueryRow(ctx, `SELECT count(*)::int FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
		WHERE a.backend_type = 'walsender' AND a.datname IS NULL`).Scan(&ff.StreamingStandbys); err != nil {
		return fmt.Errorf("read the standbys: %w", err)
	}
	if f.Version < replication.FailoverVersion {
		return nil
	}
	if err := conn.QueryRow(ctx, `SELECT current_setting('synchronized_standby_slots'),
			ARRAY(SELECT w.name FROM unnest(string_to_array(replace(current_setting('synchronized_standby_slots'), ' ', ''), ',')) AS w(name)
			      WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots p WHERE p.slot_name = w.name AND p.slot_type = 'physical' AND p.active))`).
		Scan(&ff.SynchronizedStandbySlots, &ff.MissingStandbySlots); err != nil {
		return fmt.Errorf("read synchronized_standby_slots: %w", err)
	}
	hosts, err := urlHosts(dbURL)
	if err != nil {
		return err
	}
	ff.HostsInURL = len(hosts)
	if len(hosts) < 2 {
		return nil
	}
	for _, h := range hosts {
		s, standby := readStandby(ctx, dbURL, h, f.Slot)
		if standby {
			ff.Standbys = append(ff.Standbys, s)
		}
	}
	return nil
}

type hostPort struct {
	host string
	port uint16
}

// urlHosts lists the hosts of a (multi-host) database URL.
func urlHosts(dbURL string) ([]hostPort, error) {
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	hosts := []hostPort{{cfg.Host, cfg.Port}}
	for _, fb := range cfg.Fallbacks {
		if fb.Host != cfg.Host || fb.Port != cfg.Port {
			hosts = append(hosts, hostPort{fb.Host, fb.Port})
		}
	}
	return hosts, nil
}

// readStandby connects to host h of dbURL alone and reads its standby
// facts; standby is false for a host that is not in recovery.
func readStandby(ctx context.Context, dbURL string, h hostPort, slot string) (s StandbyFacts, standby bool) {
	s.Host = net.JoinHostPort(h.host, strconv.Itoa(int(h.port)))
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		s.Err = err.Error()
		return s, true
	}
	cfg.Host, cfg.Port, cfg.Fallbacks, cfg.ValidateConnect = h.host, h.port, nil, nil
	cfg.ConnectTimeout = 5 * time.Second
	cfg.RuntimeParams["application_name"] = "cdc-relay-admin"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		s.Err = err.Error()
		return s, true
	}
	defer c.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	var conninfo string
	err = c.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('sync_replication_slots') = 'on', current_setting('hot_standby_feedback') = 'on',
			current_setting('primary_slot_name'), current_setting('primary_conninfo'),
			EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
			coalesce((SELECT synced FROM pg_replication_slots WHERE slot_name = $1), false),
			coalesce((SELECT temporary FROM pg_replication_slots WHERE slot_name = $1), false)`, slot).
		Scan(&inRecovery, &s.SyncReplicationSlots, &s.HotStandbyFeedback, &s.PrimarySlotName, &conninfo, &s.SlotFound, &s.SlotSynced, &s.SlotTemporary)
	if err != nil {
		s.Err = err.Error()
		return s, true
	}
	s.ConninfoHasDBName = strings.Contains(conninfo, "dbname=")
	return s, inRecovery
}
