package bench

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Targets the benchmarks are held to (docs/benchmarks.md).
const (
	// The peer's drain rates with no consumer attached, as ratios to the
	// raw confirmed-publish rate of the run that measured them (17,872
	// messages/s): the lightest mode must reach them against this run's.
	TargetPeerSingle  = 0.83 // 200,000 single-row transactions
	TargetPeerBatched = 0.97 // 2,000 transactions of 100 rows
	TargetPeerBig     = 1.11 // one transaction of 100,000 rows
	TargetOwnCeiling  = 0.95 // every mode, of its own message shape's ceiling
	TargetPollRatio   = 1.1  // every drain, of the best polling relay's
	TargetProbeAt500  = 1.1  // relay p99 ≤ × the bare probe's p99 at 500 rows/s
	TargetProbeRatio  = 1.2  // and at 2,000 rows/s
	TargetCPUMicros   = 10   // relay CPU per message on the 1,000,000-row drain
	TargetRSSMiB      = 64   // peak RSS on that drain
)

// The peer's figures (ihippik/wal-listener v2.11.0: transient messages,
// no confirms, acknowledged on socket write), measured beside cdc-relay on
// a machine of this kind; its module is not served here, so they are
// carried as ratios to that run's raw rate.
var peerRows = []struct {
	Backlog           string
	Ratio             float64 // drain rate / raw confirmed rate
	RelayMicros       float64 // its CPU per message
	BrokerCPUPerMsgUs float64 // the broker's, µs per message
}{
	{"single-row transactions", TargetPeerSingle, 58.9, 7.9e6 / 200_000},
	{"100-row transactions", TargetPeerBatched, 42.0, 7.9e6 / 200_000},
	{"one big transaction", TargetPeerBig, 34.2, 3.2e6 / 100_000},
}

// txnPerHeartbeat is what one relay heartbeat adds to xact_commit: the
// heartbeat statement and two transactions of the walsender decoding it.
const txnPerHeartbeat = 3

// Command is how `make bench` runs the harness.
const Command = "go test -run '^$' -bench . -benchtime 1x -timeout 60m ./tests/bench/"

// Machine describes where the figures were taken.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemoryGiB float64
	LoadStart string // /proc/loadavg when the run began
	LoadEnd   string
	Postgres  string
	RabbitMQ  string
	Go        string
	Date      time.Time
}

// ReadMachine reads the machine's description.
func ReadMachine(ctx context.Context, pgURL, amqpURL string) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC(), LoadStart: loadavg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb float64
			if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %f kB", &kb); err == nil {
				m.MemoryGiB = kb / (1 << 20)
				break
			}
		}
		f.Close()
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return m, fmt.Errorf("read Postgres version: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT 'PostgreSQL ' || current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', fsync=' || current_setting('fsync')`).Scan(&m.Postgres); err != nil {
		return m, fmt.Errorf("read Postgres version: %w", err)
	}
	v, err := rabbitVersion(ctx, amqpURL)
	if err != nil {
		return m, fmt.Errorf("read RabbitMQ version: %w", err)
	}
	m.RabbitMQ = "RabbitMQ " + v
	return m, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// EndRun notes the load at the end of the run.
func (r *Results) EndRun() { r.Machine.LoadEnd = loadavg() }

