package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/admin"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// result is what a script sees of one command.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

// run calls admin.Run as main does, with env as the whole environment.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := admin.Run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, code: admin.ExitCode(err)}
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	require.NoError(t, r.err, "stderr: %s", r.stderr)
	return r
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), "stdout: %s", r.stdout)
	return v
}

func dbName(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

func exec(t *testing.T, dbURL, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

func findSlot(slots []admin.SlotInfo, name string) *admin.SlotInfo {
	for i := range slots {
		if slots[i].Name == name {
			return &slots[i]
		}
	}
	return nil
}

func TestSlotCommands(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}

	created := decode[admin.SlotCreated](t, run(t, env, "slot", "create", "--json").ok(t))
	assert.True(t, created.Created)
	assert.Equal(t, dbName(t, dbURL), created.Database)
	again := run(t, env, "slot", "create").ok(t)
	assert.Contains(t, again.stdout, "already exists")

	// list: JSON and the table.
	slots := decode[[]admin.SlotInfo](t, run(t, env, "slot", "list", "--json").ok(t))
	s := findSlot(slots, slot)
	require.NotNil(t, s, "slot %s in %+v", slot, slots)
	assert.Equal(t, "pgoutput", *s.Plugin)
	assert.Equal(t, dbName(t, dbURL), *s.Database)
	assert.False(t, s.Active)
	assert.Nil(t, s.ActivePID)
	assert.Equal(t, created.ConfirmedFlushLSN, *s.ConfirmedFlushLSN)
	require.NotNil(t, s.LagBytes)
	require.NotNil(t, s.RetainedWALBytes)
	assert.GreaterOrEqual(t, *s.RetainedWALBytes, *s.LagBytes)
	assert.Equal(t, "reserved", *s.WALStatus)
	table := run(t, env, "slot", "list").ok(t).stdout
	assert.Regexp(t, `(?m)^SLOT\s+PLUGIN\s+DATABASE\s+ACTIVE\s+PID\s+CONFIRMED_FLUSH\s+LAG\s+RETAINED\s+WAL_STATUS\s+SAFE_WAL_SIZE\s+FAILOVER\s+SYNCED$`, table)
	assert.Regexp(t, `(?m)^`+slot+`\s+pgoutput\s+`+dbName(t, dbURL)+`\s+false\s+-\s+`, table)

	// advance: forward to now, then a refusal to go back.
	exec(t, dbURL, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		SELECT 'test', g::text, 'test.row', 'k', jsonb_build_object('n', g) FROM generate_series(1, 100) g`)
	adv := decode[admin.SlotAdvanced](t, run(t, env, "slot", "advance", "--to", "now", "--json").ok(t))
	assert.Equal(t, created.ConfirmedFlushLSN, adv.From)
	assert.Positive(t, adv.SkippedBytes)
	back := run(t, env, "slot", "advance", "--to", adv.From)
	require.Error(t, back.err)
	assert.ErrorIs(t, back.err, admin.ErrRefused)
	assert.Equal(t, 1, back.code)
	assert.Contains(t, back.err.Error(), "is behind the slot's confirmed position "+adv.To)
	s = findSlot(decode[[]admin.SlotInfo](t, run(t, env, "slot", "list", "--json").ok(t)), slot)
	assert.Equal(t, adv.To, *s.ConfirmedFlushLSN, "a refused advance moves nothing")
	assert.Contains(t, run(t, env, "slot", "advance", "--to", adv.To).ok(t).stdout, "skipping 0 B")

	// An active slot: create accepts it, advance and drop refuse, drop
	// --force terminates the walsender.
	testenv.HoldSlot(t, dbURL, slot)
	assert.False(t, decode[admin.SlotCreated](t, run(t, env, "slot", "create", "--json").ok(t)).Created)
	busy := run(t, env, "slot", "advance", "--to", "now")
	assert.ErrorIs(t, busy.err, admin.ErrRefused)
	assert.Contains(t, busy.err.Error(), "it is active")
	refused := run(t, env, "slot", "drop")
	require.Error(t, refused.err)
	assert.ErrorIs(t, refused.err, admin.ErrRefused)
	assert.Equal(t, 1, refused.code)
	assert.Contains(t, refused.err.Error(), "pass --force")
	s = findSlot(decode[[]admin.SlotInfo](t, run(t, env, "slot", "list", "--json").ok(t)), slot)
	require.NotNil(t, s, "a refused drop keeps the slot")
	pid := *s.ActivePID

	dropped := decode[admin.SlotDropped](t, run(t, env, "slot", "drop", "--force", "--json").ok(t))
	assert.Equal(t, []int32{pid}, dropped.TerminatedPIDs)
	assert.Nil(t, findSlot(decode[[]admin.SlotInfo](t, run(t, env, "slot", "list", "--json").ok(t)), slot))

	missing := run(t, env, "slot", "drop")
	assert.Equal(t, 1, missing.code)
	assert.Contains(t, missing.err.Error(), "no such replication slot")
}

func TestSlotDropInactive(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}
	run(t, env, "slot", "create").ok(t)
	out := run(t, env, "slot", "drop").ok(t)
	assert.Equal(t, "dropped slot \""+slot+"\"\n", out.stdout)
}

func TestSlotOfAnotherDatabase(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	otherURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}, "slot", "create").ok(t)
	r := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": otherURL, "CDC_RELAY_SLOT": slot}, "slot", "drop")
	assert.ErrorIs(t, r.err, admin.ErrRefused)
	assert.Contains(t, r.err.Error(), "belongs to database \""+dbName(t, dbURL)+"\"")
}

// TestSlotCreateOnRows is the repair of a lost slot: the daemon refuses to
// create a missing slot over an outbox that holds rows, the operator's
// slot create does it.
func TestSlotCreateOnRows(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	insertTx(t, dbURL, "k", 2)
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}

	r := run(t, env, "doctor", "--json")
	assert.ErrorIs(t, r.err, admin.ErrDoctor)
	lost := findings(decode[admin.Report](t, r), admin.LevelError, "slot")
	require.Len(t, lost, 1)
	assert.Contains(t, lost[0].What, "does not exist but public.outbox holds rows")

	assert.True(t, decode[admin.SlotCreated](t, run(t, env, "slot", "create", "--json").ok(t)).Created)
	run(t, env, "doctor").ok(t)
}

func TestSlotCreateMakesPublicationFirst(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot, pub := testenv.RandomName("t_slot_"), testenv.RandomName("t_pub_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot, "CDC_RELAY_PUBLICATION": pub}
	run(t, env, "slot", "create").ok(t)
	p := decode[admin.PublicationInfo](t, run(t, env, "publication", "show", "--json").ok(t))
	assert.Equal(t, []string{"insert"}, p.Operations)
	assert.Equal(t, []string{"public.outbox"}, p.Tables)
	assert.True(t, p.HoldsOutboxTable)
}

func TestPublicationCommands(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	pub := testenv.RandomName("t_pub_")
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_PUBLICATION": pub}

	missing := run(t, env, "publication", "show")
	assert.Equal(t, 1, missing.code)
	assert.Contains(t, missing.err.Error(), "cdc-relay publication create")

	assert.True(t, decode[admin.PublicationCreated](t, run(t, env, "publication", "create", "--json").ok(t)).Created)
	assert.False(t, decode[admin.PublicationCreated](t, run(t, env, "publication", "create", "--json").ok(t)).Created)

	p := decode[admin.PublicationInfo](t, run(t, env, "publication", "show", "--json").ok(t))
	assert.Equal(t, admin.PublicationInfo{Name: pub, Owner: "postgres", Operations: []string{"insert"}, Tables: []string{"public.outbox"},
		OutboxTable: "public.outbox", HoldsOutboxTable: true}, p)
	text := run(t, env, "publication", "show").ok(t).stdout
	assert.Contains(t, text, "outbox table  public.outbox: included\n")

	// A publication that exists without the table is refused, with the fix.
	empty := testenv.RandomName("t_pub_")
	exec(t, dbURL, "CREATE PUBLICATION "+empty)
	r := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_PUBLICATION": empty}, "publication", "create")
	assert.ErrorIs(t, r.err, admin.ErrRefused)
	assert.Contains(t, r.err.Error(), `ALTER PUBLICATION "`+empty+`" ADD TABLE "public"."outbox";`)
}

func findings(r admin.Report, level admin.Level, check string) []admin.Finding {
	var out []admin.Finding
	for _, f := range r.Findings {
		if f.Level == level && f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}

	t.Run("healthy", func(t *testing.T) {
		run(t, env, "slot", "create").ok(t)
		r := run(t, env, "doctor", "--json")
		rep := decode[admin.Report](t, r)
		require.NoError(t, r.err, "findings: %+v", rep.Findings)
		assert.Zero(t, rep.Errors)
		for _, check := range []string{"wal_level", "max_replication_slots", "max_wal_senders", "role", "table", "privileges", "publication"} {
			assert.Len(t, findings(rep, admin.LevelOK, check), 1, check)
		}
		// The test server keeps WAL without limit, and nothing streams the slot.
		assert.Len(t, findings(rep, admin.LevelWarn, "max_slot_wal_keep_size"), 1)
		inactive := findings(rep, admin.LevelWarn, "slot "+slot)
		require.Len(t, inactive, 1)
		assert.Contains(t, inactive[0].What, "inactive")

		text := run(t, env, "doctor").ok(t).stdout
		assert.Regexp(t, `(?m)^OK\s+wal_level\s+wal_level is logical$`, text)
		assert.Regexp(t, `(?m)^\d+ error\(s\), \d+ warning\(s\)$`, text)
	})

	t.Run("missing publication", func(t *testing.T) {
		pub := testenv.RandomName("t_pub_")
		r := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot, "CDC_RELAY_PUBLICATION": pub}, "doctor", "--json")
		assert.ErrorIs(t, r.err, admin.ErrDoctor)
		assert.Equal(t, 1, r.code)
		rep := decode[admin.Report](t, r)
		got := findings(rep, admin.LevelError, "publication")
		require.Len(t, got, 1, "%+v", rep.Findings)
		assert.Contains(t, got[0].What, "publication "+pub+" does not exist")
		assert.Equal(t, `CREATE PUBLICATION "`+pub+`" FOR TABLE "public"."outbox" WITH (publish = 'insert'); (or: cdc-relay publication create)`, got[0].Fix)

		text := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_PUBLICATION": pub}, "doctor")
		assert.Equal(t, 1, text.code)
		assert.Regexp(t, `(?m)^ERROR\s+publication\s+publication `+pub+` does not exist`, text.stdout)
		assert.Regexp(t, `(?m)^\s+fix: CREATE PUBLICATION "`+pub+`"`, text.stdout)
	})

	t.Run("role without privileges", func(t *testing.T) {
		role := testenv.RandomName("t_role_")
		exec(t, dbURL, "CREATE ROLE "+role+" LOGIN")
		t.Cleanup(func() {
			exec(t, dbURL, "DROP ROLE "+role)
		})
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		u.User = url.User(role)
		r := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": u.String(), "CDC_RELAY_SLOT": slot}, "doctor", "--json")
		assert.Equal(t, 1, r.code)
		rep := decode[admin.Report](t, r)
		roleFindings := findings(rep, admin.LevelError, "role")
		require.Len(t, roleFindings, 1, "%+v", rep.Findings)
		assert.Equal(t, `ALTER ROLE "`+role+`" WITH REPLICATION; (on Amazon RDS: GRANT rds_replication TO "`+role+`";)`, roleFindings[0].Fix)
		priv := findings(rep, admin.LevelError, "privileges")
		require.Len(t, priv, 1)
		assert.Equal(t, `GRANT SELECT ON "public"."outbox" TO "`+role+`";`, priv[0].Fix)
	})
}

// outboxRow is a row as the test wrote it.
type outboxRow struct {
	id, eventType, routingKey, payload string
	createdAt                          time.Time
}

func insertTx(t *testing.T, dbURL, key string, n int) []outboxRow {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, headers)
		SELECT 'order', g::text, 'order.created', $1, jsonb_build_object('order_id', g, 'note', 'n' || g),
		       jsonb_build_object('x-n', g, 'x-s', 'v' || g, 'x-obj', jsonb_build_object('a', g))
		FROM generate_series(1, $2::int) g ORDER BY g
		RETURNING id::text, event_type, routing_key, payload::text, created_at`, key, n)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		var o outboxRow
		err := r.Scan(&o.id, &o.eventType, &o.routingKey, &o.payload, &o.createdAt)
		return o, err
	})
	require.NoError(t, err)
	return out
}

