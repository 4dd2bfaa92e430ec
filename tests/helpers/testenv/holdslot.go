package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// HoldSlot streams slot of the database at dbURL on a replication
// connection, as a relay does, and returns once pg_replication_slots shows
// it active: the slot stays held until the test ends (or the connection is
// terminated). It reads the publication cdc_relay_outbox.
func HoldSlot(t testing.TB, dbURL, slot string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("hold slot %s: %v", slot, err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("hold slot %s: connect: %v", slot, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if err := pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'cdc_relay_outbox'"},
	}); err != nil {
		t.Fatalf("hold slot %s: start replication: %v", slot, err)
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("hold slot %s: connect: %v", slot, err)
	}
	defer db.Close(context.Background())
	for {
		var active bool
		if err := db.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active); err != nil {
			t.Fatalf("hold slot %s: %v", slot, err)
		}
		if active {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("hold slot %s: not active after 30 s", slot)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