// verdict is "met" or "missed".
func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func pct(p Percentiles) string {
	if p.N == 0 {
		return "no data"
	}
	return fmt.Sprintf("p50 %s / p99 %s / max %s (n=%d)", ms(p.P50), ms(p.P99), ms(p.Max), p.N)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// row is a line of the verdicts table.
type row struct{ what, figure, beside, target, verdict string }

// Verdicts are the targets, met or not.
type Verdicts struct {
	Peer       [3]bool // single-row, 100-row, one big transaction
	OwnCeiling bool
	Polling    bool
	Latency500 bool
	Latency    bool // at the last rate
	CPU, RSS   bool
	Idle       bool
}

// All reports whether every target was met.
func (v Verdicts) All() bool {
	return v.Peer[0] && v.Peer[1] && v.Peer[2] && v.OwnCeiling && v.Polling && v.Latency500 && v.Latency && v.CPU && v.RSS && v.Idle
}

// rawRate is the ratios' reference: the raw shape (a body, persistent, no
// properties or headers) with the reference strategy, no consumer.
func (r Results) rawRate(window int) Ceiling {
	return r.ceilingOf(ShapeRaw.Name, false, ReferenceStrategy(window, ShapeRaw).Name)
}

// lightest is the best of the lightest modes' drains of backlog.
func (r Results) lightest(backlog string) Drained {
	var best Drained
	for _, m := range Modes() {
		if m.Headers != "none" {
			continue
		}
		if d := r.drained(backlog, m.Name); d.Rate > best.Rate {
			best = d
		}
	}
	return best
}

// rows builds the verdicts table.
func (h *Harness) rows() ([]row, Verdicts) {
	r, c := h.Res, h.Cfg
	var v Verdicts
	raw := r.rawRate(c.Window)
	var rs []row
	for i, b := range c.Backlogs() {
		d := r.lightest(b.Name)
		ok := raw.Rate > 0 && d.Rate >= peerRows[i].Ratio*raw.Rate
		v.Peer[i] = ok
		rs = append(rs, row{
			fmt.Sprintf("faster than the peer: %s, no consumer, lightest mode (%s)", b.Name, d.Mode),
			fmt.Sprintf("%.0f msgs/s = %.2f × raw", d.Rate, ratio(d.Rate, raw.Rate)),
			fmt.Sprintf("raw %.0f msgs/s; peer %.2f × raw", raw.Rate, peerRows[i].Ratio),
			fmt.Sprintf("≥ %.2f × raw", peerRows[i].Ratio), verdict(ok)})
	}
	v.OwnCeiling = true
	worst, worstName := math.Inf(1), ""
	for _, b := range c.Backlogs() {
		for _, m := range Modes() {
			d := r.drained(b.Name, m.Name)
			ceil := r.ceilingOf(m.Shape().Name, false, "")
			x := ratio(d.Rate, ceil.Rate)
			if x < worst {
				worst, worstName = x, fmt.Sprintf("%s, %s", b.Name, m.Name)
			}
			v.OwnCeiling = v.OwnCeiling && ceil.Rate > 0 && x >= TargetOwnCeiling
		}
	}
	if math.IsInf(worst, 1) {
		worst = 0
	}
	rs = append(rs, row{"every mode at its own shape's ceiling (no consumer): the lowest",
		fmt.Sprintf("%.2f × (%s)", worst, worstName), "see the drains table", fmt.Sprintf("≥ %.2f × in every mode", TargetOwnCeiling), verdict(v.OwnCeiling)})

	bestPoll := 0.0
	for _, p := range r.Polls {
		bestPoll = max(bestPoll, p.Drain)
	}
	v.Polling = bestPoll > 0
	for _, d := range []struct {
		name string
		d    Drain
	}{{fmt.Sprintf("%d rows in transactions of %d", r.DrainBatched.Rows, c.BulkTxn), r.DrainBatched},
		{fmt.Sprintf("%d single-row transactions", r.DrainSingle.Rows), r.DrainSingle},
		{fmt.Sprintf("%d rows in transactions of %d", r.DrainBig.Rows, c.BulkTxn), r.DrainBig}} {
		ok := bestPoll > 0 && d.d.Rate() >= TargetPollRatio*bestPoll
		v.Polling = v.Polling && ok
		rs = append(rs, row{"beats polling: drain with a consumer, " + d.name,
			fmt.Sprintf("%.0f rows/s = %.2f × the best polling relay", d.d.Rate(), ratio(d.d.Rate(), bestPoll)),
			fmt.Sprintf("polling relay %.0f rows/s", bestPoll), fmt.Sprintf("≥ %.1f ×", TargetPollRatio), verdict(ok)})
	}
	for i, l := range r.Latency {
		target := TargetProbeRatio
		if i == 0 && len(r.Latency) > 1 {
			target = TargetProbeAt500
		}
		ok := l.Relay.N > 0 && l.Probe.N > 0 && float64(l.Relay.P99) <= target*float64(l.Probe.P99)
		if i == 0 && len(r.Latency) > 1 {
			v.Latency500 = ok
		} else {
			v.Latency = ok
		}
		rs = append(rs, row{fmt.Sprintf("tail latency: p99 commit → consumer at %d rows/s (achieved %.0f) for %s", l.Rate, l.Achieved, c.RateDuration),
			fmt.Sprintf("relay %s = %.2f × the probe's", ms(l.Relay.P99), ratio(float64(l.Relay.P99), float64(l.Probe.P99))),
			"bare probe " + ms(l.Probe.P99), fmt.Sprintf("≤ %.1f × the probe's", target), verdict(ok)})
	}
	if len(r.Latency) == 1 {
		v.Latency500 = v.Latency
	}
	us := perMsg(r.DrainBig.CPU, r.DrainBig.Rows)
	v.CPU = us > 0 && us <= TargetCPUMicros
	rs = append(rs, row{fmt.Sprintf("CPU: relay CPU per message draining %d rows", r.DrainBig.Rows),
		fmt.Sprintf("%.1f µs", us), fmt.Sprintf("%.0f rows/s", r.DrainBig.Rate()), fmt.Sprintf("≤ %d µs", TargetCPUMicros), verdict(v.CPU)})
	rssMiB := float64(r.DrainBig.HWMKB) / 1024
	v.RSS = rssMiB > 0 && rssMiB <= TargetRSSMiB
	rs = append(rs, row{fmt.Sprintf("memory: peak RSS (VmHWM) draining %d rows", r.DrainBig.Rows),
		fmt.Sprintf("%.1f MiB", rssMiB), "", fmt.Sprintf("≤ %d MiB", TargetRSSMiB), verdict(v.RSS)})

	beats := r.IdleSeconds / c.Heartbeat.Seconds()
	extra := r.IdleRelayTxn - r.IdleControlTxn
	// Each heartbeat is one statement of the relay, and the walsender's
	// decoding of it commits two more catalog transactions of its own
	// (measured: +3 per heartbeat on an idle database).
	v.Idle = float64(extra) <= (math.Ceil(beats)+1)*txnPerHeartbeat
	rs = append(rs, row{
		fmt.Sprintf("idle database, %.0f s, heartbeat every %s", r.IdleSeconds, c.Heartbeat),
		fmt.Sprintf("%.2f transactions/s (%d)", float64(r.IdleRelayTxn)/max(r.IdleSeconds, 1), r.IdleRelayTxn),
		fmt.Sprintf("control database with nothing attached: %d", r.IdleControlTxn),
		fmt.Sprintf("heartbeat only: ≤ %.0f heartbeats (+1 at the window's edge) × %d transactions", math.Ceil(beats), txnPerHeartbeat), verdict(v.Idle)})
	return rs, v
}

// Table is the verdicts as a Markdown table.
func (h *Harness) Table() string {
	rs, _ := h.rows()
	var b strings.Builder
	b.WriteString("| target | figure | beside | wanted | verdict |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.what, r.figure, r.beside, r.target, r.verdict)
	}
	return b.String()
}

// ceilingTables are the broker's limits: per shape and scenario the best
// strategy, every strategy's median, and the header groups alone.
func (h *Harness) ceilingTables() string {
	r, c := h.Res, h.Cfg
	raw := r.rawRate(c.Window)
	var b strings.Builder
	b.WriteString("| shape | scenario | best strategy | msgs/s (median) | × raw | broker CPU µs/msg | rounds |\n|---|---|---|---|---|---|---|\n")
	for _, consumer := range []bool{false, true} {
		for _, s := range ceilingShapes {
			cl := r.ceilingOf(s.Name, consumer, "")
			fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.2f | %.1f | %s |\n", s.Name, scenario(consumer), cl.Strategy, cl.Rate,
				ratio(cl.Rate, r.ceilingOf(ShapeRaw.Name, consumer, "").Rate), cl.BrokerMicros, rates(cl.Rates))
		}
	}
	b.WriteString("\nEvery strategy, medians in msgs/s:\n\n| shape | scenario |")
	strategies := Strategies(c.Window)
	for _, s := range strategies {
		fmt.Fprintf(&b, " %s |", s.Name)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(strategies)) + "\n")
	for _, consumer := range []bool{false, true} {
		for _, sh := range ceilingShapes {
			fmt.Fprintf(&b, "| %s | %s |", sh.Name, scenario(consumer))
			for _, s := range strategies {
				fmt.Fprintf(&b, " %.0f |", r.ceilingOf(sh.Name, consumer, s.Name).Rate)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nWhat each header group costs the broker (no consumer, " + ReferenceStrategy(c.Window, ShapeRaw).Name + "; the peer's style has no confirms):\n\n")
	b.WriteString("| shape | msgs/s (median) | × raw | broker CPU µs/msg | × raw's broker CPU |\n|---|---|---|---|---|\n")
	for _, s := range append(slices.Clone(ceilingShapes), groupShapes...) {
		cl := r.ceilingOf(s.Name, false, ReferenceStrategy(c.Window, s).Name)
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.1f | %.2f |\n", s.Name, cl.Rate, ratio(cl.Rate, raw.Rate), cl.BrokerMicros, ratio(cl.BrokerMicros, raw.BrokerMicros))
	}
	return b.String()
}

// drainTables are the drains with no consumer, beside the ceilings and the
// peer's ratios.
func (h *Harness) drainTables() string {
	r, c := h.Res, h.Cfg
	raw := r.rawRate(c.Window)
	var b strings.Builder
	b.WriteString("| backlog | mode | msgs/s (median) | × raw | × own shape's ceiling | relay CPU µs/msg | broker CPU µs/msg | first message after | rounds |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, bl := range c.Backlogs() {
		for _, m := range Modes() {
			d := r.drained(bl.Name, m.Name)
			ceil := r.ceilingOf(m.Shape().Name, false, "")
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f | %.2f s | %s |\n", bl.Name, m.Name, d.Rate,
				ratio(d.Rate, raw.Rate), ratio(d.Rate, ceil.Rate), d.RelayMicros, d.BrokerMicros, d.FirstSec, rates(d.Rates))
		}
	}
	fmt.Fprintf(&b, "\nThe peer beside it (its own run, as ratios to that run's raw rate; in msgs/s at this run's raw rate of %.0f):\n\n", raw.Rate)
	b.WriteString("| backlog | peer × raw | peer at this run's raw | its CPU µs/msg | broker CPU µs/msg for it | cdc-relay, lightest mode |\n|---|---|---|---|---|---|\n")
	for i, bl := range c.Backlogs() {
		p := peerRows[i]
		d := r.lightest(bl.Name)
		fmt.Fprintf(&b, "| %s | %.2f | %.0f | %.1f | %.1f | %.2f × raw, %.1f µs/msg |\n", bl.Name, p.Ratio, p.Ratio*raw.Rate, p.RelayMicros, p.BrokerCPUPerMsgUs,
			ratio(d.Rate, raw.Rate), d.RelayMicros)
	}
	return b.String()
}

// consumerTable is the steps with a consumer attached.
func (h *Harness) consumerTable() string {
	r, c := h.Res, h.Cfg
	var b strings.Builder
	b.WriteString("| measurement | figure | beside |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| pgoutput decode, bare client, %d rows in transactions of %d | %.0f rows/s | |\n", c.Backlog, c.BulkTxn, r.DecodeBatched)
	fmt.Fprintf(&b, "| pgoutput decode, bare client, %d single-row transactions | %.0f rows/s | |\n", c.Backlog, r.DecodeSingle)
	all := r.ceilingOf(ShapeAll.Name, true, "")
	for _, d := range []struct {
		name string
		d    Drain
	}{{fmt.Sprintf("%d rows in transactions of %d", r.DrainBatched.Rows, c.BulkTxn), r.DrainBatched},
		{fmt.Sprintf("%d single-row transactions", r.DrainSingle.Rows), r.DrainSingle},
		{fmt.Sprintf("%d rows in transactions of %d (peak RSS %.1f MiB)", r.DrainBig.Rows, c.BulkTxn, float64(r.DrainBig.HWMKB)/1024), r.DrainBig}} {
		fmt.Fprintf(&b, "| cdc-relay (default mode) draining %s | %.0f rows/s; %.1f µs CPU/msg | %.2f × its shape's ceiling with a consumer (%.0f) |\n",
			d.name, d.d.Rate(), perMsg(d.d.CPU, d.d.Rows), ratio(d.d.Rate(), all.Rate), all.Rate)
	}
	for _, l := range r.Latency {
		fmt.Fprintf(&b, "| latency at %d rows/s (achieved %.0f) for %s | cdc-relay %s | probe %s |\n", l.Rate, l.Achieved, c.RateDuration, pct(l.Relay), pct(l.Probe))
	}
	for _, p := range r.Polls {
		fmt.Fprintf(&b, "| polling relay, batches of %d every %s: drain %d rows | %.0f rows/s | latency at %d rows/s: %s |\n", c.PollBatch, p.Interval, c.PollBacklog, p.Drain, c.PollRate, pct(p.Latency))
		fmt.Fprintf(&b, "| polling relay every %s: idle database, %.0f s | %.2f transactions/s (%d); %.2f statements/s | |\n", p.Interval, r.IdleSeconds, p.IdleTxnPerSec, p.IdleTxn, p.IdleStmtPerS)
	}
	return b.String()
}

func scenario(consumer bool) string {
	if consumer {
		return "consumer"
	}
	return "no consumer"
}

// rates lists a figure's rounds.
func rates(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}

//go:embed analysis.md
var analysis string

// Markdown is docs/benchmarks.md.
func (h *Harness) Markdown() string {
	r, c := h.Res, h.Cfg
	_, v := h.rows()
	var b strings.Builder
	m := r.Machine
	met := "Not every target was met: see the verdicts and the analysis below."
	if v.All() {
		met = "Every target was met."
	}
	fmt.Fprintf(&b, `# Benchmarks

Generated by `+"`make bench`"+` (tests/bench) on %s; the "Where the time goes" section is
tests/bench/analysis.md. Every figure below comes from one run, side by side on the same machine:
the machine was shared with other work, so absolute numbers are noisy and the ratios are what count.
The ceilings and the drains with no consumer ran in %d interleaved rounds; the tables give medians.

## Machine

- %d CPUs, %s; %.1f GiB memory; load average %s at the start, %s at the end
- %s; %s; %s
- the relay is the built binary (`+"`cdc-relay run`"+`), configured by environment: CDC_RELAY_MAX_IN_FLIGHT=%d,
  CDC_RELAY_HEARTBEAT_INTERVAL=%s; CDC_RELAY_HEADERS, CDC_RELAY_CHANNELS and CDC_RELAY_MAX_IN_FLIGHT per mode

## Commands

`+"```"+`
make bench        # = %s
`+"```"+`

Each step has its own database, slots, exchange and durable queue; all are removed at its end.

## Verdicts

%s
%s

## The broker's ceilings

The broker's limit for the relay's exact messages (the same properties, header entries and body size,
persistent, mandatory, to a durable topic exchange with one durable queue), per header set, as the best
of several publishing strategies; "raw" is a body alone, persistent, nothing else: the ratios' reference
is raw with %s, no consumer. Broker CPU is the beam process's utime+stime over the burst.

%s
## Drains with no consumer attached

The backlog is written first; the relay starts on its own slot and the queue fills (nothing consumes
it: a backlog that outgrew its consumers). Time runs from the relay's process start to the queue holding
every row (a passive declare every 5 ms).

%s
## With a consumer attached

%s
## How each figure is measured

1. **Ceilings**: %d messages per burst, built before the clock starts; one connection; the strategies are
   one channel with pipelined confirms at two windows, publish-a-batch-then-wait, and 2–4 channels with a
   window each. The end is the later of the last confirm and the queue holding every message (no consumer)
   or the consumer (auto-ack) counting the last one. The broker is left to settle (below 10 %% of a core)
   before each burst, and each burst's queue is purged after it.
2. **Drains**: the backlog is written before the relay starts (INSERT … SELECT generate_series in
   transactions of the stated size, or a DO loop that commits after every row; synchronous_commit off for
   the writer only); each mode drains the same rows on its own slot. With a consumer, time runs to the
   **last message consumed**; CPU is utime+stime of /proc/<pid>/stat read at that moment.
3. **Latency**: %d connections commit single-row transactions on a schedule (row i due at start + i/rate,
   synchronous_commit on). Latency is the consumer's receipt time minus the time the writer's COMMIT
   returned (one clock, one process). The bare probe (decode → publish with confirms, window %d → consume)
   reads the same commits on its own slot at the same time as the relay, with its own exchange and queue.
4. **Peak RSS**: VmHWM of /proc/<pid>/status when the last of the backlog's messages was consumed.
5. **Polling relay** (the baseline, on its own database with a sent_at column and a partial index on
   unsent rows): per poll, BEGIN; SELECT … WHERE sent_at IS NULL ORDER BY created_at LIMIT %d FOR UPDATE
   SKIP LOCKED; publish with confirms; UPDATE … SET sent_at; COMMIT. A full batch polls again at once, a
   short one waits the interval. **Idle cost**: pg_stat_database.xact_commit deltas over the window on
   databases used by nothing else (read from the maintenance database), beside a control database with
   nothing attached; the polling relay's statements are its own count.
`, m.Date.Format("2006-01-02 15:04 UTC"), c.Rounds,
		m.CPUs, m.CPUModel, m.MemoryGiB, m.LoadStart, m.LoadEnd,
		m.Postgres, m.RabbitMQ, m.Go, c.Window, c.Heartbeat,
		Command,
		h.Table(), met,
		ReferenceStrategy(c.Window, ShapeRaw).Name,
		h.ceilingTables(), h.drainTables(), h.consumerTable(),
		c.CeilingMessages, pacedConns, c.Window, c.PollBatch)
	if len(r.Failed) > 0 {
		fmt.Fprintf(&b, "\n**This run had failed steps, whose figures are missing (zero): %s.**\n", strings.Join(r.Failed, ", "))
	}
	b.WriteString("\n## Where the time goes\n\n")
	b.WriteString(strings.TrimSpace(analysis))
	b.WriteString("\n")
	if r.Profile != "" {
		b.WriteString("\n### CPU profile of this run (cdc-relay draining the batched backlog)\n\n```\n")
		b.WriteString(r.Profile)
		b.WriteString("```\n")
	}
	return b.String()
}