func receive(t *testing.T, deliveries <-chan amqp.Delivery, n int) []amqp.Delivery {
	t.Helper()
	var got []amqp.Delivery
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case d, ok := <-deliveries:
			require.True(t, ok, "consumer closed")
			got = append(got, d)
		case <-timeout:
			t.Fatalf("received %d of %d messages", len(got), n)
		}
	}
	select {
	case d := <-deliveries:
		t.Fatalf("unexpected extra message %s", d.MessageId)
	case <-time.After(200 * time.Millisecond):
	}
	return got
}

// sortRows orders rows as replay does: created_at, then id.
// sortRows puts rows in replay order: by created_at, and in insertion order
// (the order insertTx returns them) within a transaction.
func sortRows(rows []outboxRow) []outboxRow {
	out := append([]outboxRow(nil), rows...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].createdAt.Before(out[j].createdAt) })
	return out
}

func TestReplay(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	queue := testenv.NewQueue(t, exchange, "replay.#")
	deliveries := testenv.Consume(t, queue)
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": testenv.AMQPURL(t), "CDC_RELAY_EXCHANGE": exchange}

	first := insertTx(t, dbURL, "replay.a", 5)
	time.Sleep(20 * time.Millisecond)
	second := insertTx(t, dbURL, "replay.b", 3)
	rows := sortRows(append(append([]outboxRow{}, first...), second...))

	// A batch of 2 splits the first transaction's rows, which share
	// created_at, across pages: the cursor's ctid tie-break must hold.
	r := decode[admin.Replayed](t, run(t, env, "replay", "--since", "1h", "--batch-size", "2", "--json").ok(t))
	assert.Equal(t, 8, r.Rows)
	assert.True(t, rows[0].createdAt.Equal(*r.First))
	assert.True(t, rows[7].createdAt.Equal(*r.Last))
	got := receive(t, deliveries, 8)
	source := "/cdc-relay/" + dbName(t, dbURL) + "/public.outbox"
	for i, d := range got {
		want := rows[i]
		assert.Equal(t, want.id, d.MessageId, "message %d", i)
		assert.Equal(t, want.payload, string(d.Body))
		assert.Equal(t, want.routingKey, d.RoutingKey)
		assert.Equal(t, want.eventType, d.Type)
		assert.Equal(t, "application/json", d.ContentType)
		assert.Equal(t, amqp.Persistent, d.DeliveryMode)
		assert.Equal(t, source, d.Headers["cloudEvents_source"])
		assert.Equal(t, want.id, d.Headers["cloudEvents_id"])
		assert.IsType(t, int64(0), d.Headers["x-n"], "JSON numbers are int64 headers, as the relay sends them")
		assert.Equal(t, `{"a":`, d.Headers["x-obj"].(string)[:5])
	}

	// --until is exclusive: the second transaction's created_at ends the range.
	text := run(t, env, "replay", "--since", first[0].createdAt.Format(time.RFC3339Nano), "--until", second[0].createdAt.Format(time.RFC3339Nano)).ok(t)
	assert.Contains(t, text.stdout, "replayed 5 row(s) of public.outbox")
	for i, d := range receive(t, deliveries, 5) {
		assert.Equal(t, sortRows(first)[i].id, d.MessageId)
	}

	dry := decode[admin.Replayed](t, run(t, env, "replay", "--since", "1h", "--dry-run", "--json").ok(t))
	assert.Equal(t, 8, dry.Rows)
	assert.True(t, dry.DryRun)
	receive(t, deliveries, 0)

	none := run(t, env, "replay", "--since", "2000-01-01", "--until", "2000-01-02").ok(t)
	assert.Equal(t, "replayed 0 row(s) of public.outbox to exchange \""+exchange+"\"\n", none.stdout)
}

