package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/relay"
	"github.com/saga-cdc/saga/migrations"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/tcpproxy"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// tlsSetup is a Postgres of the test's own with ssl=on and a certificate
// of the test's own authority, and a TLS-terminating proxy, with the same
// certificate, in front of the machine's broker (a second broker node with
// an amqps listener cannot run beside it here). host is how the relay
// names both: localhost, the name the certificate was issued for.
type tlsSetup struct {
	pki              *testenv.PKI
	pg               *testenv.Postgres
	db               string // the outbox database, plain, as postgres
	dbName           string
	pgPort, amqpPort string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	pki := testenv.NewPKI(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{Settings: map[string]string{
		"ssl": "on", "ssl_cert_file": pki.CertFile, "ssl_key_file": pki.KeyFile,
	}})
	db := pg.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	require.NoError(t, err)
	require.NoError(t, migrations.Apply(ctx, conn, migrations.Outbox()))
	conn.Close(ctx)
	u, err := url.Parse(db)
	require.NoError(t, err)
	mq, err := amqp.ParseURI(testenv.AMQPURL(t))
	require.NoError(t, err)
	proxy := tcpproxy.StartTLS(t, fmt.Sprintf("%s:%d", mq.Host, mq.Port), pki.Server)
	_, amqpPort, _ := strings.Cut(proxy.Addr(), ":")
	return &tlsSetup{pki: pki, pg: pg, db: db, dbName: strings.TrimPrefix(u.Path, "/"), pgPort: u.Port(), amqpPort: amqpPort}
}

// dbURL is the relay's Postgres URL: verify-full against ca, at host.
func (s *tlsSetup) dbURL(host, ca string) string {
	return fmt.Sprintf("postgres://postgres@%s:%s/%s?sslmode=verify-full&sslrootcert=%s", host, s.pgPort, s.dbName, url.QueryEscape(ca))
}

// amqpURL is the relay's amqps URL through the proxy, verified against ca.
func (s *tlsSetup) amqpURL(t *testing.T, host, ca string) string {
	mq, err := amqp.ParseURI(testenv.AMQPURL(t))
	require.NoError(t, err)
	return fmt.Sprintf("amqps://%s:%s@%s:%s/?cacertfile=%s", mq.Username, mq.Password, host, s.amqpPort, url.QueryEscape(ca))
}

// With sslmode=verify-full and amqps:// verified against the test's
// authority, the relay streams; its replication connection is encrypted.
func TestTLSVerifiedBothWays(t *testing.T) {
	s := newTLSSetup(t)
	e := newEnvAt(t, s.dbURL("localhost", s.pki.CAFile), s.amqpURL(t, "localhost", s.pki.CAFile), nil)
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)
	require.NoError(t, relaytest.Write(context.Background(), s.db, 0, 1, 20, 5, "tls"))
	got.WaitDistinct(t, 20, 30*time.Second)
	got.Check(t, 1, 20)

	var ssl bool
	var version string
	require.NoError(t, s.pg.QueryRow(t, s.dbName, `SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)
		WHERE r.application_name = 'cdc-relay'`, &ssl, &version))
	assert.True(t, ssl, "the replication connection is not encrypted")
	assert.Contains(t, version, "TLS")
}

// A certificate the relay cannot verify (another authority, or a host name
// it was not issued for) stops the relay at start, with one line that says
// what to check; it does not retry.
func TestTLSRefusedAtStart(t *testing.T) {
	s := newTLSSetup(t)
	tests := []struct {
		name, dbURL, amqpURL, want string
	}{
		{"Postgres: another CA", s.dbURL("localhost", s.pki.OtherCAFile), s.amqpURL(t, "localhost", s.pki.CAFile),
			"the server's certificate does not match CDC_RELAY_DATABASE_URL's sslrootcert (its CA) or host name"},
		{"Postgres: another host name", s.dbURL("127.0.0.1", s.pki.CAFile), s.amqpURL(t, "localhost", s.pki.CAFile), "CDC_RELAY_DATABASE_URL's sslrootcert"},
		{"broker: another CA", s.dbURL("localhost", s.pki.CAFile), s.amqpURL(t, "localhost", s.pki.OtherCAFile),
			"the broker's certificate does not match CDC_RELAY_AMQP_URL's cacertfile (its CA) or server_name_indication / host name"},
		{"broker: another host name", s.dbURL("localhost", s.pki.CAFile), s.amqpURL(t, "127.0.0.1", s.pki.CAFile), "CDC_RELAY_AMQP_URL's cacertfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.DatabaseURL, cfg.AMQPURL = tt.dbURL, tt.amqpURL
			cfg.Slot, cfg.Exchange = testenv.RandomName("t_slot_"), testenv.NewExchange(t)
			cfg.HTTPAddr = "127.0.0.1:0"
			t.Cleanup(func() { testenv.DropSlot(t, s.db, cfg.Slot) })
			require.NoError(t, cfg.Validate())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var logs strings.Builder
			err := relay.New(cfg, relay.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
				slog.New(slog.NewTextHandler(&logs, nil)), nil).Run(ctx)
			require.Error(t, err, "the relay ran on: %s", logs.String())
			require.ErrorIs(t, err, fault.ErrFatal, "retried instead of stopping: %v", err)
			assert.NotErrorIs(t, ctx.Err(), context.DeadlineExceeded)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}
