package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

const (
	window = 100 // CDC_RELAY_MAX_IN_FLIGHT of the fault tests
	maxTxn = 50  // rows per transaction, at most
)

// fixture is one test's outbox database, exchange, slot, a queue bound to
// everything with a collector on it, and the relay environment for them.
type fixture struct {
	dbURL, slot string
	got         *relaytest.Collector
	env         []string
}

func newFixture(t *testing.T, extraEnv ...string) *fixture {
	t.Helper()
	f := &fixture{dbURL: testenv.NewOutboxDatabase(t), slot: testenv.RandomName("t_slot_")}
	t.Cleanup(func() { testenv.DropSlot(t, f.dbURL, f.slot) })
	exchange := testenv.NewExchange(t)
	f.got = relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, exchange, "#")))
	f.env = relayEnv(f.dbURL, testenv.AMQPURL(t), f.slot, exchange, extraEnv...)
	return f
}

// TestSIGKILLMidStreamLosesNothing kills the relay process twice while rows
// flow. Nothing may be lost, each writer's order must hold, and duplicates
// are bounded by what can be unacknowledged at a kill: the window of
// unconfirmed messages, what was confirmed but not yet reported (at most a
// window's worth), and the two transactions straddling those positions.
func TestSIGKILLMidStreamLosesNothing(t *testing.T) {
	testenv.LongFaultTest(t)
	const writers, perWriter = 4, 5000
	f := newFixture(t, "CDC_RELAY_MAX_IN_FLIGHT=100")
	dbURL, got, env := f.dbURL, f.got, f.env

	p := start(t, env, "run")
	p.waitReady(t)
	written := make(chan error, 1)
	go func() { written <- relaytest.WriteAll(context.Background(), dbURL, writers, perWriter, maxTxn, "kill") }()

	var recovery time.Duration
	for kill := 1; kill <= 2; kill++ {
		require.Eventually(t, func() bool { return got.Distinct() >= kill*writers*perWriter/3 }, 90*time.Second, 2*time.Millisecond)
		p.signal(t, syscall.SIGKILL)
		killed := time.Now()
		require.Equal(t, -1, p.wait(t, 10*time.Second), "killed by a signal")
		p = start(t, env, "run")
		p.waitReady(t)
		recovery = max(recovery, time.Since(killed))
	}
	require.NoError(t, <-written)
	got.WaitDistinct(t, writers*perWriter, 120*time.Second)
	dups := got.Check(t, writers, perWriter)
	t.Logf("duplicates after 2 SIGKILLs: %d (bound %d per kill)", dups, 2*window+2*maxTxn)
	assert.LessOrEqual(t, dups, 2*(2*window+2*maxTxn))
	relaytest.Record(t, relaytest.Fault{Order: 10, Fault: "relay SIGKILL under load (×2)",
		Setup: "4 writers, transactions of up to 50 rows, window 100; the process restarted at once", Figures: got.Measure(writers, perWriter),
		Recovery: recovery, Bound: fmt.Sprintf("≤ 2·window + 2·transaction per kill (%d)", 2*window+2*maxTxn),
		Note: "recovery includes starting a new process"})
}

// TestSIGTERMDrainsAndExitsZero stops the relay mid-stream with SIGTERM: it
// reads the transaction it was in to its end, drains, exits 0 having
// reported everything the broker confirmed, so a restart resends nothing.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	const writers, perWriter = 2, 4000
	f := newFixture(t, "CDC_RELAY_MAX_IN_FLIGHT=100")
	dbURL, slot, got, env := f.dbURL, f.slot, f.got, f.env

	p := start(t, env, "run")
	p.waitReady(t)
	written := make(chan error, 1)
	go func() { written <- relaytest.WriteAll(context.Background(), dbURL, writers, perWriter, maxTxn, "term") }()
	require.Eventually(t, func() bool { return got.Distinct() >= writers*perWriter/3 }, 60*time.Second, 2*time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t, 20*time.Second))
	require.Contains(t, p.out.String(), `"msg":"stopped"`)
	require.Contains(t, p.out.String(), `"msg":"relay stopped"`)
	// The slot is free at once: its walsender is gone.
	require.Eventually(t, func() bool { return !slotActive(t, dbURL, slot) }, 10*time.Second, 20*time.Millisecond)
	received := got.Len()

	p = start(t, env, "run")
	p.waitReady(t)
	require.NoError(t, <-written)
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	dups := got.Check(t, writers, perWriter)
	t.Logf("received %d before SIGTERM; duplicates after restart: %d", received, dups)
	assert.Zero(t, dups, "a clean stop resends nothing")
	relaytest.Record(t, relaytest.Fault{Order: 15, Fault: "SIGTERM mid-stream, then a restart",
		Setup: "2 writers, transactions of up to 50 rows, window 100", Figures: got.Measure(writers, perWriter), Bound: "0"})
}

