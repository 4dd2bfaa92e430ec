package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/tcpproxy"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// exec runs SQL on dbURL.
func exec(t *testing.T, dbURL, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
}

// partitionedOutbox is the outbox table of docs/contracts.md, partitioned by
// range of created_at, with partitions for 2020 and 2021 and no publication:
// the relay creates it.
const partitionedOutbox = `CREATE TABLE outbox (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	aggregate_type text NOT NULL, aggregate_id text NOT NULL, event_type text NOT NULL, routing_key text NOT NULL,
	payload jsonb NOT NULL, headers jsonb NOT NULL DEFAULT '{}'::jsonb,
	created_at timestamptz NOT NULL DEFAULT now(),
	seq bigint GENERATED ALWAYS AS IDENTITY,
	PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE outbox_2020 PARTITION OF outbox FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE outbox_2021 PARTITION OF outbox FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');`

// writeYears inserts rows seq first..first+n-1 of writer 0 in one
// transaction, each into the year 2020 + seq%years, so consecutive rows land
// in different partitions.
func writeYears(t *testing.T, dbURL string, first, n, years int) {
	t.Helper()
	exec(t, dbURL, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, created_at)
		SELECT 'test', '0', 'test.row', 'part', jsonb_build_object('writer', 0, 'seq', g),
		       make_timestamptz(2020 + g % $3, 6, 1, 0, 0, 0, 'UTC')
		FROM generate_series($1::int, $2::int) AS g ORDER BY g`, first, first+n-1, years)
}

// A partitioned outbox (drop old partitions instead of DELETE) delivers the
// rows of every partition, those attached before the slot existed and one
// attached while the relay streams, in commit order.
func TestPartitionedOutboxDeliversEveryPartition(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	exec(t, dbURL, partitionedOutbox)
	e := newEnvOn(t, dbURL, nil)
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "part")))
	e.waitReady(t)

	var viaRoot bool
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `SELECT pubviaroot FROM pg_publication WHERE pubname = $1`, config.DefaultPublication).Scan(&viaRoot))
	assert.True(t, viaRoot, "the relay creates the publication of a partitioned table with publish_via_partition_root")

	for i := range 10 {
		writeYears(t, dbURL, 1+i*50, 50, 2)
	}
	exec(t, dbURL, `CREATE TABLE outbox_2022 (LIKE outbox INCLUDING DEFAULTS);
		ALTER TABLE outbox ATTACH PARTITION outbox_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01')`)
	for i := range 30 {
		writeYears(t, dbURL, 501+i*50, 50, 3)
	}
	var perPartition []int
	rows, err := conn.Query(ctx, `SELECT count(*)::int FROM outbox GROUP BY tableoid ORDER BY tableoid`)
	require.NoError(t, err)
	perPartition, err = pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Len(t, perPartition, 3, "rows in three partitions")

	got.WaitDistinct(t, 2000, 60*time.Second)
	assert.Zero(t, got.Check(t, 1, 2000))
	wal := currentWAL(t, dbURL)
	require.Eventually(t, func() bool { return slotFlush(t, dbURL, e.slot) >= wal }, 10*time.Second, 20*time.Millisecond)
}

// A publication on a partitioned outbox that names the partitions (without
// publish_via_partition_root) would hide their rows: the relay refuses it
// at start, in one line that says the fix.
func TestPublicationOfPartitionsIsRefused(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	exec(t, dbURL, partitionedOutbox+` CREATE PUBLICATION cdc_relay_outbox FOR TABLE outbox WITH (publish = 'insert')`)
	e := newEnvOn(t, dbURL, nil)
	err := e.exit(t, 30*time.Second)
	require.ErrorIs(t, err, relay.ErrFatal)
	assert.Equal(t, `publication "cdc_relay_outbox" publishes the partitions of the partitioned table public.outbox under their own names, `+
		`so their rows would not reach the relay as the outbox's: ALTER PUBLICATION "cdc_relay_outbox" SET (publish_via_partition_root = true);`, err.Error())
}

