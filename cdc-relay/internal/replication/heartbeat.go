package replication

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// HeartbeatPrefix is the prefix of the relay's logical decoding messages.
const HeartbeatPrefix = "cdc-relay-heartbeat"

// SlotHealth is what the heartbeat statement reads of the slot.
type SlotHealth struct {
	Exists           bool
	WALStatus        string // reserved, extended, unreserved, lost
	SafeWALSize      *int64 // bytes before invalidation; nil when max_slot_wal_keep_size is -1
	RetainedWALBytes int64  // current WAL − restart_lsn
	LagBytes         int64  // current WAL − confirmed_flush_lsn

	// Failover readiness, on Postgres 17 and later (Version ≥ 170000).
	Version int
	// Failover is the slot's failover flag.
	Failover bool
	// StandbySlots is the primary's synchronized_standby_slots: the
	// physical slots of the standbys its logical walsenders wait for.
	StandbySlots string
	// StandbySlotsActive is whether every one of them is streaming.
	StandbySlotsActive bool
}

// FailoverReady tells whether a promotion of the standby keeps the slot and
// nothing the relay read is missing on it, and why not.
func (h SlotHealth) FailoverReady() (bool, string) {
	switch {
	case h.Version < FailoverVersion:
		return false, fmt.Sprintf("Postgres %d has no failover slots: a promotion loses the slot (repair: docs/operations.md, \"4. Repair after a lost slot\")", h.Version/10000)
	case !h.Failover:
		return false, "the slot is not a failover slot (CDC_RELAY_SLOT_FAILOVER=off?)"
	case strings.TrimSpace(h.StandbySlots) == "":
		return false, "synchronized_standby_slots is empty on the primary: the relay may read what no standby has yet"
	case !h.StandbySlotsActive:
		return false, "a standby of synchronized_standby_slots (" + h.StandbySlots + ") is not streaming"
	}
	return true, "failover slot, synchronised to the standby of " + h.StandbySlots
}

// Heartbeat writes a transactional logical decoding message carrying
// payload, which the slot's stream reads back (proof the stream moves), and
// reads the slot's health, in one statement: on an idle database this is
// all the relay runs. version is the server's server_version_num.
func Heartbeat(ctx context.Context, conn *pgx.Conn, slot, payload string, version int) (SlotHealth, error) {
	var (
		h                   SlotHealth
		walStatus           *string
		retained, lag, safe *int64
		failover            *bool
	)
	failoverCols := `NULL::bool, ''::text, false`
	if version >= FailoverVersion {
		failoverCols = `s.failover, current_setting('synchronized_standby_slots'),
			(SELECT coalesce(bool_and(coalesce(p.active, false)), false)
			 FROM unnest(string_to_array(replace(current_setting('synchronized_standby_slots'), ' ', ''), ',')) AS w(name)
			 LEFT JOIN pg_replication_slots p ON p.slot_name = w.name AND p.slot_type = 'physical')`
	}
	err := conn.QueryRow(ctx, `SELECT s.slot_name IS NOT NULL, s.wal_status, s.safe_wal_size,
			(pg_current_wal_lsn() - s.restart_lsn)::bigint, (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint, `+failoverCols+`
		FROM (SELECT pg_logical_emit_message(true, $1, $2)) AS hb
		LEFT JOIN pg_replication_slots s ON s.slot_name = $3`, HeartbeatPrefix, payload, slot).
		Scan(&h.Exists, &walStatus, &safe, &retained, &lag, &failover, &h.StandbySlots, &h.StandbySlotsActive)
	if err != nil {
		return SlotHealth{}, fmt.Errorf("heartbeat: %w", err)
	}
	h.Version = version
	h.Failover = deref(failover)
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
