package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/httpserver"
	"github.com/saga-cdc/saga/cdc-relay/internal/metrics"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/tests/helpers/proctest"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/tcpproxy"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// env is one test's database, exchange and slot, and a relay on them.
type env struct {
	dbURL, amqpURL, exchange, slot string

	relay   *relay.Relay
	metrics *metrics.Metrics
	http    *httptest.Server
	done    chan error
	stop    context.CancelFunc
	opts    *relay.Options   // nil: short backoffs for tests
	exited  bool             // Run returned and done was read
	logs    *proctest.Output // the relay's JSON log lines
}

// newEnv makes a fresh outbox database and exchange and starts a relay on
// them. edit may change the config (a proxy address, a window size).
func newEnv(t *testing.T, edit func(*config.Config)) *env {
	t.Helper()
	return newEnvOn(t, testenv.NewOutboxDatabase(t), edit)
}

// newEnvOn is newEnv on an existing outbox database.
func newEnvOn(t *testing.T, dbURL string, edit func(*config.Config)) *env {
	t.Helper()
	return newEnvAt(t, dbURL, testenv.AMQPURL(t), edit)
}

// newEnvAt is newEnvOn with the broker at amqpURL (a node of the test's own).
func newEnvAt(t *testing.T, dbURL, amqpURL string, edit func(*config.Config)) *env {
	t.Helper()
	return newEnvOpts(t, dbURL, amqpURL, nil, edit)
}

// newEnvOpts is newEnvAt with the relay's options (nil: short backoffs).
func newEnvOpts(t *testing.T, dbURL, amqpURL string, opts *relay.Options, edit func(*config.Config)) *env {
	t.Helper()
	e := &env{
		opts:     opts,
		dbURL:    dbURL,
		amqpURL:  amqpURL,
		exchange: testenv.NewExchangeOn(t, amqpURL),
		slot:     testenv.RandomName("t_slot_"),
	}
	// Registered before the relay's own cleanup, so it runs after the relay stopped.
	t.Cleanup(func() { testenv.DropSlot(t, e.dbURL, e.slot) })
	cfg := config.Defaults()
	cfg.DatabaseURL, cfg.AMQPURL, cfg.Slot, cfg.Exchange = e.dbURL, e.amqpURL, e.slot, e.exchange
	cfg.HTTPAddr, cfg.HeartbeatInterval = "127.0.0.1:0", time.Second
	if edit != nil {
		edit(&cfg)
	}
	require.NoError(t, cfg.Validate())
	e.start(t, cfg)
	return e
}

func (e *env) start(t *testing.T, cfg config.Config) {
	t.Helper()
	opts := relay.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	if e.opts != nil {
		opts = *e.opts
	}
	e.logs = &proctest.Output{}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(testWriter{t}, e.logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.metrics = metrics.New(cfg.Slot)
	e.relay = relay.New(cfg, opts, log, e.metrics)
	e.http = httptest.NewServer(httpserver.Handler(e.relay.Status, e.metrics.Handler()))
	t.Cleanup(e.http.Close)
	ctx, cancel := context.WithCancel(context.Background())
	e.done = make(chan error, 1)
	go func() { e.done <- e.relay.Run(ctx) }()
	e.stop = cancel
	t.Cleanup(func() {
		cancel()
		if e.exited {
			return
		}
		select {
		case err := <-e.done:
			assert.NoError(t, err, "relay.Run after stop")
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop within 30s")
		}
	})
}

// exit waits for Run to return on its own (a fatal error) and returns its error.
func (e *env) exit(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-e.done:
		e.exited = true
		return err
	case <-time.After(within):
		t.Fatalf("relay still running after %s: %+v", within, e.relay.Status())
		return nil
	}
}

// testWriter sends the relay's logs to the test log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}

func (e *env) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return e.relay.Status().Ready }, 30*time.Second, 10*time.Millisecond,
		"relay not ready: %+v", e.relay.Status())
}