// Writers hold transactions open while the relay starts for the first time:
// the slot's creation waits for them, they commit before its consistent
// point, and their rows are not in its stream. They must still arrive (from
// the slot's snapshot), first and in order. Several tries, each on a fresh
// database.
func TestFirstStartLosesNoRowCommittedWhileTheSlotIsCreated(t *testing.T) {
	const writers, perWriter = 4, 50
	for try := 1; try <= 3; try++ {
		t.Run(fmt.Sprint("try ", try), func(t *testing.T) {
			dbURL := testenv.NewOutboxDatabase(t)
			ctx := context.Background()
			txs := make([]pgx.Tx, writers)
			for w := range writers {
				conn, err := pgx.Connect(ctx, dbURL)
				require.NoError(t, err)
				t.Cleanup(func() { conn.Close(context.Background()) })
				tx, err := conn.Begin(ctx)
				require.NoError(t, err)
				_, err = tx.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
					VALUES ('test', $1::int::text, 'test.row', 'first', jsonb_build_object('writer', $1::int, 'seq', 1))`, w)
				require.NoError(t, err)
				txs[w] = tx
			}
			e := newEnvOn(t, dbURL, nil)
			got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "first")))
			// The relay found the outbox empty (the rows are not committed)
			// and now waits for these transactions to create its slot.
			require.Eventually(t, func() bool { return slotExists(t, dbURL, e.slot) }, 30*time.Second, 10*time.Millisecond)
			time.Sleep(time.Duration(try) * 100 * time.Millisecond) // let the creation wait a varying while
			for _, tx := range txs {
				require.NoError(t, tx.Commit(ctx))
			}
			e.waitReady(t)
			for w := range writers {
				require.NoError(t, relaytest.Write(ctx, dbURL, w, 2, perWriter-1, 10, "first"))
			}
			got.WaitDistinct(t, writers*perWriter, 60*time.Second)
			assert.Zero(t, got.Check(t, writers, perWriter), "duplicates")
			assert.Contains(t, e.logs.String(), "first start: published the outbox rows committed while the slot was being created")
		})
	}
}

func slotExists(t *testing.T, dbURL, slot string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var ok bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot).Scan(&ok))
	return ok
}

// A second relay that starts while the first is still creating the slot
// (active, with no confirmed position yet) waits as a standby: it must not
// stop with "slot is lost".
func TestSecondRelayDuringSlotCreationIsAStandby(t *testing.T) {
	dbURL := testenv.NewOutboxDatabase(t)
	exec(t, dbURL, `CREATE TABLE busy (v int)`)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO busy VALUES (1)`) // an xid the slot's creation waits for
	require.NoError(t, err)

	first := newEnvOn(t, dbURL, nil)
	require.Eventually(t, func() bool { return slotExists(t, dbURL, first.slot) }, 30*time.Second, 10*time.Millisecond)
	second := newEnvOn(t, dbURL, func(c *config.Config) { c.Slot = first.slot })
	require.Eventually(t, func() bool { return second.relay.Status().Phase == relay.PhaseStandby }, 10*time.Second, 10*time.Millisecond,
		"second relay: %+v", second.relay.Status())
	require.NoError(t, tx.Commit(ctx))
	first.waitReady(t)
	time.Sleep(500 * time.Millisecond)
	st := second.relay.Status()
	assert.Equal(t, relay.PhaseStandby, st.Phase, "%+v", st)
	assert.NotContains(t, st.LastError, "lost")
}

// After a returned message M, nothing committed after M may reach the broker
// before M: the retry publishes M alone. A routable row written a second
// after an unroutable one stays undelivered until M is routed, and then
// arrives once, after it.
func TestRowsAfterAReturnedMessageWaitForIt(t *testing.T) {
	e := newEnv(t, nil)
	routed := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "routed")))
	e.waitReady(t)
	ctx := context.Background()
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 1, 1, 1, "nowhere"))
	require.Eventually(t, func() bool { return e.relay.Status().Reconnects >= 1 }, 20*time.Second, 5*time.Millisecond)
	time.Sleep(time.Second)
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 2, 1, 1, "routed"))

	// Several retries go by; the routable row is never out before row 1.
	before := e.relay.Status().Reconnects
	require.Eventually(t, func() bool { return e.relay.Status().Reconnects >= before+3 }, 30*time.Second, 10*time.Millisecond)
	assert.Zero(t, routed.Len(), "a row committed after the returned one reached the broker first")
	assert.Contains(t, e.logs.String(), "publishing the message that failed last time alone")

	bound := time.Now()
	nowhere := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "nowhere")))
	nowhere.WaitDistinct(t, 1, 20*time.Second)
	routed.WaitDistinct(t, 1, 20*time.Second)
	e.waitReady(t)
	took := time.Since(bound)
	relaytest.Record(t, relaytest.Fault{Order: 60, Fault: "unroutable row, held (CDC_RELAY_UNROUTABLE=hold)",
		Setup:    "a row with no queue bound, a routable one 1 s later, a queue bound after several retries",
		Figures:  relaytest.Figures{Written: 2, Received: routed.Len() + nowhere.Len(), Duplicates: routed.Len() + nowhere.Len() - 2},
		Recovery: took, Bound: "0 for rows committed after the first return",
		Note: "the routable row is not delivered before the unroutable one; recovery is from the binding"})
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, routed.Len(), "delivered once")
	assert.True(t, !routed.Messages()[0].Timestamp.IsZero())
	first, second := nowhere.Messages()[0], routed.Messages()[0]
	assert.Equal(t, 1, first.Seq)
	assert.Equal(t, 2, second.Seq)
}

