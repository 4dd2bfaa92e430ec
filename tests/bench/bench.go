// Package bench measures cdc-relay beside the machine's limits and a polling
// outbox relay, side by side in one run, and renders the figures
// as a table and as docs/benchmarks.md.
//
// Every step runs on its own database, slots, exchange and queues
// (tests/helpers/testenv), removed at the end of the step. The relay is the built
// binary, configured by environment as in production; its CPU time and
// peak RSS come from /proc/<pid>.
//
// `make bench` runs BenchmarkRelay; TestHarness runs the same steps with
// tiny numbers so `make test` checks the harness itself.
package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// Config sizes a run.
type Config struct {
	// Backlog is the rows of the backlog the relay drains (and the bare
	// decoder decodes), written before either starts.
	Backlog int
	// BulkTxn is the rows per transaction of a batched backlog.
	BulkTxn int
	// BigBacklog is the backlog of the peak-RSS step.
	BigBacklog int
	// Rates are the steady writer rates of the latency steps, rows per second.
	Rates []int
	// RateDuration is how long each latency step writes.
	RateDuration time.Duration
	// PollBacklog is the backlog the polling relay drains.
	PollBacklog int
	// PollRate and PollDuration are the polling relay's latency step.
	PollRate     int
	PollDuration time.Duration
	// PollIntervals are the polling relay's intervals.
	PollIntervals []time.Duration
	// PollBatch is the rows per poll.
	PollBatch int
	// IdleWindow is how long the idle step counts transactions.
	IdleWindow time.Duration
	// Window is the relay's CDC_RELAY_MAX_IN_FLIGHT and the unconfirmed
	// window of the harness's own publishers.
	Window int
	// Heartbeat is the relay's CDC_RELAY_HEARTBEAT_INTERVAL.
	Heartbeat time.Duration
	// StatsSettle is how long the idle step waits before and after its
	// window for backends to flush their statistics: an idle backend may
	// hold them up to PGSTAT_IDLE_INTERVAL (10 s) before pg_stat_database
	// shows them.
	StatsSettle time.Duration
	// Profile takes a CPU profile of the relay draining a backlog when the
	// throughput target is missed.
	Profile bool
	// Timeout bounds each wait for messages.
	Timeout time.Duration

	// BrokerSettle bounds the wait, before each burst and drain with no
	// consumer, for the broker to finish what the last one left (0: none).
	BrokerSettle time.Duration
	// Rounds is how many times the ceilings and the drains with no
	// consumer are measured, interleaved; the medians count.
	Rounds int
	// CeilingMessages is the messages of each ceiling burst.
	CeilingMessages int
	// QueuedRows and QueuedTxn are the rows of the single-row and batched
	// backlogs drained with no consumer, and the rows per transaction of
	// the batched one; QueuedBig is the rows of the one-transaction backlog.
	QueuedRows, QueuedTxn, QueuedBig int
}

// Full is the run.
func Full() Config {
	return Config{
		Backlog:       200_000,
		BulkTxn:       100_000,
		BigBacklog:    1_000_000,
		Rates:         []int{500, 2000},
		RateDuration:  20 * time.Second,
		PollBacklog:   50_000,
		PollRate:      500,
		PollDuration:  10 * time.Second,
		PollIntervals: []time.Duration{100 * time.Millisecond, time.Second},
		PollBatch:     100,
		IdleWindow:    30 * time.Second,
		Window:        1000,
		Heartbeat:     10 * time.Second,
		StatsSettle:   11 * time.Second,
		Profile:       true,
		// The 1,000,000-row drain takes minutes on a loaded 2-core machine.
		Timeout:      15 * time.Minute,
		Rounds:       3,
		BrokerSettle: 30 * time.Second,
		// Each drain with no consumer and each ceiling burst piles up the
		// same number of messages: the broker's rate falls as its queue grows.
		CeilingMessages: 100_000,
		QueuedRows:      100_000,
		QueuedTxn:       100,
		QueuedBig:       100_000,
	}
}