// slotFlush is the slot's confirmed_flush_lsn as Postgres sees it.
func slotFlush(t *testing.T, dbURL, slot string) uint64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var lsn uint64
	require.NoError(t, conn.QueryRow(ctx, `SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn))
	return lsn
}

func TestRelayDeliversConcurrentWritersInCommitOrder(t *testing.T) {
	const writers, perWriter = 4, 2500
	e := newEnv(t, nil)
	q := testenv.NewQueue(t, e.exchange, "rows.#")
	got := relaytest.Collect(testenv.Consume(t, q))
	e.waitReady(t)

	relaytest.WriteConcurrently(t, e.dbURL, writers, perWriter, 50, "rows.test")
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	require.Zero(t, got.Check(t, writers, perWriter), "duplicates when nothing failed")

	// Every message maps its row as docs/contracts.md, "Message mapping", says.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	type row struct {
		id, aggType, aggID, eventType, key, payload string
		created                                     time.Time
	}
	rows := map[string]row{}
	rs, err := conn.Query(ctx, `SELECT id::text, aggregate_type, aggregate_id, event_type, routing_key, payload::text, created_at FROM outbox`)
	require.NoError(t, err)
	for rs.Next() {
		var r row
		require.NoError(t, rs.Scan(&r.id, &r.aggType, &r.aggID, &r.eventType, &r.key, &r.payload, &r.created))
		rows[r.id] = r
	}
	require.NoError(t, rs.Err())
	require.Len(t, rows, writers*perWriter)

	source := "/cdc-relay/" + dbName(t, e.dbURL) + "/public.outbox"
	for _, m := range got.Messages() {
		r, ok := rows[m.MessageId]
		require.True(t, ok, "message %s has no row", m.MessageId)
		require.Equal(t, r.payload, string(m.Body))
		require.Equal(t, "test.row", m.Type)
		require.Equal(t, "application/json", m.ContentType)
		require.Equal(t, amqp.Persistent, m.DeliveryMode)
		require.Equal(t, "rows.test", m.RoutingKey)
		require.Equal(t, e.exchange, m.Exchange)
		require.Equal(t, r.created.Unix(), m.Timestamp.Unix(), "timestamp = created_at (AMQP keeps seconds)")
		require.Equal(t, amqp.Table{
			"writer":                  int64(m.Writer),
			"seq_text":                itoa(m.Seq),
			"even":                    m.Seq%2 == 0,
			"aggregate_type":          "test",
			"aggregate_id":            itoa(m.Writer),
			"cloudEvents_specversion": "1.0",
			"cloudEvents_id":          r.id,
			"cloudEvents_source":      source,
			"cloudEvents_type":        "test.row",
			"cloudEvents_time":        r.created.UTC().Format(time.RFC3339Nano),
			"cloudEvents_subject":     itoa(m.Writer),
		}, m.Headers)
	}

	// Once everything is confirmed the slot is acknowledged up to the end.
	require.Eventually(t, func() bool {
		return slotFlush(t, e.dbURL, e.slot) >= currentWAL(t, e.dbURL)
	}, 10*time.Second, 20*time.Millisecond, "slot at %d, WAL at %d, relay %+v", slotFlush(t, e.dbURL, e.slot), currentWAL(t, e.dbURL), e.relay.Status())
}

func itoa(n int) string { return strconv.Itoa(n) }

func dbName(t *testing.T, dbURL string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	require.NoError(t, err)
	return cfg.Database
}

func currentWAL(t *testing.T, dbURL string) uint64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var lsn uint64
	require.NoError(t, conn.QueryRow(ctx, `SELECT (pg_current_wal_flush_lsn() - '0/0')::bigint`).Scan(&lsn))
	return lsn
}

func TestRelayRecoversWhenTheBrokerConnectionIsCut(t *testing.T) {
	testenv.LongFaultTest(t)
	const writers, perWriter = 2, 3000
	amqpURL := testenv.AMQPURL(t)
	u, err := amqp.ParseURI(amqpURL)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host+":"+itoa(u.Port))
	u.Host, u.Port = "127.0.0.1", mustPort(t, proxy.Addr())
	e := newEnv(t, func(c *config.Config) { c.AMQPURL = u.String(); c.MaxInFlight = 200 })
	q := testenv.NewQueue(t, e.exchange, "#")
	got := relaytest.Collect(testenv.Consume(t, q))
	e.waitReady(t)

	done := make(chan error, 1)
	go func() { done <- relaytest.WriteAll(context.Background(), e.dbURL, writers, perWriter, 20, "cut") }()
	// Cut every broker connection twice while rows flow.
	var recovery time.Duration
	for i := 1; i <= 2; i++ {
		require.Eventually(t, func() bool { return got.Distinct() >= i*writers*perWriter/4 }, 60*time.Second, 5*time.Millisecond)
		cut := time.Now()
		proxy.DropAll()
		require.Eventually(t, func() bool {
			st := e.relay.Status()
			return st.Ready && st.StreamingFrom != nil && st.StreamingFrom.After(cut)
		}, 10*time.Second, time.Millisecond)
		recovery = max(recovery, e.relay.Status().StreamingFrom.Sub(cut))
	}
	require.NoError(t, <-done)
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	dups := got.Check(t, writers, perWriter)
	t.Logf("duplicates after 2 cuts: %d", dups)
	relaytest.Record(t, relaytest.Fault{Order: 25, Fault: "broker connection cut (×2)",
		Setup: "a TCP proxy drops every connection, twice, under 2 writers (window 200)", Figures: got.Measure(writers, perWriter),
		Recovery: recovery, Bound: "≤ window + transaction per cut (220)",
		Note: "the test's backoff is 50–500 ms; the relay's default is 250 ms doubling to 2 s"})
	e.waitReady(t)
	assert.GreaterOrEqual(t, e.relay.Status().Reconnects, uint64(2))
	assert.Contains(t, scrape(t, e.http.URL), `cdc_relay_reconnects_total{slot="`+e.slot+`",target="broker"}`)
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return p
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestUnroutableRowHoldsTheSlotUntilAQueueIsBound(t *testing.T) {
	e := newEnv(t, nil)
	routed := testenv.NewQueue(t, e.exchange, "routed")
	got := relaytest.Collect(testenv.Consume(t, routed))
	e.waitReady(t)
	ctx := context.Background()

	// Row 1 is routable; row 2 goes nowhere; row 3 is routable again.
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 1, 1, 1, "routed"))
	got.WaitDistinct(t, 1, 20*time.Second)
	before := slotFlush(t, e.dbURL, e.slot)
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 2, 1, 1, "nowhere"))
	walAfterUnroutable := currentWAL(t, e.dbURL)
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 3, 1, 1, "routed"))

	// /readyz and a metric say why, and the slot stays behind the row.
	require.Eventually(t, func() bool {
		resp, err := http.Get(e.http.URL + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "unroutable") && strings.Contains(string(b), "nowhere")
	}, 20*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return !strings.Contains(scrape(t, e.http.URL), `cdc_relay_events_returned_total{slot="`+e.slot+`"} 0`)
	}, 10*time.Second, 20*time.Millisecond)
	// The log says which message and routing key (docs/contracts.md,
	// "Observability": the log keys).
	assert.Contains(t, e.logs.String(), `"routing_key":"nowhere"`)
	assert.Contains(t, e.logs.String(), `"slot":"`+e.slot+`"`)
	flush := slotFlush(t, e.dbURL, e.slot)
	require.GreaterOrEqual(t, flush, before)
	require.Less(t, flush, walAfterUnroutable, "the slot moved past the unroutable row")

	// Once a queue is bound, it and everything after it arrive.
	nowhere := testenv.NewQueue(t, e.exchange, "nowhere")
	lost := relaytest.Collect(testenv.Consume(t, nowhere))
	lost.WaitDistinct(t, 1, 20*time.Second)
	got.WaitDistinct(t, 2, 20*time.Second)
	e.waitReady(t)
	assert.Equal(t, 2, lost.Messages()[0].Seq)
	seqs := []int{}
	for _, m := range got.Messages() {
		seqs = append(seqs, m.Seq)
	}
	assert.Equal(t, 3, seqs[len(seqs)-1])
	require.Eventually(t, func() bool { return slotFlush(t, e.dbURL, e.slot) > walAfterUnroutable }, 10*time.Second, 20*time.Millisecond)
}

func TestIdleOutboxStillAdvancesTheSlot(t *testing.T) {
	e := newEnv(t, nil)
	e.waitReady(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE busy (id bigserial PRIMARY KEY, v text)`)
	require.NoError(t, err)

	start := slotFlush(t, e.dbURL, e.slot)
	var last uint64
	// Steady writes to another table; the slot must follow them.
	for round := range 5 {
		for range 20 {
			_, err := conn.Exec(ctx, `INSERT INTO busy (v) SELECT repeat('x', 500) FROM generate_series(1, 20)`)
			require.NoError(t, err)
		}
		wal := currentWAL(t, e.dbURL)
		require.Eventually(t, func() bool { return slotFlush(t, e.dbURL, e.slot) >= wal }, 15*time.Second, 20*time.Millisecond,
			"round %d: slot stuck at %d while WAL is at %d", round, slotFlush(t, e.dbURL, e.slot), wal)
		last = wal
	}
	require.Greater(t, last, start)

	var retained int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&retained))
	assert.Less(t, retained, int64(1<<20), "lag after the writes stopped")
}

