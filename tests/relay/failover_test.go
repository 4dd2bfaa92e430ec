package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// failoverFixture is a primary and a standby of one major, an outbox
// database on them, and a relay environment with the multi-host URL that
// follows the primary.
type failoverFixture struct {
	pair      *testenv.Pair
	db, url   string
	slot      string
	got       *relaytest.Collector
	env       []string
	perWriter int
}

func newFailoverFixture(t *testing.T, major, perWriter int) *failoverFixture {
	t.Helper()
	pair := testenv.StartPostgresPair(t, testenv.PostgresOptions{Major: major})
	u, err := url.Parse(pair.Primary.NewDatabase(t))
	require.NoError(t, err)
	f := &failoverFixture{pair: pair, db: strings.TrimPrefix(u.Path, "/"), slot: testenv.RandomName("t_slot_"), perWriter: perWriter}
	f.url = pair.URL(f.db)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	require.NoError(t, err)
	require.NoError(t, migrations.Apply(ctx, conn, migrations.Outbox()))
	conn.Close(ctx)
	t.Cleanup(func() { testenv.DropSlot(t, f.url, f.slot) })
	exchange := testenv.NewExchange(t)
	f.got = relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, exchange, "#")))
	f.env = relayEnv(f.url, testenv.AMQPURL(t), f.slot, exchange, "CDC_RELAY_MAX_IN_FLIGHT=100")
	return f
}

// status is the relay's /status.
func status(t *testing.T, p *proc) map[string]any {
	t.Helper()
	_, body := p.get(t, "/status")
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	return st
}

// writeUntilFailover starts 4 writers through the multi-host URL (they move
// to the new primary), waits until the relay delivered a part, and returns
// their result.
func (f *failoverFixture) write(t *testing.T) <-chan error {
	t.Helper()
	written := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		written <- relaytest.WriteAllThrough(ctx, f.url, 4, f.perWriter, 50, "failover")
	}()
	f.got.WaitDistinct(t, f.perWriter, 60*time.Second)
	return written
}