func TestReplayUnroutableFails(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t) // no queue bound: every message is returned
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": testenv.AMQPURL(t), "CDC_RELAY_EXCHANGE": exchange}
	rows := insertTx(t, dbURL, "nowhere", 3)
	r := run(t, env, "replay", "--since", "1h")
	require.Error(t, r.err)
	assert.Equal(t, 1, r.code)
	assert.ErrorIs(t, r.err, publisher.ErrUnroutable)
	assert.Contains(t, r.err.Error(), sortRows(rows)[0].id)
	assert.Contains(t, r.err.Error(), "rerunning is safe")
}

// TestReplayMatchesStream checks the promise replay rests on: a replayed
// message is the one the relay streamed, property for property, header for
// header, so consumers' dedup recognises it.
func TestReplayMatchesStream(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	queue := testenv.NewQueue(t, exchange, "replay.#")
	deliveries := testenv.Consume(t, queue)
	amqpURL := testenv.AMQPURL(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })

	cfg := config.Defaults()
	cfg.DatabaseURL, cfg.AMQPURL, cfg.Slot, cfg.Exchange = dbURL, amqpURL, slot, exchange
	cfg.HTTPAddr, cfg.MaxInFlight, cfg.HeartbeatInterval = "127.0.0.1:0", 100, time.Second
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- relay.New(cfg, relay.Options{}, slog.New(slog.NewTextHandler(testLog{t}, nil)), nil).Run(ctx)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop")
		}
	}
	t.Cleanup(stop)

	// Wait until a walsender streams the slot, so the rows are written after
	// its consistent point. The slot is already active while
	// pg_create_logical_replication_slot builds its snapshot, held by the
	// creating backend, which is not a walsender.
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": amqpURL, "CDC_RELAY_EXCHANGE": exchange}
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var streaming bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
			WHERE s.slot_name = $1 AND a.backend_type = 'walsender')`, slot).Scan(&streaming))
		return streaming
	}, 30*time.Second, 50*time.Millisecond)
	rows := insertTx(t, dbURL, "replay.x", 4)
	exec(t, dbURL, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, headers)
		VALUES ('order', '9', 'order.bad', 'replay.y', '{"a": [1, 2]}', '[1, 2]')`) // headers not an object
	streamed := receive(t, deliveries, len(rows)+1)
	stop()

	r := run(t, env, "replay", "--since", "1h").ok(t)
	assert.Contains(t, r.stderr, "cdc_relay_invalid_headers")
	replayed := receive(t, deliveries, len(rows)+1)

	byID := map[string]amqp.Delivery{}
	for _, d := range streamed {
		byID[d.MessageId] = d
	}
	for _, d := range replayed {
		s, ok := byID[d.MessageId]
		require.True(t, ok, "replayed %s was not streamed", d.MessageId)
		assert.Equal(t, s.Body, d.Body)
		assert.Equal(t, s.Headers, d.Headers)
		assert.Equal(t, s.RoutingKey, d.RoutingKey)
		assert.Equal(t, s.Type, d.Type)
		assert.Equal(t, s.ContentType, d.ContentType)
		assert.Equal(t, s.DeliveryMode, d.DeliveryMode)
		assert.True(t, s.Timestamp.Equal(d.Timestamp))
	}
}