// Smoke is a run small enough for `make test`.
func Smoke() Config {
	return Config{
		Backlog:         2000,
		BulkTxn:         1000,
		BigBacklog:      3000,
		Rates:           []int{200},
		RateDuration:    time.Second,
		PollBacklog:     300,
		PollRate:        200,
		PollDuration:    time.Second,
		PollIntervals:   []time.Duration{100 * time.Millisecond},
		PollBatch:       100,
		IdleWindow:      2 * time.Second,
		Window:          100,
		Heartbeat:       500 * time.Millisecond,
		StatsSettle:     1500 * time.Millisecond,
		Timeout:         time.Minute,
		Rounds:          1,
		CeilingMessages: 500,
		QueuedRows:      1000,
		QueuedTxn:       100,
		QueuedBig:       500,
	}
}

// Step runs one named step with its own cleanup: b.Run or t.Run.
type Step func(name string, fn func(tb testing.TB)) bool

// Harness runs the steps and keeps their figures.
type Harness struct {
	Cfg       Config
	Bin       string // the cdc-relay binary
	BinPprof  string // the same with net/http/pprof, for profiles; may be empty
	PGURL     string
	AMQPURL   string
	ProfileTo string // where the CPU profile is written, when one is taken

	brokerPID int // the broker's process on this machine; 0 if it is not

	mu  sync.Mutex
	Res Results
}

// Results are the figures of a run.
type Results struct {
	Machine Machine

	Ceilings   []CeilingRun
	QueuedRuns []QueuedRun

	DecodeBatched float64 // rows/s
	DecodeSingle  float64 // rows/s

	DrainBatched Drain
	DrainSingle  Drain
	DrainBig     Drain

	Latency []Latency

	Polls []Poll

	IdleRelayTxn   int64 // xact_commit delta on the relay's idle database
	IdleControlTxn int64 // on a database with nothing attached
	IdleSeconds    float64

	Profile string // pprof -top of the relay, when taken

	Failed []string // steps that failed: their figures are missing
}

// Drain is the relay draining a backlog.
type Drain struct {
	Rows    int
	Elapsed time.Duration // process start to last message consumed
	CPU     time.Duration // utime+stime at the last message consumed
	HWMKB   int64
}

// Rate is rows per second.
func (d Drain) Rate() float64 { return rate(d.Rows, d.Elapsed) }

// CPUPer100k is CPU seconds per 100,000 rows.
func (d Drain) CPUPer100k() float64 {
	if d.Rows == 0 {
		return 0
	}
	return d.CPU.Seconds() * 100_000 / float64(d.Rows)
}

// Latency is one steady-rate step: the relay and the bare probe on the same
// commits.
type Latency struct {
	Rate     int
	Achieved float64
	Relay    Percentiles
	Probe    Percentiles
}

// Percentiles of commit-to-consumer latency.
type Percentiles struct {
	N             int
	P50, P99, Max time.Duration
}

