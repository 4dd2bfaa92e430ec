// Package metrics exposes the relay's Prometheus metrics (design §4.5). It
// implements relay.Observer beside the core, so the relay's packages do not
// import Prometheus.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
)

// Metrics is one relay's metric set, on its own registry.
type Metrics struct {
	reg *prometheus.Registry

	published       *prometheus.CounterVec
	confirmed       prometheus.Counter
	returned        prometheus.Counter
	nacked          prometheus.Counter
	invalidRows     prometheus.Counter
	publishConfirm  prometheus.Histogram
	commitToConfirm prometheus.Histogram
	receivedLSN     prometheus.Gauge
	confirmedLSN    prometheus.Gauge
	serverWALEnd    prometheus.Gauge
	lagBytes        prometheus.Gauge
	reconnects      *prometheus.CounterVec
	ready           prometheus.Gauge
}

// latencyBuckets span 250 µs to 30 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2.5, 14)

// New registers the relay's metrics, labelled with its slot, plus Go and
// process collectors.
func New(slot string) *Metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"slot": slot}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		reg: reg,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_relay_events_published_total",
			Help: "Outbox rows published to the broker (confirmed or not).", ConstLabels: labels}, []string{"routing_key"}),
		confirmed: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_relay_events_confirmed_total",
			Help: "Messages the broker confirmed.", ConstLabels: labels}),
		returned: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_relay_events_returned_total",
			Help: "Messages returned as unroutable (no queue bound); the relay does not ack past them.", ConstLabels: labels}),
		nacked: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_relay_events_nacked_total",
			Help: "Messages the broker nacked; the relay does not ack past them.", ConstLabels: labels}),
		invalidRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_relay_rows_invalid_total",
			Help: "Outbox rows whose headers column was not a JSON object (sent with the raw text as a header).", ConstLabels: labels}),
		publishConfirm: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdc_relay_publish_confirm_seconds",
			Help: "Time from publish to broker confirm.", Buckets: latencyBuckets, ConstLabels: labels}),
		commitToConfirm: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdc_relay_commit_to_confirm_seconds",
			Help: "Time from the row's transaction commit to broker confirm.", Buckets: latencyBuckets, ConstLabels: labels}),
		receivedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_received_lsn",
			Help: "WAL position read from the stream.", ConstLabels: labels}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_confirmed_lsn",
			Help: "WAL position acknowledged to Postgres (every message before it confirmed by the broker).", ConstLabels: labels}),
		serverWALEnd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_server_wal_end_lsn",
			Help: "Server WAL position from the last keepalive.", ConstLabels: labels}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_slot_lag_bytes",
			Help: "Server WAL end minus the confirmed position.", ConstLabels: labels}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_relay_reconnects_total",
			Help: "Sessions ended by an error and retried, by the side that failed.", ConstLabels: labels}, []string{"target"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_ready",
			Help: "1 while streaming with an open broker channel.", ConstLabels: labels}),
	}
	for _, c := range []prometheus.Collector{m.published, m.confirmed, m.returned, m.nacked, m.invalidRows,
		m.publishConfirm, m.commitToConfirm, m.receivedLSN, m.confirmedLSN, m.serverWALEnd, m.lagBytes,
		m.reconnects, m.ready} {
		f(c)
	}
	for _, t := range []string{"broker", "database"} {
		m.reconnects.WithLabelValues(t)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version(), "goversion": runtime.Version()}})
	build.Set(1)
	f(build)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Published implements relay.Observer.
func (m *Metrics) Published(key string) { m.published.WithLabelValues(key).Inc() }

// Confirmed implements relay.Observer.
func (m *Metrics) Confirmed(publishToConfirm, commitToConfirm time.Duration) {
	m.confirmed.Inc()
	m.publishConfirm.Observe(publishToConfirm.Seconds())
	m.commitToConfirm.Observe(commitToConfirm.Seconds())
}

// Failed implements relay.Observer.
func (m *Metrics) Failed(reason string) {
	if reason == "unroutable" {
		m.returned.Inc()
		return
	}
	m.nacked.Inc()
}

// InvalidRow implements relay.Observer.
func (m *Metrics) InvalidRow() { m.invalidRows.Inc() }

// Positions implements relay.Observer.
func (m *Metrics) Positions(received, confirmed, serverEnd checkpoint.LSN) {
	m.receivedLSN.Set(float64(received))
	m.confirmedLSN.Set(float64(confirmed))
	m.serverWALEnd.Set(float64(serverEnd))
	lag := 0.0
	if serverEnd > confirmed {
		lag = float64(serverEnd - confirmed)
	}
	m.lagBytes.Set(lag)
}

// Reconnect implements relay.Observer.
func (m *Metrics) Reconnect(target string) { m.reconnects.WithLabelValues(target).Inc() }

// Ready implements relay.Observer.
func (m *Metrics) Ready(ready bool) {
	v := 0.0
	if ready {
		v = 1
	}
	m.ready.Set(v)
}