// testLog sends the relay's log to the test's, shown on failure.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// commitTime is the commit timestamp of the transaction that inserted the
// outbox row id.
func commitTime(t *testing.T, dbURL, id string) time.Time {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var at time.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_xact_commit_timestamp(xmin) FROM outbox WHERE id = $1`, id).Scan(&at))
	return at
}

// The repair after a lost slot must cover every row committed after the
// given point, in commit order: a transaction that started before --since
// and committed after it is replayed, and after the one that committed
// before it.
func TestReplaySelectsAndOrdersByCommitTime(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	deliveries := testenv.Consume(t, testenv.NewQueue(t, exchange, "replay.#"))
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": testenv.AMQPURL(t), "CDC_RELAY_EXCHANGE": exchange}
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	long, err := conn.Begin(ctx)
	require.NoError(t, err)
	var lateID string
	require.NoError(t, long.QueryRow(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		VALUES ('order', 'late', 'order.created', 'replay.late', '{"n": 2}') RETURNING id::text`).Scan(&lateID))
	time.Sleep(50 * time.Millisecond)
	early := insertTx(t, dbURL, "replay.early", 1)[0]
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, long.Commit(ctx))

	// Since the commit of the short transaction: the long one started
	// before it, and committed after.
	since := commitTime(t, dbURL, early.id)
	r := decode[admin.Replayed](t, run(t, env, "replay", "--since", since.Format(time.RFC3339Nano), "--json").ok(t))
	assert.Equal(t, 2, r.Rows)
	assert.Contains(t, r.Order, "transactions by commit time")
	got := receive(t, deliveries, 2)
	assert.Equal(t, []string{early.id, lateID}, []string{got[0].MessageId, got[1].MessageId}, "commit order")
	assert.True(t, since.Equal(*r.FirstCommitted))

	// Just after it: the long transaction alone.
	r = decode[admin.Replayed](t, run(t, env, "replay", "--since", since.Add(time.Microsecond).Format(time.RFC3339Nano), "--json").ok(t))
	assert.Equal(t, 1, r.Rows)
	assert.Equal(t, lateID, receive(t, deliveries, 1)[0].MessageId)
}