// poisonRow inserts a row whose routing key is over AMQP's 255 bytes, then a
// good one, and returns the poison row's id.
func poisonRow(t *testing.T, dbURL string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var id string
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		VALUES ('test', '0', 'test.row', repeat('k', 300), '{"writer": 0, "seq": 1}') RETURNING id::text`).Scan(&id))
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 2, 1, 1, "good"))
	return id
}

// A row that can never be published stops the relay, naming the row and the
// field, without acknowledging past it (CDC_RELAY_POISON=stop, the default).
func TestPoisonRowStopsTheRelayNamingIt(t *testing.T) {
	e := newEnv(t, nil)
	good := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "good")))
	e.waitReady(t)
	before := slotFlush(t, e.dbURL, e.slot)
	id := poisonRow(t, e.dbURL)
	err := e.exit(t, 30*time.Second)
	require.ErrorIs(t, err, relay.ErrFatal)
	assert.Contains(t, err.Error(), "outbox row "+id+" can never be published: routing_key: 300 bytes, over AMQP's limit of 255")
	assert.Contains(t, err.Error(), "set CDC_RELAY_POISON=park")
	assert.Zero(t, good.Len())
	assert.Equal(t, before, slotFlush(t, e.dbURL, e.slot), "the slot moved past the poison row")
}

// With CDC_RELAY_POISON=park a poison row is parked, as an envelope in
// <exchange>.poison, counted, and the rows after it flow. A NULL in a column
// (a table that lacks the outbox's NOT NULL) is a poison row too.
func TestPoisonRowsAreParked(t *testing.T) {
	dbURL := testenv.NewOutboxDatabase(t)
	exec(t, dbURL, `ALTER TABLE outbox ALTER COLUMN event_type DROP NOT NULL`)
	e := newEnvOn(t, dbURL, func(c *config.Config) { c.Poison = config.PoisonPark })
	good := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "good")))
	e.waitReady(t)
	queue := e.exchange + ".poison"
	t.Cleanup(func() { deleteQueue(t, e.amqpURL, queue) })
	parked := testenv.Consume(t, queue)

	id := poisonRow(t, dbURL)
	var nullID string
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		VALUES ('test', '0', NULL, 'good', '{"writer": 0, "seq": 3}') RETURNING id::text`).Scan(&nullID))
	require.NoError(t, relaytest.Write(ctx, dbURL, 0, 4, 1, 1, "good"))

	want := map[string]string{id: "routing_key", nullID: "event_type"}
	for range 2 {
		select {
		case m := <-parked:
			field, ok := want[m.MessageId]
			require.True(t, ok, "parked %s", m.MessageId)
			delete(want, m.MessageId)
			assert.Equal(t, "cdc_relay.poison", m.Type)
			assert.Equal(t, field, m.Headers["cdc_relay_poison_field"])
			var env map[string]any
			require.NoError(t, json.Unmarshal(m.Body, &env))
			assert.Equal(t, m.MessageId, env["id"])
			assert.Equal(t, field, env["field"])
			assert.NotEmpty(t, env["payload"])
		case <-time.After(20 * time.Second):
			t.Fatalf("not parked: %v", want)
		}
	}
	good.WaitDistinct(t, 2, 20*time.Second)
	seqs := []int{good.Messages()[0].Seq, good.Messages()[1].Seq}
	assert.Equal(t, []int{2, 4}, seqs)
	assert.Contains(t, scrape(t, e.http.URL), `cdc_relay_events_parked_total{reason="poison",slot="`+e.slot+`"} 2`)
	wal := currentWAL(t, dbURL)
	require.Eventually(t, func() bool { return slotFlush(t, dbURL, e.slot) >= wal }, 10*time.Second, 20*time.Millisecond)
}

