package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// A relay whose URLs hold passwords (in the user information of a
// multi-host URL and in its query string) never shows them: not in its
// logs, its /status, its /metrics, nor its logged configuration. The test
// server trusts local connections, so the passwords are accepted unread.
func TestStatusLogsAndMetricsShowNoPassword(t *testing.T) {
	db := testenv.NewOutboxDatabase(t)
	u, err := url.Parse(db)
	require.NoError(t, err)
	q := u.Query()
	q.Set("target_session_attrs", "primary")
	q.Set("password", "s3cret-query")
	multi := fmt.Sprintf("postgres://%s:s3cret-user@%s,%s%s?%s", u.User.Username(), u.Host, u.Host, u.Path, q.Encode())
	e := newEnvOn(t, multi, nil)
	e.waitReady(t)
	require.NoError(t, relaytest.Write(context.Background(), db, 0, 1, 3, 3, "nowhere-bound"))

	get := func(path string) string {
		resp, err := http.Get(e.http.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	var logged strings.Builder
	cfg := config.Defaults()
	cfg.DatabaseURL, cfg.AMQPURL = multi, strings.Replace(testenv.AMQPURL(t), "://", "://u:s3cret-amqp@", 1)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg)
	for name, out := range map[string]string{
		"/status": get("/status"), "/metrics": get("/metrics"), "logs": e.logs.String(), "configuration": logged.String(),
	} {
		assert.NotContains(t, out, "s3cret", name)
	}
	assert.Contains(t, logged.String(), ":xxxxx@"+u.Host+","+u.Host, "the multi-host URL is logged, masked")
	// The unroutable row ends sessions; their errors are logged under the
	// key the services use too (docs/contracts.md, "Observability").
	require.Eventually(t, func() bool { return strings.Contains(e.logs.String(), `"error":`) }, 20*time.Second, 10*time.Millisecond)
	assert.NotContains(t, e.logs.String(), `"err":`)
}
