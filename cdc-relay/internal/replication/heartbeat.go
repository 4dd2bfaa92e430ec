package replication

import (
	"context"
	"fmt"

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