func deleteQueue(t *testing.T, amqpURL, name string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Errorf("delete queue %s: %v", name, err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDelete(name, false, false, false)
	}
	if err != nil {
		t.Errorf("delete queue %s: %v", name, err)
	}
}

// A clean stop while rows flow resends nothing after a restart: the stop
// reads the open transaction to its end, drains, and waits until the slot
// shows its final position. Four stops in a row, each mid-stream.
func TestCleanStopsResendNothing(t *testing.T) {
	testenv.LongFaultTest(t)
	const writers, perWriter = 2, 6000
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, exchange, "#")))
	slot := testenv.RandomName("t_slot_")
	var mu sync.Mutex
	started := 0
	start := func() *env {
		mu.Lock()
		defer mu.Unlock()
		started++
		e := newEnvOn(t, dbURL, func(c *config.Config) { c.Slot, c.Exchange, c.MaxInFlight = slot, exchange, 100 })
		e.waitReady(t)
		return e
	}
	e := start()
	written := make(chan error, 1)
	go func() { written <- relaytest.WriteAll(context.Background(), dbURL, writers, perWriter, 200, "stop") }()
	for stop := 1; stop <= 4; stop++ {
		require.Eventually(t, func() bool { return got.Distinct() >= stop*writers*perWriter/6 }, 60*time.Second, time.Millisecond)
		e.stop()
		require.NoError(t, e.exit(t, 30*time.Second))
		assert.Contains(t, e.logs.String(), `"msg":"stopped"`)
		e = start()
	}
	require.NoError(t, <-written)
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, got.Check(t, writers, perWriter), "duplicates after 4 clean stops")
	assert.False(t, strings.Contains(e.logs.String(), "did not show the final position"))
	relaytest.Record(t, relaytest.Fault{Order: 20, Fault: "clean stop and restart (SIGTERM), 4 times",
		Setup:   "2 writers in transactions of up to 200 rows, a stop at each sixth",
		Figures: got.Measure(writers, perWriter), Bound: "0"})
}

// A slot dropped while the relay streams stops it with the repair, and the
// repair names the --since to pass: the commit time of the last transaction
// the relay confirmed, which /status shows too.
func TestLostSlotNamesTheCommitTimeToReplayFrom(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.HeartbeatInterval = 200 * time.Millisecond })
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)
	require.NoError(t, relaytest.Write(context.Background(), e.dbURL, 0, 1, 20, 5, "lost"))
	got.WaitDistinct(t, 20, 20*time.Second)
	var since string
	require.Eventually(t, func() bool {
		st := e.relay.Status()
		if st.ConfirmedCommit == nil || st.InFlight > 0 {
			return false
		}
		since = st.ConfirmedCommit.Format(time.RFC3339Nano)
		return true
	}, 10*time.Second, 10*time.Millisecond)
	var last time.Time
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `SELECT max(pg_xact_commit_timestamp(xmin)) FROM outbox`).Scan(&last))
	assert.Equal(t, last.UTC().Format(time.RFC3339Nano), since, "/status confirmed_commit_time is the last commit")

	// Drop it from under the relay: end its walsender, then drop.
	_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, e.slot)
	require.NoError(t, err)
	testenv.DropSlot(t, e.dbURL, e.slot)
	err = e.exit(t, 30*time.Second)
	require.ErrorIs(t, err, relay.ErrFatal)
	assert.Contains(t, err.Error(), "is lost")
	assert.Contains(t, err.Error(), "cdc-relay replay --since "+since+" (the commit time of the last transaction this relay confirmed)")
}

// managementAPI calls the shared broker's HTTP API (the test's cleanup of
// the park mode's policy).
func managementAPI(t *testing.T, method, path string) {
	t.Helper()
	u, err := amqp.ParseURI(testenv.AMQPURL(t))
	require.NoError(t, err)
	req, err := http.NewRequest(method, fmt.Sprintf("http://%s:15672%s", u.Host, path), nil)
	require.NoError(t, err)
	req.SetBasicAuth(u.Username, u.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return
	}
	resp.Body.Close()
}

