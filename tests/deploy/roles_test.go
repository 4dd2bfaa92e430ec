package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// urlWithPassword is a URL that carries a password (scheme://user:pw@).
var urlWithPassword = regexp.MustCompile(`://[^/@\s]*:[^/@\s]*@`)

// No compose service has a password in its environment: URLs and
// passwords come from secret files through *_FILE variables.
func TestComposeKeepsSecretsOutOfTheEnvironment(t *testing.T) {
	project := loadProject(t, "*")
	for name, s := range project.Services {
		for k, v := range envMap(s) {
			if urlWithPassword.MatchString(v) {
				t.Errorf("%s: %s holds a URL with a password: read it from a secret (%s_FILE)", name, k, k)
			}
			if strings.Contains(k, "PASSWORD") && !strings.HasSuffix(k, "_FILE") {
				t.Errorf("%s: %s is a password in the environment: read it from a secret (%s_FILE)", name, k, k)
			}
		}
	}
	for name, sec := range project.Secrets {
		if sec.File == "" {
			t.Errorf("secret %s is not a file", name)
		}
	}
}

// init-roles.sh, which the compose file's and the chart's Postgres run at
// their first start, makes an owner of the database (an ordinary role, that
// can then apply every migration, publication included) and the relay's
// LOGIN REPLICATION role with no grant yet, both with the passwords of
// their files; a missing variable or an empty password file stops it.
func TestInitRolesScript(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed")
	}
	dbURL := testenv.NewDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	db := strings.TrimPrefix(u.Path, "/")
	owner, relay := testenv.RandomName("t_owner_"), testenv.RandomName("t_relay_")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` OWNER TO CURRENT_USER`)
		for _, r := range []string{relay, owner} {
			_, _ = conn.Exec(ctx, "DROP OWNED BY "+r)
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+r)
		}
	})

	dir := t.TempDir()
	ownerPW, relayPW := filepath.Join(dir, "owner"), filepath.Join(dir, "relay")
	require.NoError(t, os.WriteFile(ownerPW, []byte("owner-secret\n"), 0o600))
	require.NoError(t, os.WriteFile(relayPW, []byte("relay-secret\n"), 0o600))
	script := filepath.Join(repoRoot(t), "deploy", "helm", "saga", "files", "init-roles.sh")
	env := map[string]string{
		"PGHOST": u.Hostname(), "PGPORT": u.Port(), "POSTGRES_USER": u.User.Username(), "POSTGRES_DB": db,
		"SAGA_OWNER_ROLE": owner, "SAGA_OWNER_PASSWORD_FILE": ownerPW,
		"SAGA_RELAY_ROLE": relay, "SAGA_RELAY_PASSWORD_FILE": relayPW,
	}
	runScript := func(env map[string]string) (string, error) {
		cmd := exec.CommandContext(ctx, "sh", script)
		cmd.Env = []string{"PATH=" + filepath.Dir(psql) + ":/usr/bin:/bin"}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// Refusals first: nothing is made.
	missing := map[string]string{}
	for k, v := range env {
		if k != "SAGA_RELAY_ROLE" {
			missing[k] = v
		}
	}
	out, err := runScript(missing)
	require.Error(t, err)
	assert.Contains(t, out, "init-roles: SAGA_RELAY_ROLE is not set")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	out, err = runScript(map[string]string{"PGHOST": env["PGHOST"], "PGPORT": env["PGPORT"], "POSTGRES_USER": env["POSTGRES_USER"], "POSTGRES_DB": db,
		"SAGA_OWNER_ROLE": owner, "SAGA_OWNER_PASSWORD_FILE": empty, "SAGA_RELAY_ROLE": relay, "SAGA_RELAY_PASSWORD_FILE": relayPW})
	require.Error(t, err)
	assert.Contains(t, out, "is empty")
	same := maps.Clone(env)
	same["SAGA_OWNER_ROLE"] = env["POSTGRES_USER"]
	out, err = runScript(same)
	require.Error(t, err)
	assert.Contains(t, out, "must be three roles")
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)`, owner, relay).Scan(&n))
	require.Zero(t, n, "a refused run made a role")

	out, err = runScript(env)
	require.NoError(t, err, out)
	assert.Contains(t, out, "init-roles: made "+owner)
	assert.NotContains(t, out, "secret")

	type attrs struct {
		super, login, repl, scram bool
	}
	get := func(role string) attrs {
		var a attrs
		require.NoError(t, conn.QueryRow(ctx, `SELECT rolsuper, rolcanlogin, rolreplication, rolpassword LIKE 'SCRAM-SHA-256$%'
			FROM pg_authid WHERE rolname = $1`, role).Scan(&a.super, &a.login, &a.repl, &a.scram))
		return a
	}
	for role, pw := range map[string]string{owner: "owner-secret", relay: "relay-secret"} {
		var stored string
		require.NoError(t, conn.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored))
		assert.True(t, scramMatches(t, stored, pw), "%s's password is not the one of its file", role)
		assert.False(t, scramMatches(t, stored, pw+"x"), "the check accepts any password")
	}
	assert.Equal(t, attrs{login: true, scram: true}, get(owner), "the owner: LOGIN, nothing more")
	assert.Equal(t, attrs{login: true, repl: true, scram: true}, get(relay), "the relay: LOGIN REPLICATION")
	var dbOwner string
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1`, db).Scan(&dbOwner))
	assert.Equal(t, owner, dbOwner)

	// The owner applies a service's whole schema, publication included.
	ou := *u
	ou.User = url.User(owner)
	oconn, err := pgx.Connect(ctx, ou.String())
	require.NoError(t, err)
	defer oconn.Close(context.Background())
	require.NoError(t, migrations.Apply(ctx, oconn, migrations.Order()))
	var pubs int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pg_get_userbyid(pubowner) = $1`, owner).Scan(&pubs))
	assert.Equal(t, 1, pubs, "the owner made the relay's publication")

	// The relay may read nothing until the owner grants it the outbox.
	ru := *u
	ru.User = url.User(relay)
	rconn, err := pgx.Connect(ctx, ru.String())
	require.NoError(t, err)
	defer rconn.Close(context.Background())
	_, err = rconn.Exec(ctx, "SELECT FROM public.outbox")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "42501", pgErr.Code)
}

// The project's own containers run as a non-root user on a read-only root
// filesystem without privilege escalation, in compose and in the chart's
// renders. The third-party images (Postgres, RabbitMQ, Prometheus,
// Grafana) run as their images define: Postgres starts as root to own its
// data directory, then drops to its postgres user.
func TestContainersRunAsNonRootReadOnly(t *testing.T) {
	dockerfile := readFile(t, "deploy/docker/Dockerfile")
	if !regexp.MustCompile(`(?m)^FROM \S+ AS base\nCOPY [^\n]*\nUSER 65532:65532$`).MatchString(dockerfile) {
		t.Error("deploy/docker/Dockerfile: the base stage does not set USER 65532:65532")
	}
	for _, m := range regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)$`).FindAllStringSubmatch(dockerfile, -1) {
		if m[2] != "build" && m[2] != "base" && m[1] != "base" {
			t.Errorf("Dockerfile stage %s is not FROM base (its user): FROM %s", m[2], m[1])
		}
	}
	project := loadProject(t, "*")
	for name, s := range project.Services {
		if s.Build == nil && !strings.HasPrefix(s.Image, "kong:") {
			continue
		}
		if !s.ReadOnly {
			t.Errorf("compose %s: root filesystem is not read-only", name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("compose %s: no no-new-privileges", name)
		}
		if s.User != "" && (s.User == "root" || strings.HasPrefix(s.User, "0")) {
			t.Errorf("compose %s: runs as %s", name, s.User)
		}
	}

	helm := helmBinary(t)
	for _, mode := range []string{"sidecar", "deployment"} {
		for key, o := range render(t, helm, "order", "relay.mode="+mode) {
			if o.str("kind") != "Deployment" || strings.HasSuffix(key, "-db-deployment") {
				continue
			}
			pod := []any{"spec", "template", "spec"}
			if o.str(append(pod, "securityContext", "runAsNonRoot")...) != "true" ||
				o.str(append(pod, "securityContext", "seccompProfile", "type")...) != "RuntimeDefault" {
				t.Errorf("%s (%s): the pod is not runAsNonRoot with the RuntimeDefault seccomp profile: %v", key, mode, o.get(append(pod, "securityContext")...))
			}
			for _, c := range append(o.objs(append(pod, "containers")...), o.objs(append(pod, "initContainers")...)...) {
				if c.str("securityContext", "readOnlyRootFilesystem") != "true" || c.str("securityContext", "allowPrivilegeEscalation") != "false" ||
					fmt.Sprint(c.get("securityContext", "capabilities", "drop")) != "[ALL]" {
					t.Errorf("%s/%s (%s): not read-only, without privilege escalation and every capability dropped: %v", key, c.str("name"), mode, c.get("securityContext"))
				}
			}
		}
	}
}

// scramMatches reports whether stored, a SCRAM-SHA-256 verifier as
// pg_authid keeps it (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>),
// is that of password (RFC 5802).
func scramMatches(t *testing.T, stored, password string) bool {
	t.Helper()
	var iter int
	var salt64, keys string
	head, rest, ok := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$"), "$")
	if !ok {
		return false
	}
	if _, err := fmt.Sscanf(strings.Replace(head, ":", " ", 1), "%d %s", &iter, &salt64); err != nil {
		return false
	}
	keys = rest
	storedKey64, serverKey64, ok := strings.Cut(keys, ":")
	if !ok {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	require.NoError(t, err)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := sha256.Sum256(mac(salted, "Client Key"))
	return base64.StdEncoding.EncodeToString(clientKey[:]) == storedKey64 &&
		base64.StdEncoding.EncodeToString(mac(salted, "Server Key")) == serverKey64
}
