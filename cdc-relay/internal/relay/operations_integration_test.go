package relay_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/tcpproxy"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// The stream paused (a proxy that stops forwarding between the relay and
// Postgres) turns /readyz not ready within two heartbeat intervals, and ready
// again once it flows.
func TestStalledStreamIsNotReadyUntilItFlowsAgain(t *testing.T) {
	const interval = 500 * time.Millisecond
	dbURL := testenv.NewOutboxDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	e := newEnvOn(t, dbURL, func(c *config.Config) {
		c.DatabaseURL = u.String()
		c.HeartbeatInterval = interval
	})
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)
	// Ready means heartbeats come back.
	require.Eventually(t, func() bool {
		age := e.relay.Status().HeartbeatAge
		return age != nil && *age < interval.Seconds()
	}, 10*time.Second, 10*time.Millisecond)

	proxy.Pause()
	paused := time.Now()
	require.Eventually(t, func() bool { return !e.relay.Status().Ready }, 2*interval+500*time.Millisecond, 5*time.Millisecond,
		"still ready %s after the pause", time.Since(paused))
	t.Logf("not ready %s after the pause: %s", time.Since(paused).Round(time.Millisecond), e.relay.Status().Reason)
	code, body := get(t, e.http.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "stalled: no heartbeat read back")

	// Rows written meanwhile arrive once the stream flows again.
	require.NoError(t, relaytest.Write(context.Background(), dbURL, 0, 1, 10, 5, "k"))
	proxy.Resume()
	e.waitReady(t)
	got.WaitDistinct(t, 10, 30*time.Second)
	assert.Zero(t, got.Check(t, 1, 10))
}

// Scraping /metrics before and after traffic: the counters, LSN gauges and
// slot gauges move as expected.
func TestMetricsMoveWithTraffic(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.HeartbeatInterval = 200 * time.Millisecond })
	got := relaytest.Collect(testenv.Consume(t, testenv.NewQueue(t, e.exchange, "#")))
	e.waitReady(t)
	slot := `{slot="` + e.slot + `"}`
	reserved := `cdc_relay_slot_wal_status{slot="` + e.slot + `",status="reserved"}`
	require.Eventually(t, func() bool {
		return metric(t, e, "cdc_relay_confirmed_lsn"+slot) > 0 && metric(t, e, reserved) == 1
	}, 10*time.Second, 20*time.Millisecond, "no position or slot health after a heartbeat")
	before := scrape(t, e.http.URL)
	confirmedBefore := metric(t, e, "cdc_relay_confirmed_lsn"+slot)
	assert.Equal(t, 1.0, value(t, before, "cdc_relay_ready"+slot))
	assert.Equal(t, 0.0, value(t, before, "cdc_relay_events_confirmed_total"+slot))
	assert.Contains(t, before, "cdc_relay_build_info{")

	relaytest.WriteConcurrently(t, e.dbURL, 2, 150, 10, "metrics.k")
	got.WaitDistinct(t, 300, 30*time.Second)
	require.Eventually(t, func() bool {
		return metric(t, e, "cdc_relay_events_confirmed_total"+slot) == 300 &&
			metric(t, e, "cdc_relay_confirmed_lsn"+slot) > confirmedBefore &&
			metric(t, e, "cdc_relay_slot_lag_bytes"+slot) < 1<<20
	}, 10*time.Second, 20*time.Millisecond)
	after := scrape(t, e.http.URL)
	assert.Equal(t, 300.0, value(t, after, `cdc_relay_events_published_total{routing_key="metrics.k",slot="`+e.slot+`"}`))
	assert.Equal(t, 300.0, value(t, after, "cdc_relay_publish_confirm_seconds_count"+slot))
	assert.Equal(t, 300.0, value(t, after, "cdc_relay_commit_to_confirm_seconds_count"+slot))
	assert.GreaterOrEqual(t, value(t, after, "cdc_relay_received_lsn"+slot), value(t, after, "cdc_relay_confirmed_lsn"+slot)-1e9)
	assert.Less(t, value(t, after, "cdc_relay_heartbeat_age_seconds"+slot), 2.0)
	assert.GreaterOrEqual(t, value(t, after, "cdc_relay_slot_retained_wal_bytes"+slot), 0.0)
	assert.Equal(t, 0.0, value(t, after, "cdc_relay_events_returned_total"+slot))

	// /status tells the same story.
	st := e.relay.Status()
	assert.Equal(t, uint64(300), st.Published)
	assert.NotNil(t, st.LastEventAt)
	assert.Equal(t, "reserved", st.WALStatus)
}

func metric(t *testing.T, e *env, series string) float64 {
	t.Helper()
	return value(t, scrape(t, e.http.URL), series)
}

// value reads one series from an exposition, or -1 when absent.
func value(t *testing.T, exposition, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
