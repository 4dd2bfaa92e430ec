package admin_test

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/admin"
	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// asRole is dbURL with another user (the test server trusts local
// connections, so no password is needed).
func asRole(t *testing.T, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.User(role)
	return u.String()
}

// The relay runs as the role `role create` makes, with LOGIN REPLICATION
// and SELECT on the outbox and nothing else: it creates its slot, streams,
// heartbeats; the slot commands, doctor and replay work as that role; and
// doctor names the grant once it is missing.
func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	role := testenv.RandomName("t_relay_")
	// Registered first, so it runs last: after the relay stopped and the
	// slots are gone.
	t.Cleanup(func() {
		exec(t, dbURL, "DROP OWNED BY "+role)
		exec(t, dbURL, "DROP ROLE "+role)
	})
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	r := run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL}, "role", "create", "--role", role, "--password-file", pw).ok(t)
	assert.Contains(t, r.stdout, "created role "+role+" (LOGIN REPLICATION), password set from the file; granted USAGE on schema public and SELECT on public.outbox, nothing else")
	assert.NotContains(t, r.stdout+r.stderr, "s3cret")
	r = run(t, map[string]string{"CDC_RELAY_DATABASE_URL": dbURL}, "role", "create", "--role", role).ok(t)
	assert.Contains(t, r.stdout, "role "+role+" exists: now LOGIN REPLICATION")
	var super, repl bool
	var grants int
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	// The role has a SCRAM-SHA-256 verifier (role create sends the
	// verifier, not the password: scram_test.go checks its keys).
	var stored string
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored))
	assert.True(t, strings.HasPrefix(stored, "SCRAM-SHA-256$4096:"), stored)
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = $1`, role).Scan(&super, &repl))
	assert.False(t, super)
	assert.True(t, repl)
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1`, role).Scan(&grants))
	assert.Equal(t, 1, grants, "SELECT on the outbox, nothing else")

	relayURL := asRole(t, dbURL, role)
	amqpURL, exchange := testenv.AMQPURL(t), testenv.NewExchange(t)
	deliveries := testenv.Consume(t, testenv.NewQueue(t, exchange, "#"))
	env := map[string]string{"CDC_RELAY_DATABASE_URL": relayURL, "CDC_RELAY_AMQP_URL": amqpURL, "CDC_RELAY_EXCHANGE": exchange}

	// The slot commands.
	spare := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, spare) })
	run(t, with(env, "CDC_RELAY_SLOT", spare), "slot", "create").ok(t)
	slots := decode[[]admin.SlotInfo](t, run(t, env, "slot", "list", "--json").ok(t))
	require.NotNil(t, findSlot(slots, spare))
	run(t, with(env, "CDC_RELAY_SLOT", spare), "slot", "advance", "--to", "now").ok(t)
	run(t, with(env, "CDC_RELAY_SLOT", spare), "slot", "drop").ok(t)

	// The relay: its own slot, the stream, the heartbeat.
	slot := testenv.RandomName("t_slot_")
	t.Cleanup(func() { testenv.DropSlot(t, dbURL, slot) })
	cfg := config.Defaults()
	cfg.DatabaseURL, cfg.AMQPURL, cfg.Slot, cfg.Exchange = relayURL, amqpURL, slot, exchange
	cfg.HTTPAddr, cfg.HeartbeatInterval = "127.0.0.1:0", 200*time.Millisecond
	require.NoError(t, cfg.Validate())
	rl := relay.New(cfg, relay.Options{}, slog.New(slog.NewTextHandler(testLog{t}, nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop")
		}
	})
	require.Eventually(t, func() bool { return rl.Status().Ready }, 20*time.Second, 10*time.Millisecond, "never ready: %+v", rl.Status())
	rows := insertTx(t, dbURL, "role.x", 3)
	got := receive(t, deliveries, 3)
	for i, d := range got {
		assert.Equal(t, rows[i].id, d.MessageId)
	}
	require.Eventually(t, func() bool {
		age := rl.Status().HeartbeatAge
		return age != nil && *age < 1
	}, 10*time.Second, 10*time.Millisecond, "no heartbeat came back")

	// doctor, then replay, as the role.
	r = run(t, with(env, "CDC_RELAY_SLOT", slot), "doctor")
	require.NoError(t, r.err, r.stdout)
	assert.Contains(t, r.stdout, "role "+role+" has REPLICATION")
	assert.Contains(t, r.stdout, "role "+role+" can SELECT from public.outbox")
	r = run(t, env, "replay", "--since", "1h").ok(t)
	again := receive(t, deliveries, 3)
	for i, d := range again {
		assert.Equal(t, rows[i].id, d.MessageId, "replayed")
	}

	// A missing grant: doctor names it and says how to give it.
	exec(t, dbURL, "REVOKE SELECT ON outbox FROM "+role)
	r = run(t, with(env, "CDC_RELAY_SLOT", slot), "doctor")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "role "+role+" cannot SELECT from public.outbox")
	assert.Contains(t, r.stdout, `GRANT SELECT ON "public"."outbox" TO "`+role+`"`)
}