// With CDC_RELAY_UNROUTABLE=park an unroutable message is confirmed into
// <exchange>.unroutable through the alternate exchange the relay links by a
// policy, keeping its properties and headers, counted and logged, and the
// stream goes on. The services declaring the exchange themselves (without
// the alternate-exchange argument) still can.
func TestUnroutableMessagesAreParked(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Unroutable = config.UnroutablePark })
	parkQueue := e.exchange + ".unroutable"
	t.Cleanup(func() {
		managementAPI(t, http.MethodDelete, "/api/policies/%2F/cdc-relay-unroutable-"+e.exchange)
		deleteQueue(t, e.amqpURL, parkQueue)
		deleteExchange(t, e.amqpURL, parkQueue)
	})
	routed := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "routed")))
	e.waitReady(t)
	parked := testenv.Consume(t, parkQueue)

	// A service declares the exchange as it always did: still fine.
	conn, err := amqp.Dial(e.amqpURL)
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare(e.exchange, amqp.ExchangeTopic, true, false, false, false, nil))
	conn.Close()

	ctx := context.Background()
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 1, 1, 1, "nowhere"))
	require.NoError(t, relaytest.Write(ctx, e.dbURL, 0, 2, 1, 1, "routed"))
	var m amqp.Delivery
	select {
	case m = <-parked:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing parked")
	}
	routed.WaitDistinct(t, 1, 20*time.Second)
	assert.Equal(t, 2, routed.Messages()[0].Seq)

	var id, created string
	dbConn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer dbConn.Close(ctx)
	require.NoError(t, dbConn.QueryRow(ctx, `SELECT id::text, created_at::text FROM outbox WHERE routing_key = 'nowhere'`).Scan(&id, &created))
	assert.Equal(t, id, m.MessageId)
	assert.Equal(t, "nowhere", m.RoutingKey, "the original routing key, for a shovel back")
	assert.Equal(t, e.exchange, m.Exchange)
	assert.Equal(t, "test.row", m.Type)
	assert.Equal(t, "application/json", m.ContentType)
	assert.Equal(t, amqp.Persistent, m.DeliveryMode)
	assert.Equal(t, `{"seq": 1, "writer": 0}`, string(m.Body))
	assert.Equal(t, int64(0), m.Headers["writer"])
	assert.Equal(t, "1", m.Headers["seq_text"])
	assert.Equal(t, id, m.Headers["cloudEvents_id"])
	assert.Equal(t, "test", m.Headers["aggregate_type"])

	require.Eventually(t, func() bool {
		return strings.Contains(scrape(t, e.http.URL), `cdc_relay_events_parked_total{reason="unroutable",slot="`+e.slot+`"} 1`)
	}, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, e.logs.String(), `"msg":"parked an unroutable message: no queue is bound for its routing key","component":"relay","slot":"`+e.slot+`","message_id":"`+id+`","routing_key":"nowhere"`)
	assert.Zero(t, e.relay.Status().Reconnects, "parked, not retried")
	relaytest.Record(t, relaytest.Fault{Order: 65, Fault: "unroutable row, parked (CDC_RELAY_UNROUTABLE=park)",
		Setup:   "a row with no queue bound, then a routable one",
		Figures: relaytest.Figures{Written: 2, Received: 2}, Bound: "0",
		Note: "confirmed into <exchange>.unroutable with its properties and headers; the stream goes on"})
	wal := currentWAL(t, e.dbURL)
	require.Eventually(t, func() bool { return slotFlush(t, e.dbURL, e.slot) >= wal }, 10*time.Second, 20*time.Millisecond)
}

func deleteExchange(t *testing.T, amqpURL, name string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Errorf("delete exchange %s: %v", name, err)
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(name, false, false)
	}
}

