package replication

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
)

func TestPublicationSQL(t *testing.T) {
	target := Target{Publication: "cdc_relay_outbox", Schema: "public", Table: "outbox"}
	assert.Equal(t, `CREATE PUBLICATION "cdc_relay_outbox" FOR TABLE "public"."outbox" WITH (publish = 'insert')`, PublicationSQL(target, false))
	assert.Equal(t, `CREATE PUBLICATION "cdc_relay_outbox" FOR TABLE "public"."outbox" WITH (publish = 'insert', publish_via_partition_root = true)`,
		PublicationSQL(target, true), "a partitioned outbox publishes via its root")
	odd := Target{Publication: `p"q`, Schema: "Sales", Table: "out box"}
	assert.Equal(t, `CREATE PUBLICATION "p""q" FOR TABLE "Sales"."out box" WITH (publish = 'insert')`, PublicationSQL(odd, false), "names are quoted")
	assert.Equal(t, "Sales.out box", odd.String())
}

func TestWantFailover(t *testing.T) {
	tests := []struct {
		setting string
		version int
		want    bool
		fatal   bool
	}{
		{"auto", 170000, true, false},
		{"auto", 180001, true, false},
		{"auto", 160004, false, false},
		{"on", 170002, true, false},
		{"on", 150020, false, true},
		{"off", 170000, false, false},
		{"off", 140000, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s on %d", tt.setting, tt.version), func(t *testing.T) {
			got, err := WantFailover(tt.setting, tt.version)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.fatal, errors.Is(err, fault.ErrFatal), "error %v", err)
			if tt.fatal {
				assert.Contains(t, err.Error(), "server is 15.20")
			}
		})
	}
}

func TestFailoverReady(t *testing.T) {
	tests := []struct {
		name string
		h    SlotHealth
		ok   bool
		why  string
	}{
		{"Postgres 16", SlotHealth{Version: 160003}, false, "Postgres 16 has no failover slots"},
		{"not a failover slot", SlotHealth{Version: 170000}, false, "not a failover slot"},
		{"no standby slots", SlotHealth{Version: 170000, Failover: true, StandbySlots: " "}, false, "synchronized_standby_slots is empty"},
		{"standby away", SlotHealth{Version: 170000, Failover: true, StandbySlots: "sb1"}, false, "(sb1) is not streaming"},
		{"ready", SlotHealth{Version: 170000, Failover: true, StandbySlots: "sb1", StandbySlotsActive: true}, true, "synchronised to the standby of sb1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := tt.h.FailoverReady()
			assert.Equal(t, tt.ok, ok)
			assert.Contains(t, why, tt.why)
		})
	}
}

func TestRowOrder(t *testing.T) {
	tests := []struct {
		order             RowOrder
		committed, by     string
		describeHasCommit bool
	}{
		{RowOrder{CommitTimestamps: true, Seq: true}, "COALESCE(pg_xact_commit_timestamp(xmin), created_at)",
			"COALESCE(pg_xact_commit_timestamp(xmin), created_at), seq", true},
		{RowOrder{CommitTimestamps: true}, "COALESCE(pg_xact_commit_timestamp(xmin), created_at)",
			"COALESCE(pg_xact_commit_timestamp(xmin), created_at), xmin::text::bigint, ctid", true},
		{RowOrder{Seq: true}, "created_at", "created_at, seq", false},
		{RowOrder{}, "created_at", "created_at, xmin::text::bigint, ctid", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.order), func(t *testing.T) {
			assert.Equal(t, tt.committed, tt.order.Committed())
			assert.Equal(t, tt.by, tt.order.orderBy())
			d := tt.order.Describe()
			if tt.describeHasCommit {
				assert.Contains(t, d, "commit time")
			} else {
				assert.Contains(t, d, "track_commit_timestamp is off")
			}
		})
	}
	assert.Equal(t, RowOrder{CommitTimestamps: true, Seq: true}, OrderOf(Prepared{CommitTimestamps: true, Table: Table{HasSeq: true}}))
}

func TestConnectError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fatal bool
	}{
		{"password refused", &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, true},
		{"no pg_hba entry", &pgconn.PgError{Code: "28000", Message: "no pg_hba.conf entry"}, true},
		{"no such database", &pgconn.PgError{Code: "3D000", Message: "database does not exist"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300", Message: "too many clients"}, false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connectError(tt.err)
			assert.Equal(t, tt.fatal, errors.Is(err, fault.ErrFatal))
			assert.Contains(t, err.Error(), "connect to database: ")
			if tt.fatal {
				assert.Contains(t, err.Error(), "check CDC_RELAY_DATABASE_URL")
			}
		})
	}
}

func TestQuoteLiteral(t *testing.T) {
	assert.Equal(t, `'cdc_relay_outbox'`, quoteLiteral("cdc_relay_outbox"))
	assert.Equal(t, `'it''s'`, quoteLiteral("it's"))
	assert.Equal(t, `''`, quoteLiteral(""))
}