func slotActive(t *testing.T, dbURL, slot string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var active bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active))
	return active
}

func TestBadConfigSaysWhatToFix(t *testing.T) {
	t.Run("missing database URL exits 2 naming the variable", func(t *testing.T) {
		p := start(t, []string{"CDC_RELAY_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/"}, "run")
		require.Equal(t, 2, p.wait(t, 10*time.Second))
		assert.Contains(t, p.out.String(), "cdc-relay: config: CDC_RELAY_DATABASE_URL (--database-url): is required")
	})
	t.Run("bad window exits 2 naming the variable", func(t *testing.T) {
		p := start(t, relayEnv("postgres://h/db", "amqp://h/", "s", "x", "CDC_RELAY_MAX_IN_FLIGHT=-5"), "run")
		require.Equal(t, 2, p.wait(t, 10*time.Second))
		assert.Contains(t, p.out.String(), "CDC_RELAY_MAX_IN_FLIGHT (--max-in-flight): -5 is out of range")
	})
	t.Run("unknown command exits 2", func(t *testing.T) {
		p := start(t, nil, "frobnicate")
		require.Equal(t, 2, p.wait(t, 10*time.Second))
		assert.Contains(t, p.out.String(), `unknown command "frobnicate"`)
	})
	t.Run("missing table exits 1 naming the table", func(t *testing.T) {
		dbURL := testenv.NewDatabase(t) // no outbox
		slot := testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
		p := start(t, relayEnv(dbURL, testenv.AMQPURL(t), slot, testenv.NewExchange(t)), "run")
		require.Equal(t, 1, p.wait(t, 20*time.Second))
		assert.Contains(t, p.out.String(), "table public.outbox does not exist")
	})
	t.Run("publication without the table exits 1 with the fix", func(t *testing.T) {
		dbURL := testenv.NewOutboxDatabase(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, `CREATE TABLE other (id int); CREATE PUBLICATION wrong_pub FOR TABLE other`)
		require.NoError(t, err)
		conn.Close(ctx)
		slot := testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
		p := start(t, relayEnv(dbURL, testenv.AMQPURL(t), slot, testenv.NewExchange(t), "CDC_RELAY_PUBLICATION=wrong_pub"), "run")
		require.Equal(t, 1, p.wait(t, 20*time.Second))
		assert.Contains(t, p.out.String(), `publication \"wrong_pub\" does not include table public.outbox: ALTER PUBLICATION \"wrong_pub\" ADD TABLE \"public\".\"outbox\";`)
	})
	t.Run("unreachable broker keeps the relay alive and not ready", func(t *testing.T) {
		dbURL := testenv.NewOutboxDatabase(t)
		slot := testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
		p := start(t, relayEnv(dbURL, "amqp://guest:guest@127.0.0.1:1/", slot, "x"), "run")
		require.Eventually(t, func() bool {
			code, body := p.get(t, "/readyz")
			return code == http.StatusServiceUnavailable && assert.ObjectsAreEqual(true, containsAll(body, "connect to broker", "connection refused"))
		}, 20*time.Second, 20*time.Millisecond)
		code, _ := p.get(t, "/livez")
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, p.out.String(), `"msg":"session ended, reconnecting"`)
		p.signal(t, syscall.SIGTERM)
		require.Equal(t, 0, p.wait(t, 20*time.Second))
	})
	t.Run("broker credentials refused exits 1 naming the variable", func(t *testing.T) {
		dbURL := testenv.NewOutboxDatabase(t)
		slot := testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
		p := start(t, relayEnv(dbURL, "amqp://guest:wrong@127.0.0.1:5672/", slot, "x"), "run")
		require.Equal(t, 1, p.wait(t, 30*time.Second))
		assert.Contains(t, p.out.String(), "check CDC_RELAY_AMQP_URL")
	})
	t.Run("exchange of another kind exits 1 with the fix", func(t *testing.T) {
		dbURL := testenv.NewOutboxDatabase(t)
		slot := testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
		exchange := testenv.RandomName("t_x_")
		declareFanout(t, exchange)
		p := start(t, relayEnv(dbURL, testenv.AMQPURL(t), slot, exchange), "run")
		require.Equal(t, 1, p.wait(t, 30*time.Second))
		assert.Contains(t, p.out.String(), "must be a durable topic exchange")
	})
	t.Run("missing database exits 1 naming the variable", func(t *testing.T) {
		u, err := url.Parse(testenv.PostgresURL(t))
		require.NoError(t, err)
		u.Path = "/" + testenv.RandomName("t_none_")
		p := start(t, relayEnv(u.String(), testenv.AMQPURL(t), "s", "x"), "run")
		require.Equal(t, 1, p.wait(t, 30*time.Second))
		assert.Contains(t, p.out.String(), "check CDC_RELAY_DATABASE_URL")
	})
	t.Run("wal_level replica exits 1 with the fix", func(t *testing.T) {
		// A server of its own: the shared one cannot be switched to replica.
		serverURL := testenv.StartPostgres(t, testenv.PostgresOptions{Settings: map[string]string{"wal_level": "replica"}}).URL("")
		p := start(t, relayEnv(serverURL, testenv.AMQPURL(t), "s", testenv.NewExchange(t)), "run")
		require.Equal(t, 1, p.wait(t, 20*time.Second))
		assert.Contains(t, p.out.String(), `wal_level is \"replica\", logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical; and restart Postgres`)
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestStandbyTakesOverWhenTheActiveRelayDies runs two relays on one slot,
// as sidecars of a service with two replicas do: the second waits as a
// standby (alive, not ready) and streams within 10 s of the first one's
// SIGKILL, with nothing lost and order kept.
func TestStandbyTakesOverWhenTheActiveRelayDies(t *testing.T) {
	testenv.LongFaultTest(t)
	const writers, perWriter = 2, 4000
	f := newFixture(t, "CDC_RELAY_MAX_IN_FLIGHT=100")
	dbURL, got, env := f.dbURL, f.got, f.env

	active := start(t, env, "run")
	active.waitReady(t)
	standby := start(t, env, "run")
	require.Eventually(t, func() bool {
		code, body := standby.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"phase": "standby"`)
	}, 10*time.Second, 20*time.Millisecond)
	code, _ := standby.get(t, "/livez")
	require.Equal(t, http.StatusOK, code)

	written := make(chan error, 1)
	go func() {
		written <- relaytest.WriteAll(context.Background(), dbURL, writers, perWriter, maxTxn, "standby")
	}()
	require.Eventually(t, func() bool { return got.Distinct() >= writers*perWriter/4 }, 60*time.Second, 2*time.Millisecond)
	active.signal(t, syscall.SIGKILL)
	killed := time.Now()
	active.wait(t, 10*time.Second)
	require.Eventually(t, func() bool {
		code, _ := standby.get(t, "/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "standby did not take over; output:\n%s", standby.out.String())
	takeover := time.Since(killed)
	t.Logf("standby streaming %s after the SIGKILL", takeover.Round(time.Millisecond))

	require.NoError(t, <-written)
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	dups := got.Check(t, writers, perWriter)
	t.Logf("duplicates: %d", dups)
	assert.LessOrEqual(t, dups, 2*window+2*maxTxn)
	relaytest.Record(t, relaytest.Fault{Order: 80, Fault: "standby takeover (the active relay SIGKILLed)",
		Setup: "two relays on one slot, 2 writers, window 100", Figures: got.Measure(writers, perWriter),
		Recovery: takeover, Bound: fmt.Sprintf("≤ 2·window + 2·transaction (%d)", 2*window+2*maxTxn),
		Note: "the standby polls the slot's lock every second"})
}

// TestConfigFileRelaysSeveralDatabases runs one process for two databases
// (the "one relay Deployment for many databases" mode) plus a third entry
// whose table is missing: that relay stops with its reason, the others go on.
func TestConfigFileRelaysSeveralDatabases(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	exchange := testenv.NewExchange(t)
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, exchange, "#")))
	var dbs, slots []string
	for range 2 {
		db, slot := testenv.NewOutboxDatabase(t), testenv.RandomName("t_slot_")
		t.Cleanup(func() { testenv.DropSlot(t, db, slot) })
		dbs, slots = append(dbs, db), append(slots, slot)
	}
	broken := testenv.NewDatabase(t)
	path := filepath.Join(t.TempDir(), "relays.json")
	file := fmt.Sprintf(`{"databases": [
		{"name": "first", "database_url": "${FIRST_URL}", "slot": %q},
		{"name": "second", "database_url": %q, "slot": %q},
		{"name": "broken", "database_url": %q, "slot": "t_broken"}
	]}`, slots[0], dbs[1], slots[1], broken)
	require.NoError(t, os.WriteFile(path, []byte(file), 0o600))

	p := start(t, []string{
		"CDC_RELAY_CONFIG=" + path, "FIRST_URL=" + dbs[0], "CDC_RELAY_AMQP_URL=" + amqpURL,
		"CDC_RELAY_EXCHANGE=" + exchange, "CDC_RELAY_HTTP_ADDR=127.0.0.1:0", "CDC_RELAY_HEARTBEAT_INTERVAL=1s",
	}, "run")
	require.Eventually(t, func() bool {
		_, body := p.get(t, "/status")
		var st struct {
			Relays []struct {
				Name, Reason string
				Ready        bool
			}
		}
		if json.Unmarshal([]byte(body), &st) != nil || len(st.Relays) != 3 {
			return false
		}
		return st.Relays[0].Ready && st.Relays[1].Ready && strings.Contains(st.Relays[2].Reason, "table public.outbox does not exist")
	}, 20*time.Second, 20*time.Millisecond)

	ctx := context.Background()
	require.NoError(t, relaytest.Write(ctx, dbs[0], 0, 1, 100, 10, "first"))
	require.NoError(t, relaytest.Write(ctx, dbs[1], 1, 1, 100, 10, "second"))
	got.WaitDistinct(t, 200, 30*time.Second)
	assert.Zero(t, got.Check(t, 2, 100))

	code, body := p.get(t, "/status")
	require.Equal(t, http.StatusOK, code)
	var st struct {
		Ready  bool
		Relays []struct {
			Name, Phase string
			Ready       bool
			Published   int `json:"events_published"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.Relays, 3)
	assert.False(t, st.Ready)
	for _, r := range st.Relays {
		switch r.Name {
		case "first", "second":
			assert.True(t, r.Ready, r.Name)
			assert.Equal(t, 100, r.Published, r.Name)
		case "broken":
			assert.Equal(t, "stopped", r.Phase)
		}
	}
	_, metrics := p.get(t, "/metrics")
	for _, slot := range slots {
		assert.Contains(t, metrics, `cdc_relay_events_confirmed_total{slot="`+slot+`"} 100`)
	}
	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 1, p.wait(t, 20*time.Second), "non-zero: one relay stopped on a fatal error")
}

// TestLostSlotStopsTheRelayAndTheRepairDeliversEverything drops the slot
// while the relay is down and rows keep being written. The relay must refuse
// to recreate it silently; the documented repair (slot create, replay
// --since, restart) delivers every row, and the overlap carries the same
// message ids for consumers to dedup.
func TestLostSlotStopsTheRelayAndTheRepairDeliversEverything(t *testing.T) {
	f := newFixture(t)
	dbURL, slot, got, env := f.dbURL, f.slot, f.got, f.env
	ctx := context.Background()

	p := start(t, env, "run")
	p.waitReady(t)
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 1, 50, 10, "lost"))
	got.WaitDistinct(t, 50, 20*time.Second)
	// /status says where to replay from: the last confirmed commit.
	var repairFrom string
	require.Eventually(t, func() bool {
		_, body := p.get(t, "/status")
		var st struct {
			InFlight  int    `json:"in_flight"`
			Confirmed string `json:"confirmed_commit_time"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		repairFrom = st.Confirmed
		return st.InFlight == 0 && repairFrom != ""
	}, 10*time.Second, 20*time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t, 20*time.Second))

	// The slot is lost while the relay is down; writes go on.
	testenv.DropSlot(t, dbURL, slot)
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 51, 50, 10, "lost"))

	p = start(t, env, "run")
	require.Equal(t, 1, p.wait(t, 20*time.Second))
	out := p.out.String()
	assert.Contains(t, out, "is lost")
	assert.Contains(t, out, "cdc-relay slot create")
	assert.Contains(t, out, "cdc-relay replay --since")

	// The repair, as docs/operations.md gives it.
	create := start(t, env, "slot", "create")
	require.Equal(t, 0, create.wait(t, 20*time.Second), create.out.String())
	replay := start(t, env, "replay", "--since", repairFrom)
	require.Equal(t, 0, replay.wait(t, 60*time.Second), replay.out.String())
	p = start(t, env, "run")
	p.waitReady(t)
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 101, 20, 10, "lost"))

	got.WaitDistinct(t, 120, 30*time.Second)
	dups := got.Check(t, 1, 120)
	t.Logf("duplicates from the replay overlap: %d", dups)
	assert.LessOrEqual(t, dups, 10, "replay from the last confirmed commit resends at most that transaction")
	relaytest.Record(t, relaytest.Fault{Order: 90, Fault: "slot lost (dropped while the relay was down) and repaired",
		Setup: "the relay stops naming the repair; slot create, replay --since /status's confirmed_commit_time, restart", Figures: got.Measure(1, 120),
		Bound: "≤ the rows of the last confirmed transaction (10)",
		Note:  "50 rows were written while the slot was missing: replay delivers them"})
}

// declareFanout declares exchange as a fanout exchange, deleted at cleanup.
func declareFanout(t *testing.T, exchange string) {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL(t))
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, false, true, false, false, nil))
	t.Cleanup(func() {
		conn, err := amqp.Dial(testenv.AMQPURL(t))
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
}