// Once retention DELETEs and VACUUM let the heap reuse space, a
// transaction's rows no longer lie in insertion order (ctid): replay keeps
// their order by the seq column.
func TestReplayKeepsInsertionOrderAfterTheHeapReusesSpace(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	deliveries := testenv.Consume(t, testenv.NewQueue(t, exchange, "replay.#"))
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": testenv.AMQPURL(t), "CDC_RELAY_EXCHANGE": exchange}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)

	for range 4 {
		insertTx(t, dbURL, "old", 500)
	}
	// The retention job's DELETE of old rows, then VACUUM: the first pages
	// of the heap have room again, and the free space map's search starts
	// over from the first page.
	_, err = conn.Exec(ctx, `DELETE FROM outbox WHERE seq % 3 <> 0 AND seq < 400`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `VACUUM outbox`)
	require.NoError(t, err)
	// Wide rows take most of the room of the first pages and move the
	// search on; the next transaction fills the pages after them, finds
	// the rest of the heap full, and wraps around to what is left before.
	_, err = conn.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		SELECT 'order', g::text, 'order.created', 'wide', jsonb_build_object('pad', (SELECT string_agg(md5(random()::text || x), '') FROM generate_series(1, 55) x))
		FROM generate_series(1, 12) g`)
	require.NoError(t, err)
	rows := insertTx(t, dbURL, "replay.tx", 200)

	// The precondition that makes this test mean something: physical order
	// is not insertion order any more.
	var inPlace bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT array_agg(seq ORDER BY ctid) = array_agg(seq ORDER BY seq) FROM outbox WHERE routing_key = 'replay.tx'`).Scan(&inPlace))
	require.False(t, inPlace, "the heap kept the rows in insertion order; the test needs it reused")

	since := commitTime(t, dbURL, rows[0].id)
	run(t, env, "replay", "--since", since.Format(time.RFC3339Nano)).ok(t)
	got := receive(t, deliveries, 200)
	for i, d := range got {
		require.Equal(t, rows[i].id, d.MessageId, "message %d out of insertion order", i)
	}
}
