// Package admin_test drives cdc-relay's operator commands as a script does:
// the built binary, configured by CDC_RELAY_* variables, judged by its exit
// code (0 done, 1 refused or failed, 2 usage), its stdout and its stderr.
// The commands' behaviour in detail is tested in-process in
// cdc-relay/internal/admin.
package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/proctest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

var relayBin string

func TestMain(m *testing.M) {
	os.Exit(proctest.Main(m, "github.com/saga-cdc/saga/cdc-relay/cmd/cdc-relay", &relayBin))
}

type result struct {
	code           int
	stdout, stderr string
}

// cdcRelay runs the binary with env as its whole environment.
func cdcRelay(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run cdc-relay %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func TestUsageExitsTwo(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://relay@127.0.0.1:1/x"}
	for _, args := range [][]string{
		{"slot"},
		{"slot", "rename"},
		{"slot", "list", "--nope"},
		{"slot", "advance"},
		{"slot", "advance", "--to", "yesterday"},
		{"replay", "--since", "1h"}, // no CDC_RELAY_AMQP_URL
		{"doctor", "--slot", "Bad-Name"},
	} {
		r := cdcRelay(t, env, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r)
		assert.Empty(t, r.stdout, "%v", args)
		assert.NotEmpty(t, r.stderr, "%v", args)
	}
	r := cdcRelay(t, nil, "slot", "list")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "CDC_RELAY_DATABASE_URL (--database-url): is required")
}

func TestUnreachableDatabaseExitsOne(t *testing.T) {
	t.Parallel()
	r := cdcRelay(t, map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://relay@127.0.0.1:1/x?connect_timeout=2"}, "slot", "list")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "cdc-relay: list slots: connect to database:")
}

// TestSlotScript is the life of a slot as an operator's script sees it.
func TestSlotScript(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_SLOT": slot}

	r := cdcRelay(t, env, "slot", "create", "--json")
	require.Equal(t, 0, r.code, "%s", r)
	var created struct {
		Created           bool   `json:"created"`
		ConfirmedFlushLSN string `json:"confirmed_flush_lsn"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &created))
	assert.True(t, created.Created)

	r = cdcRelay(t, env, "slot", "list", "--json")
	require.Equal(t, 0, r.code, "%s", r)
	var slots []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &slots))
	found := false
	for _, s := range slots {
		if s["slot_name"] == slot {
			found = true
			assert.Equal(t, "pgoutput", s["plugin"])
			assert.Equal(t, false, s["active"])
			for _, k := range []string{"database", "active_pid", "confirmed_flush_lsn", "lag_bytes", "retained_wal_bytes", "wal_status", "safe_wal_size"} {
				assert.Contains(t, s, k)
			}
		}
	}
	assert.True(t, found, "slot %s in %s", slot, r.stdout)

	r = cdcRelay(t, env, "slot", "advance", "--to", "0/1")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "refused: 0/1 is behind the slot's confirmed position "+created.ConfirmedFlushLSN)

	r = cdcRelay(t, env, "slot", "advance", "--to", "now")
	assert.Equal(t, 0, r.code, "%s", r)

	testenv.HoldSlot(t, dbURL, slot)
	r = cdcRelay(t, env, "slot", "drop")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "refused: it is active")
	r = cdcRelay(t, env, "slot", "drop", "--force")
	assert.Equal(t, 0, r.code, "%s", r)
	assert.True(t, strings.HasSuffix(r.stdout, "dropped slot \""+slot+"\"\n"), "%s", r)

	r = cdcRelay(t, env, "slot", "drop")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "no such replication slot")
}

func TestDoctorScript(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_PUBLICATION": testenv.RandomName("t_pub_")}

	r := cdcRelay(t, env, "doctor")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Regexp(t, `(?m)^ERROR\s+publication\s+publication t_pub_\w+ does not exist`, r.stdout)
	assert.Contains(t, r.stderr, "cdc-relay: doctor found problems: 1 error(s)")

	r = cdcRelay(t, env, "publication", "create")
	assert.Equal(t, 0, r.code, "%s", r)
	r = cdcRelay(t, env, "doctor", "--json")
	assert.Equal(t, 0, r.code, "warnings alone exit 0: %s", r)
	var report struct{ Errors, Warnings int }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	assert.Zero(t, report.Errors)
}

func TestReplayScript(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	exchange := testenv.NewExchange(t)
	queue := testenv.NewQueue(t, exchange, "script.#")
	deliveries := testenv.Consume(t, queue)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload)
		SELECT 'order', g::text, 'order.created', 'script.k', jsonb_build_object('n', g) FROM generate_series(1, 3) g
		RETURNING id::text`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)

	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL, "CDC_RELAY_AMQP_URL": testenv.AMQPURL(t), "CDC_RELAY_EXCHANGE": exchange}
	r := cdcRelay(t, env, "replay", "--since", "1h")
	require.Equal(t, 0, r.code, "%s", r)
	assert.Contains(t, r.stdout, "replayed 3 row(s) of public.outbox")
	var got []string
	for len(got) < 3 {
		select {
		case d := <-deliveries:
			got = append(got, d.MessageId)
		case <-time.After(30 * time.Second):
			t.Fatalf("received %v of %v", got, ids)
		}
	}
	assert.ElementsMatch(t, ids, got)

	env["CDC_RELAY_EXCHANGE"] = testenv.NewExchange(t) // nothing bound: returned
	r = cdcRelay(t, env, "replay", "--since", "1h")
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "message returned as unroutable")
}
