package relay_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// The fault tests' load: writers in transactions of up to faultTxn rows, a
// window of faultWindow unconfirmed messages. A fault may resend what was in
// flight and the rows of the transaction being read: at most faultWindow +
// faultTxn.
const (
	faultWriters = 4
	faultWindow  = 100
	faultTxn     = 10
)

// faultEnv is one fault test's database on the test's own Postgres, a relay
// with the production backoff on the test's own broker, and a collector
// that consumes through broker restarts.
type faultEnv struct {
	*env
	got *relaytest.Collector
}

func newFaultEnv(t *testing.T, pg *testenv.Postgres, mq *testenv.RabbitMQ) *faultEnv {
	t.Helper()
	dbURL := pg.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	require.NoError(t, migrations.Apply(ctx, conn, migrations.Outbox()))
	conn.Close(ctx)
	e := newEnvOpts(t, dbURL, mq.URL(), &relay.Options{DrainTimeout: 3 * time.Second}, func(c *config.Config) {
		c.MaxInFlight = faultWindow
		c.HeartbeatInterval = 500 * time.Millisecond
	})
	q := testenv.NewQueueOn(t, mq.URL(), e.exchange, "#")
	f := &faultEnv{env: e, got: relaytest.CollectThrough(t, mq.URL(), q)}
	e.waitReady(t)
	return f
}

// write starts the writers (they carry on through server restarts) and
// returns the channel of their result.
func (f *faultEnv) write(perWriter int) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		done <- relaytest.WriteAllThrough(ctx, f.dbURL, faultWriters, perWriter, faultTxn, "fault")
	}()
	return done
}

// recovered waits until the relay streams again in a session begun after
// down (the fault), and returns how long after back (the server's return)
// that was: 0 when the relay was back before the server said it was (a
// broker accepts connections before start_app returns).
func (f *faultEnv) recovered(t *testing.T, down, back time.Time, within time.Duration) time.Duration {
	t.Helper()
	var took time.Duration
	require.Eventually(t, func() bool {
		st := f.relay.Status()
		if !st.Ready || st.StreamingFrom == nil || !st.StreamingFrom.After(down) {
			return false
		}
		took = max(0, st.StreamingFrom.Sub(back))
		return true
	}, within, 5*time.Millisecond, "not streaming again %s after the server came back: %+v", within, f.relay.Status())
	return took
}

// settle waits for the writers and every row, then measures and asserts:
// nothing lost, commit order per writer, duplicates within the bound.
func (f *faultEnv) settle(t *testing.T, written <-chan error, perWriter int) relaytest.Figures {
	t.Helper()
	require.NoError(t, <-written)
	f.got.WaitDistinct(t, faultWriters*perWriter, 90*time.Second)
	time.Sleep(200 * time.Millisecond) // late duplicates
	fig := f.got.Measure(faultWriters, perWriter)
	assert.Zero(t, fig.Lost, "rows lost")
	assert.Zero(t, fig.OrderViolations, "rows out of commit order")
	assert.LessOrEqual(t, fig.Duplicates, faultWindow+faultTxn, "duplicates over the window and the open transaction")
	return fig
}