// A headers column that is not a JSON object still gets delivered, marked.
func TestRowWithInvalidHeadersIsDeliveredMarked(t *testing.T) {
	e := newEnv(t, nil)
	q := testenv.NewQueue(t, e.exchange, "#")
	msgs := testenv.Consume(t, q)
	e.waitReady(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	id := uuid.New()
	_, err = conn.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, routing_key, payload, headers)
		VALUES ($1, 'order', '9', 'order.created', 'k', '{"a":1}', '["not", "an object"]')`, id)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		assert.Equal(t, id.String(), m.MessageId)
		assert.Equal(t, `["not", "an object"]`, m.Headers["cdc_relay_invalid_headers"])
		assert.Equal(t, "9", m.Headers["aggregate_id"])
	case <-time.After(20 * time.Second):
		t.Fatal("row with invalid headers was not delivered")
	}
	assert.Contains(t, scrape(t, e.http.URL), `cdc_relay_rows_invalid_total{slot="`+e.slot+`"} 1`)
}

// Other tables of the publication, and updates and deletes of the outbox,
// are not events: only outbox inserts are published.
func TestOnlyOutboxInsertsArePublished(t *testing.T) {
	dbURL := testenv.NewOutboxDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE other (id int PRIMARY KEY, v text);
		ALTER TABLE outbox REPLICA IDENTITY FULL;
		ALTER PUBLICATION cdc_relay_outbox ADD TABLE other;
		ALTER PUBLICATION cdc_relay_outbox SET (publish = 'insert, update, delete, truncate')`)
	require.NoError(t, err)

	e := newEnvOn(t, dbURL, nil)
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)

	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 1, 2, 2, "k"))
	_, err = conn.Exec(ctx, `INSERT INTO other VALUES (1, 'a');
		UPDATE outbox SET aggregate_id = 'changed';
		DELETE FROM outbox WHERE payload->>'seq' = '1';
		UPDATE other SET v = 'b'`)
	require.NoError(t, err)
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 3, 1, 1, "k"))
	got.WaitDistinct(t, 3, 20*time.Second)
	// The last write's commit is acknowledged: nothing after it is pending.
	wal := currentWAL(t, dbURL)
	require.Eventually(t, func() bool { return slotFlush(t, dbURL, e.slot) >= wal }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 3, got.Len(), "only the three outbox inserts")
	assert.Equal(t, 0, got.Check(t, 1, 3))
}

// The relay declares its exchange as a durable topic exchange at start
// (docs/contracts.md, "Message mapping") when nothing else has.
func TestRelayDeclaresItsExchange(t *testing.T) {
	name := testenv.RandomName("t_x_")
	e := newEnv(t, func(c *config.Config) { c.Exchange = name })
	t.Cleanup(func() {
		conn, err := amqp.Dial(e.amqpURL)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(name, false, false)
		}
	})
	e.waitReady(t)
	conn, err := amqp.Dial(e.amqpURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	// It exists (a passive declare fails otherwise), and as a durable topic
	// exchange (an equivalent declare fails with 406 otherwise).
	require.NoError(t, ch.ExchangeDeclarePassive(name, amqp.ExchangeTopic, true, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil))
}
