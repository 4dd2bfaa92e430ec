// Package metrics exposes the relay's Prometheus metrics (docs/contracts.md, "Observability"). It
// implements relay.Observer beside the core, so the relay's packages do not
// import Prometheus.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// Registry holds the metrics of every relay of the process, plus the Go,
// process and build collectors once.
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry registers the per-process collectors.
func NewRegistry() *Registry {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version(), "goversion": runtime.Version()}})
	build.Set(1)
	reg.MustRegister(build, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{reg: reg}
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Metrics is one relay's metric set, labelled with its slot.
type Metrics struct {
	reg *Registry

	published       *prometheus.CounterVec
	confirmed       prometheus.Counter
	returned        prometheus.Counter
	nacked          prometheus.Counter
	invalidRows     prometheus.Counter
	parked          *prometheus.CounterVec
	publishConfirm  prometheus.Histogram
	commitToConfirm prometheus.Histogram
	receivedLSN     prometheus.Gauge
	confirmedLSN    prometheus.Gauge
	serverWALEnd    prometheus.Gauge
	lagBytes        prometheus.Gauge
	reconnects      *prometheus.CounterVec
	ready           prometheus.Gauge
	blocked         prometheus.Gauge
	retainedWAL     prometheus.Gauge
	safeWALSize     prometheus.Gauge
	walStatus       *prometheus.GaugeVec

	mu        sync.Mutex
	heartbeat time.Time // last heartbeat read back
}

// walStatuses are the values of pg_replication_slots.wal_status.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// latencyBuckets span 250 µs to 30 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2.5, 14)

// New is a registry with one relay's metrics.
func New(slot string) *Metrics { return NewRegistry().Relay(slot) }

// Relay registers one relay's metrics, labelled with its slot (slots are
// unique within a process: the config file's validation sees to it).
func (r *Registry) Relay(slot string) *Metrics {
	labels := prometheus.Labels{"slot": slot}
	f := func(c prometheus.Collector) { r.reg.MustRegister(c) }
	m := &Metrics{
		reg: r,
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
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_relay_events_parked_total",
			Help:        "Messages parked instead of delivered, by reason: poison (a row that can never be published, in <exchange>.poison) or unroutable (in <exchange>.unroutable).",
			ConstLabels: labels}, []string{"reason"}),
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
			Help: "Current WAL minus the slot's confirmed_flush_lsn, read with each heartbeat.", ConstLabels: labels}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_relay_reconnects_total",
			Help: "Sessions ended by an error and retried, by the side that failed.", ConstLabels: labels}, []string{"target"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_ready",
			Help: "1 while streaming with an open broker channel.", ConstLabels: labels}),
		blocked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_broker_blocked",
			Help: "1 while the broker blocks the relay's connection (a memory or disk alarm): nothing is published.", ConstLabels: labels}),
		retainedWAL: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_slot_retained_wal_bytes",
			Help: "WAL the slot keeps on disk: current WAL minus restart_lsn.", ConstLabels: labels}),
		safeWALSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_relay_slot_safe_wal_size_bytes",
			Help: "WAL that can still be written before the slot is invalidated (-1: max_slot_wal_keep_size unlimited).", ConstLabels: labels}),
		walStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_relay_slot_wal_status",
			Help: "1 for the slot's current wal_status (reserved, extended, unreserved, lost).", ConstLabels: labels}, []string{"status"}),
	}
	for _, c := range []prometheus.Collector{m.published, m.confirmed, m.returned, m.nacked, m.invalidRows, m.parked,
		m.publishConfirm, m.commitToConfirm, m.receivedLSN, m.confirmedLSN, m.serverWALEnd, m.lagBytes,
		m.reconnects, m.ready, m.blocked, m.retainedWAL, m.safeWALSize, m.walStatus} {
		f(c)
	}
	for _, t := range []string{"broker", "database"} {
		m.reconnects.WithLabelValues(t)
	}
	for _, r := range []string{"poison", "unroutable"} {
		m.parked.WithLabelValues(r)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdc_relay_heartbeat_age_seconds",
		Help: "Seconds since a heartbeat last came back through the stream (0 before the first).", ConstLabels: labels},
		func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.heartbeat.IsZero() {
				return 0
			}
			return time.Since(m.heartbeat).Seconds()
		}))
	return m
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// Handler serves the whole registry the relay's metrics are in.
func (m *Metrics) Handler() http.Handler { return m.reg.Handler() }

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

// Parked implements relay.Observer.
func (m *Metrics) Parked(reason string) { m.parked.WithLabelValues(reason).Inc() }

// Positions implements relay.Observer.
func (m *Metrics) Positions(received, confirmed, serverEnd checkpoint.LSN) {
	m.receivedLSN.Set(float64(received))
	m.confirmedLSN.Set(float64(confirmed))
	m.serverWALEnd.Set(float64(serverEnd))
}

// SlotHealth implements relay.Observer.
func (m *Metrics) SlotHealth(h replication.SlotHealth) {
	m.lagBytes.Set(float64(h.LagBytes))
	m.retainedWAL.Set(float64(h.RetainedWALBytes))
	safe := -1.0
	if h.SafeWALSize != nil {
		safe = float64(*h.SafeWALSize)
	}
	m.safeWALSize.Set(safe)
	for _, s := range walStatuses {
		v := 0.0
		if s == h.WALStatus {
			v = 1
		}
		m.walStatus.WithLabelValues(s).Set(v)
	}
}

// HeartbeatSeen implements relay.Observer.
func (m *Metrics) HeartbeatSeen(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeat = at
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

// Blocked implements relay.Observer.
func (m *Metrics) Blocked(blocked bool) {
	if blocked {
		m.blocked.Set(1)
	} else {
		m.blocked.Set(0)
	}
}