// Poll is the polling relay at one interval.
type Poll struct {
	Interval      time.Duration
	Drain         float64 // rows/s draining PollBacklog
	Latency       Percentiles
	IdleTxn       int64   // xact_commit delta on an idle database
	IdleStmtPerS  float64 // statements per second it sent while idle
	IdleTxnPerSec float64
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// percentiles of received[i] − committed[i] over the rows both know.
func percentiles(committed, received []time.Time) Percentiles {
	var ds []time.Duration
	for i := 1; i < len(committed) && i < len(received); i++ {
		if committed[i].IsZero() || received[i].IsZero() {
			continue
		}
		ds = append(ds, max(0, received[i].Sub(committed[i])))
	}
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Percentiles{N: len(ds), P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}

// Run runs every step in order; a failed step is noted and the next runs.
func (h *Harness) Run(step Step) {
	inner := step
	step = func(name string, fn func(tb testing.TB)) bool {
		ok := inner(name, fn)
		if !ok {
			h.Res.Failed = append(h.Res.Failed, name)
		}
		return ok
	}
	h.rounds(step)
	step("backlog-batched", func(tb testing.TB) { h.backlog(tb, true) })
	step("backlog-single-row", func(tb testing.TB) { h.backlog(tb, false) })
	for _, r := range h.Cfg.Rates {
		step(fmt.Sprintf("latency-%d", r), func(tb testing.TB) { h.latency(tb, r) })
	}
	step("rss-big-backlog", h.bigBacklog)
	for _, iv := range h.Cfg.PollIntervals {
		step("polling-"+iv.String(), func(tb testing.TB) { h.polling(tb, iv) })
	}
	step("idle", h.idle)
	if h.Cfg.Profile && h.BinPprof != "" {
		step("profile", h.profile)
	}
}

func (h *Harness) ctx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.Cfg.Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// metric reports a figure to `go test -bench` when tb is a benchmark.
func metric(tb testing.TB, v float64, unit string) {
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(v, unit)
	}
}

// backlog: write a backlog (batched or single-row transactions), decode it
// with the bare client, then drain it with the relay.
func (h *Harness) backlog(tb testing.TB, batched bool) {
	ctx := h.ctx(tb)
	relaySlot, decodeSlot := testenv.RandomName("bench_relay_"), testenv.RandomName("bench_decode_")
	db := outboxDB(tb, relaySlot, decodeSlot)
	n := h.Cfg.Backlog
	var err error
	if batched {
		err = writeBulk(ctx, db, 1, n, h.Cfg.BulkTxn)
	} else {
		err = writeSingle(ctx, db, 1, n)
	}
	if err != nil {
		tb.Fatal(err)
	}
	took, err := decodeLimit(ctx, db, decodeSlot, n)
	if err != nil {
		tb.Fatal(err)
	}
	d := h.drain(tb, ctx, db, relaySlot, n, h.Bin, nil, nil)
	h.mu.Lock()
	if batched {
		h.Res.DecodeBatched, h.Res.DrainBatched = rate(n, took), d
	} else {
		h.Res.DecodeSingle, h.Res.DrainSingle = rate(n, took), d
	}
	h.mu.Unlock()
	metric(tb, rate(n, took), "decoded-rows/s")
	metric(tb, d.Rate(), "relayed-rows/s")
	metric(tb, d.CPUPer100k(), "cpu-s/100k-rows")
}

// drain starts the relay on a slot with n rows behind it and measures until
// its consumer has counted n messages. started, if set, is called once the
// relay is ready, and what it returns just before the relay is stopped.
func (h *Harness) drain(tb testing.TB, ctx context.Context, db, slot string, n int, bin string, env []string, started func(*relayProc) (beforeStop func())) Drain {
	ex := testenv.NewExchange(tb)
	q := testenv.NewQueue(tb, ex, RoutingKey)
	c := consume(tb, q, n, false)
	began := time.Now()
	p := startRelay(tb, bin, relaySettings{dbURL: db, amqpURL: h.AMQPURL, slot: slot, exchange: ex,
		window: h.Cfg.Window, heartbeat: h.Cfg.Heartbeat, extraEnv: env})
	beforeStop := func() {}
	if started != nil {
		beforeStop = started(p)
	}
	last, err := c.wait(ctx)
	if err != nil {
		tb.Fatalf("relay drain: %v; relay output:\n%s", err, p.out.String())
	}
	st, err := p.stats()
	if err != nil {
		tb.Fatal(err)
	}
	beforeStop()
	p.stop()
	return Drain{Rows: n, Elapsed: last.Sub(began), CPU: st.CPU, HWMKB: st.HWMKB}
}

// latency: a paced writer of single-row transactions; the relay and the
// bare probe read the same commits on their own slots.
func (h *Harness) latency(tb testing.TB, r int) {
	ctx := h.ctx(tb)
	relaySlot, probeSlot := testenv.RandomName("bench_relay_"), testenv.RandomName("bench_probe_")
	db := outboxDB(tb, relaySlot, probeSlot)
	n := int(float64(r) * h.Cfg.RateDuration.Seconds())
	relayEx, probeEx := testenv.NewExchange(tb), testenv.NewExchange(tb)
	relayC := consume(tb, testenv.NewQueue(tb, relayEx, RoutingKey), n, true)
	probeC := consume(tb, testenv.NewQueue(tb, probeEx, RoutingKey), n, true)
	startRelay(tb, h.Bin, relaySettings{dbURL: db, amqpURL: h.AMQPURL, slot: relaySlot, exchange: relayEx,
		window: h.Cfg.Window, heartbeat: h.Cfg.Heartbeat})

	pctx, stopProbe := context.WithCancel(ctx)
	started := make(chan struct{})
	probeErr := make(chan error, 1)
	go func() {
		probeErr <- runProbe(pctx, db, h.AMQPURL, probeSlot, probeEx, h.Cfg.Window, func() { close(started) })
	}()
	select {
	case <-started:
	case err := <-probeErr:
		tb.Fatal(err)
	}
	w, err := writePaced(ctx, db, r, h.Cfg.RateDuration)
	if err != nil {
		stopProbe()
		tb.Fatal(err)
	}
	_, errR := relayC.wait(ctx)
	_, errP := probeC.wait(ctx)
	stopProbe()
	if err := <-probeErr; err != nil {
		tb.Fatal(err)
	}
	if errR != nil || errP != nil {
		tb.Fatalf("latency at %d rows/s: relay: %v; probe: %v", r, errR, errP)
	}
	l := Latency{Rate: r, Achieved: w.rate(), Relay: percentiles(w.committed, relayC.received),
		Probe: percentiles(w.committed, probeC.received)}
	h.mu.Lock()
	h.Res.Latency = append(h.Res.Latency, l)
	h.mu.Unlock()
	metric(tb, float64(l.Relay.P99.Microseconds())/1000, "relay-p99-ms")
	metric(tb, float64(l.Probe.P99.Microseconds())/1000, "probe-p99-ms")
}

// bigBacklog: peak RSS of the relay draining BigBacklog rows.
func (h *Harness) bigBacklog(tb testing.TB) {
	ctx := h.ctx(tb)
	slot := testenv.RandomName("bench_relay_")
	db := outboxDB(tb, slot)
	n := h.Cfg.BigBacklog
	if err := writeBulk(ctx, db, 1, n, h.Cfg.BulkTxn); err != nil {
		tb.Fatal(err)
	}
	d := h.drain(tb, ctx, db, slot, n, h.Bin, nil, nil)
	h.mu.Lock()
	h.Res.DrainBig = d
	h.mu.Unlock()
	metric(tb, float64(d.HWMKB)/1024, "peak-rss-MiB")
}

// polling: the polling relay draining PollBacklog rows, then its latency at
// PollRate rows/s, each on its own database.
func (h *Harness) polling(tb testing.TB, interval time.Duration) {
	ctx := h.ctx(tb)
	res := Poll{Interval: interval}

	db := pollerDB(tb)
	n := h.Cfg.PollBacklog
	if err := writeBulk(ctx, db, 1, n, h.Cfg.BulkTxn); err != nil {
		tb.Fatal(err)
	}
	ex := testenv.NewExchange(tb)
	c := consume(tb, testenv.NewQueue(tb, ex, RoutingKey), n, false)
	began := time.Now()
	stop := h.startPoller(tb, ctx, db, ex, interval)
	last, err := c.wait(ctx)
	stop()
	if err != nil {
		tb.Fatalf("polling relay drain: %v", err)
	}
	res.Drain = rate(n, last.Sub(began))

	db = pollerDB(tb)
	ex = testenv.NewExchange(tb)
	n = int(float64(h.Cfg.PollRate) * h.Cfg.PollDuration.Seconds())
	c = consume(tb, testenv.NewQueue(tb, ex, RoutingKey), n, true)
	stop = h.startPoller(tb, ctx, db, ex, interval)
	w, err := writePaced(ctx, db, h.Cfg.PollRate, h.Cfg.PollDuration)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = c.wait(ctx)
	stop()
	if err != nil {
		tb.Fatalf("polling relay latency: %v", err)
	}
	res.Latency = percentiles(w.committed, c.received)

	h.mu.Lock()
	h.Res.Polls = append(h.Res.Polls, res)
	h.mu.Unlock()
	metric(tb, res.Drain, "rows/s")
	metric(tb, float64(res.Latency.P99.Microseconds())/1000, "p99-ms")
}

// startPoller runs a polling relay until the returned stop is called (or
// cleanup), and fails tb if it fails.
func (h *Harness) startPoller(tb testing.TB, ctx context.Context, db, exchange string, interval time.Duration) (stop func()) {
	p := &poller{dbURL: db, amqpURL: h.AMQPURL, exchange: exchange, batch: h.Cfg.PollBatch, interval: interval}
	stop, _ = h.runPoller(tb, ctx, p)
	return stop
}

func (h *Harness) runPoller(tb testing.TB, ctx context.Context, p *poller) (stop func(), _ *poller) {
	ctx, cancel := context.WithCancel(ctx)
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- p.run(ctx, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-errc:
		cancel()
		tb.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				tb.Error(err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop, p
}

// idle: transactions on idle databases over IdleWindow, read from
// pg_stat_database.xact_commit: one with the relay, one per polling
// interval with the polling relay, and a control with nothing attached.
func (h *Harness) idle(tb testing.TB) {
	ctx := h.ctx(tb)
	slot := testenv.RandomName("bench_relay_")
	relayDB := outboxDB(tb, slot)
	control := testenv.NewOutboxDatabase(tb)
	startRelay(tb, h.Bin, relaySettings{dbURL: relayDB, amqpURL: h.AMQPURL, slot: slot, exchange: testenv.NewExchange(tb),
		window: h.Cfg.Window, heartbeat: h.Cfg.Heartbeat})
	dbs := []string{relayDB, control}
	var pollers []*poller
	for _, iv := range h.Cfg.PollIntervals {
		db := pollerDB(tb)
		p := &poller{dbURL: db, amqpURL: h.AMQPURL, exchange: testenv.NewExchange(tb), batch: h.Cfg.PollBatch, interval: iv}
		h.runPoller(tb, ctx, p)
		pollers = append(pollers, p)
		dbs = append(dbs, db)
	}
	// Let the set-up's transactions reach the statistics before the first reading.
	if err := pause(ctx, h.Cfg.StatsSettle); err != nil {
		tb.Fatal(err)
	}
	before := make([]int64, len(dbs))
	for i, db := range dbs {
		v, err := xactCommits(ctx, h.PGURL, dbName(db))
		if err != nil {
			tb.Fatal(err)
		}
		before[i] = v
	}
	stmts := make([]int64, len(pollers))
	for i, p := range pollers {
		stmts[i] = p.statements.Load()
	}
	began := time.Now()
	if err := pause(ctx, h.Cfg.IdleWindow); err != nil {
		tb.Fatal(err)
	}
	for i, p := range pollers {
		stmts[i] = p.statements.Load() - stmts[i]
	}
	// Let the window's last transactions reach the statistics.
	secs := time.Since(began).Seconds()
	if err := pause(ctx, h.Cfg.StatsSettle); err != nil {
		tb.Fatal(err)
	}
	delta := make([]int64, len(dbs))
	for i, db := range dbs {
		v, err := xactCommits(ctx, h.PGURL, dbName(db))
		if err != nil {
			tb.Fatal(err)
		}
		delta[i] = v - before[i]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Res.IdleSeconds = secs
	h.Res.IdleRelayTxn, h.Res.IdleControlTxn = delta[0], delta[1]
	for i, p := range pollers {
		for j := range h.Res.Polls {
			if h.Res.Polls[j].Interval == p.interval {
				h.Res.Polls[j].IdleTxn = delta[2+i]
				h.Res.Polls[j].IdleTxnPerSec = float64(delta[2+i]) / secs
				h.Res.Polls[j].IdleStmtPerS = float64(stmts[i]) / secs
			}
		}
	}
	metric(tb, float64(delta[0])/secs, "relay-idle-txn/s")
}

// pause waits d or until ctx ends: the measurement windows of the idle step.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