// TestFailoverKeepsTheSlotOnPostgres17: the relay's slot is a failover slot,
// synchronised to the standby; the primary stops with -m immediate, the
// standby is promoted, and the relay follows the multi-host URL to it and
// resumes from the synchronised slot: nothing committed on the new primary
// is lost, each writer's order holds, duplicates stay within the window.
func TestFailoverKeepsTheSlotOnPostgres17(t *testing.T) {
	testenv.OutsideTheMatrix(t)
	const perWriter = 3000
	f := newFailoverFixture(t, 17, perWriter)
	p := start(t, f.env, "run")
	p.waitReady(t)
	require.Eventually(t, func() bool { return status(t, p)["failover_ready"] == true }, 20*time.Second, 50*time.Millisecond,
		"/status: %v", status(t, p))
	written := f.write(t)

	// The standby has the slot, synchronised and persisted (a synced slot
	// is temporary, and dropped at a promotion, until the primary's has
	// moved past where the standby took it), before the primary goes.
	require.Eventually(t, func() bool {
		var ready bool
		err := f.pair.Standby.QueryRow(t, "", fmt.Sprintf(`SELECT synced AND NOT temporary FROM pg_replication_slots WHERE slot_name = '%s'`, f.slot), &ready)
		return err == nil && ready
	}, 30*time.Second, 50*time.Millisecond, "the slot is not synchronised to the standby")

	// doctor checks the set-up through the multi-host URL: primary and standby.
	doc := start(t, f.env, "doctor", "--json")
	require.Equal(t, 0, doc.wait(t, 30*time.Second), doc.out.String())
	var report struct {
		Findings []struct{ Level, Check, What string }
	}
	require.NoError(t, json.Unmarshal([]byte(doc.out.String()), &report))
	standby := fmt.Sprintf("standby 127.0.0.1:%d", f.pair.Standby.Port)
	var checked []string
	for _, fd := range report.Findings {
		if fd.Check == standby || fd.Check == "failover" {
			checked = append(checked, fd.Level+" "+fd.Check+": "+fd.What)
		}
	}
	assert.Contains(t, checked, "ok "+standby+": the standby keeps slot "+f.slot+" (synced), ready for a promotion")
	assert.Contains(t, checked, "ok failover: synchronized_standby_slots is standby1: the relay never gets ahead of the standby")

	f.pair.Primary.Stop(t, "immediate")
	f.pair.Standby.Promote(t)
	promoted := time.Now()
	var took time.Duration
	require.Eventually(t, func() bool {
		st := status(t, p)
		since, _ := st["streaming_since"].(string)
		at, err := time.Parse(time.RFC3339Nano, since)
		if st["ready"] != true || err != nil || !at.After(promoted.Add(-time.Second)) {
			return false
		}
		took = time.Since(promoted)
		return true
	}, 30*time.Second, 20*time.Millisecond, "the relay is not streaming from the new primary")
	t.Logf("streaming from the new primary %s after the promotion", took.Round(time.Millisecond))
	// The control connection followed too: heartbeats come back, slot
	// health is read from the new primary.
	require.Eventually(t, func() bool {
		st := status(t, p)
		age, _ := st["heartbeat_age_seconds"].(float64)
		return st["ready"] == true && age < 2 && st["wal_status"] == "reserved"
	}, 20*time.Second, 50*time.Millisecond, "no heartbeat from the new primary: %v", status(t, p))

	require.NoError(t, <-written)
	f.got.WaitDistinct(t, 4*perWriter, 90*time.Second)
	time.Sleep(300 * time.Millisecond)
	fig := f.got.Measure(4, perWriter)
	t.Logf("failover: %+v", fig)
	assert.Zero(t, fig.Lost, "rows of the new primary lost")
	assert.Zero(t, fig.OrderViolations)
	assert.LessOrEqual(t, fig.Duplicates, window+maxTxn)
	assert.Less(t, took, 5*time.Second)
	relaytest.Record(t, relaytest.Fault{Order: 85, Fault: "Postgres 17 failover (failover slot)",
		Setup:   "primary stopped -m immediate under 4 writers, standby promoted; writers and relay follow the multi-host URL",
		Figures: fig, Recovery: took, Bound: fmt.Sprintf("≤ window + transaction (%d)", window+maxTxn),
		Note: "recovery is from the promotion to the relay streaming from the new primary"})
}

// TestFailoverOnPostgres15StopsWithTheRepair: before Postgres 17 no slot
// survives a promotion. The relay finds none on the new primary while the
// outbox holds rows, and stops with the repair instead of creating a slot
// that would skip them.
func TestFailoverOnPostgres15StopsWithTheRepair(t *testing.T) {
	testenv.OutsideTheMatrix(t)
	f := newFailoverFixture(t, 15, 500)
	p := start(t, f.env, "run")
	p.waitReady(t)
	require.Eventually(t, func() bool { return status(t, p)["failover_ready"] == false }, 20*time.Second, 50*time.Millisecond)
	assert.Contains(t, status(t, p)["failover"], "Postgres 15 has no failover slots")
	written := f.write(t)
	f.pair.Primary.Stop(t, "immediate")
	f.pair.Standby.Promote(t)
	require.Equal(t, 1, p.wait(t, 60*time.Second), "the relay must stop")
	out := p.out.String()
	assert.Contains(t, out, "is lost")
	assert.Contains(t, out, "cdc-relay replay --since")
	require.NoError(t, <-written)
	var slots int
	require.NoError(t, f.pair.Standby.QueryRow(t, "", `SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'`, &slots))
	assert.Zero(t, slots, "the relay created a slot that skips rows")
	relaytest.Record(t, relaytest.Fault{Order: 86, Fault: "Postgres 15 failover (no failover slots)",
		Setup:   "primary stopped -m immediate under 4 writers, standby promoted",
		Figures: relaytest.Figures{Written: 4 * f.perWriter}, Bound: "–",
		Note: "the relay stops with the lost-slot repair (slot create, replay --since) rather than create a slot past the rows"})
}