// TestServerFaults restarts the servers under the relay, on servers of the
// test's own: Postgres and the broker mid-stream, two outages 5 s apart, and
// a broker alarm. After each, nothing is lost, order holds, duplicates stay
// within what was in flight, and the relay is streaming again within 3 s of
// the server's return.
func TestServerFaults(t *testing.T) {
	testenv.LongFaultTest(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	mq := testenv.StartRabbitMQ(t)
	const perWriter = 2500

	t.Run("Postgres restart mid-stream", func(t *testing.T) {
		f := newFaultEnv(t, pg, mq)
		written := f.write(perWriter)
		f.got.WaitDistinct(t, faultWriters*perWriter/3, 60*time.Second)
		down := time.Now()
		pg.Restart(t, "fast")
		back := time.Now()
		took := f.recovered(t, down, back, 10*time.Second)
		fig := f.settle(t, written, perWriter)
		t.Logf("Postgres restart: %+v, streaming again %s after it was back", fig, took.Round(time.Millisecond))
		assert.Less(t, took, 3*time.Second)
		logs := f.logs.String()
		// The stream ends with CommandComplete when the walsender gets to
		// say goodbye, or a reset connection when it does not: either way it
		// is logged as what it is.
		assert.NotContains(t, logs, "unexpected message", "the stream's end is logged as what it is")
		if pg.Major < 17 {
			// Before 17, Postgres writes a logical slot's position at
			// shutdown only when restart_lsn moved: the relay's own is ahead.
			assert.Contains(t, logs, "resuming from this relay's confirmed position")
		} else {
			t.Logf("Postgres %d persists the slot's confirmed position at shutdown: the relay did not need its own", pg.Major)
		}
		relaytest.Record(t, relaytest.Fault{Order: 40, Fault: "Postgres restart mid-stream",
			Setup: "pg_ctl restart -m fast under 4 writers", Figures: fig, Recovery: took,
			Bound: fmt.Sprintf("≤ window + transaction (%d)", faultWindow+faultTxn),
			Note:  "the relay resumes from its own confirmed position when the slot's persisted one is older"})
	})

	t.Run("broker restart mid-stream", func(t *testing.T) {
		f := newFaultEnv(t, pg, mq)
		written := f.write(perWriter)
		f.got.WaitDistinct(t, faultWriters*perWriter/3, 60*time.Second)
		down := time.Now()
		mq.StopApp(t)
		time.Sleep(time.Second)
		mq.StartApp(t)
		back := time.Now()
		took := f.recovered(t, down, back, 10*time.Second)
		fig := f.settle(t, written, perWriter)
		t.Logf("broker restart: %+v, streaming again %s after it was back", fig, took.Round(time.Millisecond))
		assert.Less(t, took, 3*time.Second)
		relaytest.Record(t, relaytest.Fault{Order: 30, Fault: "broker restart mid-stream",
			Setup: "rabbitmqctl stop_app, 1 s, start_app under 4 writers", Figures: fig, Recovery: took,
			Bound: fmt.Sprintf("≤ window + transaction (%d)", faultWindow+faultTxn)})
	})

	t.Run("two outages 5 s apart", func(t *testing.T) {
		f := newFaultEnv(t, pg, mq)
		written := f.write(perWriter)
		f.got.WaitDistinct(t, faultWriters*perWriter/4, 60*time.Second)
		down := time.Now()
		mq.StopApp(t)
		time.Sleep(time.Second)
		mq.StartApp(t)
		back := time.Now()
		first := f.recovered(t, down, back, 10*time.Second)
		time.Sleep(5*time.Second - time.Since(back))
		down = time.Now()
		pg.Restart(t, "fast")
		back = time.Now()
		second := f.recovered(t, down, back, 10*time.Second)
		fig := f.settle(t, written, perWriter)
		t.Logf("two outages: %+v, streaming again %s and %s after each", fig, first.Round(time.Millisecond), second.Round(time.Millisecond))
		assert.Less(t, first, 3*time.Second, "after the broker")
		assert.Less(t, second, 3*time.Second, "after Postgres, 5 s later: the backoff started over")
		relaytest.Record(t, relaytest.Fault{Order: 45, Fault: "broker restart, then Postgres restart 5 s later",
			Setup: "both under 4 writers", Figures: fig, Recovery: max(first, second),
			Bound: fmt.Sprintf("≤ 2 × (window + transaction) (%d)", 2*(faultWindow+faultTxn)),
			Note:  fmt.Sprintf("recovery %s after the broker, %s after Postgres", first.Round(time.Millisecond), second.Round(time.Millisecond))})
	})

	t.Run("a body over the broker's max_message_size is a poison row", func(t *testing.T) {
		// Read by each new channel: set before the relay connects.
		mq.MustCtl(t, "eval", "application:set_env(rabbit, max_message_size, 4096).")
		t.Cleanup(func() { _, _ = mq.Ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).") })
		dbURL := pg.NewDatabase(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		require.NoError(t, migrations.Apply(ctx, conn, migrations.Outbox()))
		e := newEnvOpts(t, dbURL, mq.URL(), &relay.Options{DrainTimeout: 3 * time.Second}, func(c *config.Config) { c.Poison = config.PoisonPark })
		got := relaytest.CollectThrough(t, mq.URL(), testenv.NewQueueOn(t, mq.URL(), e.exchange, "#"))
		e.waitReady(t)
		parked := relaytest.CollectThrough(t, mq.URL(), e.exchange+".poison")

		require.NoError(t, relaytest.Write(ctx, dbURL, 0, 1, 1, 1, "size"))
		var id string
		require.NoError(t, conn.QueryRow(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
			VALUES ('test', '0', 'test.row', 'size', jsonb_build_object('writer', 0, 'seq', 2, 'pad', repeat('x', 8000))) RETURNING id::text`).Scan(&id))
		require.NoError(t, relaytest.Write(ctx, dbURL, 0, 3, 1, 1, "size"))

		got.WaitDistinct(t, 2, 30*time.Second)
		assert.Equal(t, []int{1, 3}, []int{got.Messages()[0].Seq, got.Messages()[len(got.Messages())-1].Seq})
		require.Eventually(t, func() bool { return parked.Len() == 1 }, 30*time.Second, 10*time.Millisecond, "not parked")
		p := parked.Messages()[0]
		assert.Equal(t, id, p.MessageId)
		assert.Equal(t, "payload", p.Headers["cdc_relay_poison_field"])
		assert.Contains(t, p.Headers["cdc_relay_poison_reason"], "over max_message_size 4096")
		assert.Contains(t, e.logs.String(), "message larger than the broker's max_message_size")
	})

	t.Run("broker memory alarm", func(t *testing.T) {
		f := newFaultEnv(t, pg, mq)
		restore := func() { _, _ = mq.Ctl("set_vm_memory_high_watermark", "0.4") }
		t.Cleanup(restore) // even when the test fails
		require.NoError(t, relaytest.Write(context.Background(), f.dbURL, 0, 1, 10, 5, "fault"))
		f.got.WaitDistinct(t, 10, 20*time.Second)
		reconnects := f.relay.Status().Reconnects

		mq.MustCtl(t, "set_vm_memory_high_watermark", "absolute", "1")
		alarm := time.Now()
		require.NoError(t, relaytest.Write(context.Background(), f.dbURL, 0, 11, 100, 10, "fault"))
		require.Eventually(t, func() bool { return f.relay.Status().BrokerBlocked }, 20*time.Second, 10*time.Millisecond)
		code, body := get(t, f.http.URL+"/readyz")
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Contains(t, body, "broker blocked the connection")
		assert.Equal(t, 1.0, metric(t, f.env, `cdc_relay_broker_blocked{slot="`+f.slot+`"}`))
		time.Sleep(2 * time.Second)
		assert.Less(t, f.got.Distinct(), 110, "published while blocked")
		assert.Equal(t, reconnects, f.relay.Status().Reconnects, "an alarm is not a reason to reconnect")
		assert.Equal(t, 1, strings.Count(f.logs.String(), "the broker blocked the connection"), "one line, no error spam")

		restore()
		cleared := time.Now()
		f.got.WaitDistinct(t, 110, 30*time.Second)
		f.waitReady(t)
		took := time.Since(cleared)
		assert.Equal(t, 0.0, metric(t, f.env, `cdc_relay_broker_blocked{slot="`+f.slot+`"}`))
		fig := f.got.Measure(1, 110)
		assert.Zero(t, fig.Lost)
		assert.Zero(t, fig.OrderViolations)
		assert.Zero(t, fig.Duplicates)
		relaytest.Record(t, relaytest.Fault{Order: 50, Fault: "broker memory alarm", Figures: fig, Recovery: took,
			Setup: "set_vm_memory_high_watermark absolute 1, 100 rows, then back to 0.4",
			Bound: "0: the connection stays up",
			Note:  fmt.Sprintf("blocked within %s of the alarm, no reconnect; /readyz, /status and cdc_relay_broker_blocked say so", time.Since(alarm).Round(time.Second))})

		// A stop while blocked still ends within the drain time.
		mq.MustCtl(t, "set_vm_memory_high_watermark", "absolute", "1")
		require.NoError(t, relaytest.Write(context.Background(), f.dbURL, 0, 111, 50, 10, "fault"))
		require.Eventually(t, func() bool { return f.relay.Status().BrokerBlocked }, 20*time.Second, 10*time.Millisecond)
		began := time.Now()
		f.stop()
		require.NoError(t, f.exit(t, 30*time.Second))
		stopped := time.Since(began)
		t.Logf("stopped %s after SIGTERM while blocked", stopped.Round(time.Millisecond))
		assert.Less(t, stopped, 3*time.Second+2*time.Second, "the drain time is 3 s")
		restore()
	})
}