// Park mode without its policy (CDC_RELAY_AMQP_MANAGEMENT_URL=off and none
// set by an operator): an unroutable message is returned, and the relay
// holds it, saying what is missing, rather than losing it.
func TestParkWithoutThePolicyHolds(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Unroutable, c.ManagementURL = config.UnroutablePark, config.ManagementOff
	})
	t.Cleanup(func() {
		deleteQueue(t, e.amqpURL, e.exchange+".unroutable")
		deleteExchange(t, e.amqpURL, e.exchange+".unroutable")
	})
	e.waitReady(t)
	require.NoError(t, relaytest.Write(context.Background(), e.dbURL, 0, 1, 1, 1, "nowhere"))
	require.Eventually(t, func() bool { return e.relay.Status().Reconnects >= 1 }, 20*time.Second, 10*time.Millisecond)
	assert.Contains(t, e.logs.String(), "CDC_RELAY_UNROUTABLE=park, yet the message was returned")
	assert.Contains(t, e.logs.String(), "rabbitmqctl set_policy --apply-to exchanges cdc-relay-unroutable-"+e.exchange)
}

// A queue full with x-overflow=reject-publish makes the broker nack: the
// relay holds the nacked row (publishing it alone on each retry), and once
// the consumer makes room every row arrives, in order.
func TestNackedRowsWaitForRoom(t *testing.T) {
	const rows = 40
	e := newEnv(t, nil)
	conn, err := amqp.Dial(e.amqpURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q := testenv.RandomName("t_q_full_")
	_, err = ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-max-length": int32(10), "x-overflow": "reject-publish"})
	require.NoError(t, err)
	t.Cleanup(func() { deleteQueue(t, e.amqpURL, q) })
	require.NoError(t, ch.QueueBind(q, "full", e.exchange, false, nil))
	e.waitReady(t)

	require.NoError(t, relaytest.Write(context.Background(), e.dbURL, 0, 1, rows, 5, "full"))
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(t, e.http.URL), `cdc_relay_events_nacked_total{slot="`+e.slot+`"} `) &&
			!strings.Contains(scrape(t, e.http.URL), `cdc_relay_events_nacked_total{slot="`+e.slot+`"} 0`)
	}, 20*time.Second, 20*time.Millisecond, "no nack from a full queue")
	time.Sleep(time.Second) // retries go by
	room := time.Now()
	got := relaytest.Collect(testenv.Consume(t, q))
	got.WaitDistinct(t, rows, 60*time.Second)
	took := time.Since(room)
	e.waitReady(t)
	fig := got.Measure(1, rows)
	assert.Zero(t, fig.Lost)
	assert.Zero(t, fig.OrderViolations)
	t.Logf("nacked: %+v, all delivered %s after the consumer started", fig, took.Round(time.Millisecond))
	relaytest.Record(t, relaytest.Fault{Order: 70, Fault: "nack (a full queue with x-overflow reject-publish)",
		Setup: "40 rows into a queue of 10, then a consumer", Figures: fig, Recovery: took,
		Bound: "≤ the window: messages before the nacked one, resent with it",
		Note:  "the nacked message is retried alone first; only messages already in flight after it could have been taken before it"})
}

// With several broker channels (CDC_RELAY_CHANNELS) each aggregate keeps
// its order (a writer here writes one aggregate), nothing is lost, and a
// broker connection cut midway resends at most what was in flight.
func TestSeveralChannelsKeepOrderPerAggregate(t *testing.T) {
	const writers, perWriter, window = 8, 1500, 200
	amqpURL := testenv.AMQPURL(t)
	u, err := amqp.ParseURI(amqpURL)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host+":"+itoa(u.Port))
	u.Host, u.Port = "127.0.0.1", mustPort(t, proxy.Addr())
	e := newEnv(t, func(c *config.Config) { c.AMQPURL, c.Channels, c.MaxInFlight = u.String(), 4, window })
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)
	done := make(chan error, 1)
	go func() { done <- relaytest.WriteAll(context.Background(), e.dbURL, writers, perWriter, 20, "channels") }()
	require.Eventually(t, func() bool { return got.Distinct() >= writers*perWriter/3 }, 60*time.Second, 5*time.Millisecond)
	proxy.DropAll()
	require.NoError(t, <-done)
	got.WaitDistinct(t, writers*perWriter, 90*time.Second)
	dups := got.Check(t, writers, perWriter)
	t.Logf("4 channels, a cut: %d duplicates", dups)
	assert.LessOrEqual(t, dups, window+20)
	wal := currentWAL(t, e.dbURL)
	require.Eventually(t, func() bool { return slotFlush(t, e.dbURL, e.slot) >= wal }, 10*time.Second, 20*time.Millisecond)
}