// with is env plus one more variable.
func with(env map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for ek, ev := range env {
		if ek != k {
			out[ek] = ev
		}
	}
	return out
}

// Refusals: a role name that is not an identifier, a password file that
// cannot be read, a connecting role that may not create roles.
func TestRoleCreateRefusals(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	env := map[string]string{"CDC_RELAY_DATABASE_URL": dbURL}
	r := run(t, env, "role", "create", "--role", "Bad-Name")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.err.Error(), `--role "Bad-Name" is not a lower-case identifier`)
	r = run(t, env, "role", "create", "--role", "x", "--password-file", filepath.Join(t.TempDir(), "nope"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.err.Error(), "--password-file: read ")

	weak := testenv.RandomName("t_weak_")
	exec(t, dbURL, "CREATE ROLE "+weak+" LOGIN")
	t.Cleanup(func() { exec(t, dbURL, "DROP ROLE "+weak) })
	r = run(t, map[string]string{"CDC_RELAY_DATABASE_URL": asRole(t, dbURL, weak)}, "role", "create", "--role", testenv.RandomName("t_relay_"))
	assert.Equal(t, 1, r.code)
	assert.ErrorIs(t, r.err, admin.ErrRefused)
	assert.Contains(t, r.err.Error(), "may not create a role with REPLICATION")
}

// A role made with LOGIN REPLICATION when the database was initialised (as
// the compose file and the Helm chart do) gets its grants from the outbox's
// owner, an ordinary role: role create then only grants. The owner cannot
// give REPLICATION to a role that lacks it, and says so.
func TestRoleCreateByTheOutboxOwner(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewOutboxDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	dbName := strings.TrimPrefix(u.Path, "/")
	owner, relayRole, plain := testenv.RandomName("t_owner_"), testenv.RandomName("t_relay_"), testenv.RandomName("t_plain_")
	exec(t, dbURL, "CREATE ROLE "+owner+" LOGIN")
	exec(t, dbURL, "CREATE ROLE "+relayRole+" LOGIN REPLICATION")
	exec(t, dbURL, "CREATE ROLE "+plain+" LOGIN")
	exec(t, dbURL, `ALTER DATABASE "`+dbName+`" OWNER TO `+owner)
	exec(t, dbURL, "ALTER TABLE public.outbox OWNER TO "+owner)
	t.Cleanup(func() {
		exec(t, dbURL, `ALTER DATABASE "`+dbName+`" OWNER TO postgres`)
		for _, r := range []string{relayRole, plain, owner} {
			exec(t, dbURL, "DROP OWNED BY "+r)
			exec(t, dbURL, "DROP ROLE "+r)
		}
	})

	asOwner := map[string]string{"CDC_RELAY_DATABASE_URL": asRole(t, dbURL, owner)}
	r := run(t, asOwner, "role", "create", "--role", relayRole).ok(t)
	assert.Contains(t, r.stdout, "role "+relayRole+" exists")
	var grants int
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1 AND table_name = 'outbox' AND privilege_type = 'SELECT'`,
		relayRole).Scan(&grants))
	assert.Equal(t, 1, grants, "the owner granted SELECT on the outbox")

	// The pods of a rollout run it at once: each succeeds.
	errs := make(chan error, 6)
	for range 6 {
		go func() { errs <- run(t, asOwner, "role", "create", "--role", relayRole).err }()
	}
	for range 6 {
		assert.NoError(t, <-errs, "concurrent role create")
	}

	r = run(t, asOwner, "role", "create", "--role", plain)
	assert.Equal(t, 1, r.code)
	assert.ErrorIs(t, r.err, admin.ErrRefused)
	assert.Contains(t, r.err.Error(), "may not create a role with REPLICATION")
}
