package bench

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Targets of issue 6.
const (
	TargetThroughputRatio = 0.9 // of the publish limit
	TargetP99At500        = 5 * time.Millisecond
	TargetProbeRatio      = 1.2 // of the bare probe's p99 at 2,000 rows/s
	TargetRSSMiB          = 64  // at a 1,000,000-row backlog
)

// txnPerHeartbeat is what one relay heartbeat adds to xact_commit: the
// heartbeat statement and two transactions of the walsender decoding it.
const txnPerHeartbeat = 3

// Command is how `make bench` runs the harness.
const Command = "go test -run '^$' -bench . -benchtime 1x -timeout 30m ./tests/bench/"

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

// row is a line of the table.
type row struct{ what, figure, beside, target, verdict string }

// Verdicts are the targets, met or not.
type Verdicts struct {
	Throughput, Latency500, Latency2000, RSS, Idle bool
}

// rows builds the table and the verdicts.
func (h *Harness) rows() ([]row, Verdicts) {
	r, c := h.Res, h.Cfg
	var v Verdicts
	limit := r.PublishConsumeRate
	rs := []row{
		{"1. RabbitMQ publish limit: relay-like messages (~300 B body, persistent, mandatory, durable queue), confirms pipelined, window " + fmt.Sprint(c.Window),
			fmt.Sprintf("%.0f msgs/s to the last consumed (%.0f msgs/s to the last confirm)", limit, r.PublishConfirmRate), "", "", ""},
		{fmt.Sprintf("1. pgoutput decode, bare client, %d rows in transactions of %d", c.Backlog, c.BulkTxn),
			fmt.Sprintf("%.0f rows/s", r.DecodeBatched), "", "", ""},
		{fmt.Sprintf("1. pgoutput decode, bare client, %d single-row transactions", c.Backlog),
			fmt.Sprintf("%.0f rows/s", r.DecodeSingle), "", "", ""},
	}
	v.Throughput = true
	for _, d := range []struct {
		name string
		d    Drain
	}{{fmt.Sprintf("transactions of %d", c.BulkTxn), r.DrainBatched}, {"single-row transactions", r.DrainSingle}} {
		ok := d.d.Rate() >= TargetThroughputRatio*limit
		v.Throughput = v.Throughput && ok
		rs = append(rs, row{
			fmt.Sprintf("2. cdc-relay draining %d rows, %s", d.d.Rows, d.name),
			fmt.Sprintf("%.0f rows/s; %.2f CPU s per 100k rows", d.d.Rate(), d.d.CPUPer100k()),
			fmt.Sprintf("%.2f × publish limit", ratio(d.d.Rate(), limit)),
			fmt.Sprintf("≥ %.2f × publish limit", TargetThroughputRatio), verdict(ok)})
	}
	for i, l := range r.Latency {
		t, ok := "", false
		if i == 0 {
			t = "relay p99 ≤ " + ms(TargetP99At500)
			ok = l.Relay.P99 <= TargetP99At500 && l.Relay.N > 0
			v.Latency500 = ok
		} else {
			limit := time.Duration(TargetProbeRatio * float64(l.Probe.P99))
			t = fmt.Sprintf("relay p99 ≤ %.1f × probe p99 = %s", TargetProbeRatio, ms(limit))
			ok = l.Relay.P99 <= limit && l.Relay.N > 0
			v.Latency2000 = ok
		}
		rs = append(rs, row{
			fmt.Sprintf("3. commit → consumer latency at %d rows/s for %s (achieved %.0f rows/s): cdc-relay", l.Rate, c.RateDuration, l.Achieved),
			pct(l.Relay), "probe: " + pct(l.Probe), t, verdict(ok)})
	}
	rssMiB := float64(r.DrainBig.HWMKB) / 1024
	v.RSS = rssMiB > 0 && rssMiB <= TargetRSSMiB
	rs = append(rs, row{
		fmt.Sprintf("4. cdc-relay peak RSS (VmHWM) draining %d rows", r.DrainBig.Rows),
		fmt.Sprintf("%.1f MiB", rssMiB),
		fmt.Sprintf("%.0f rows/s, %.2f CPU s per 100k rows", r.DrainBig.Rate(), r.DrainBig.CPUPer100k()),
		fmt.Sprintf("≤ %d MiB", TargetRSSMiB), verdict(v.RSS)})
	for _, p := range r.Polls {
		rs = append(rs, row{
			fmt.Sprintf("5. polling relay, batches of %d every %s: drain %d rows", c.PollBatch, p.Interval, c.PollBacklog),
			fmt.Sprintf("%.0f rows/s", p.Drain),
			fmt.Sprintf("cdc-relay %.2f × its rate", ratio(r.DrainBatched.Rate(), p.Drain)), "", ""})
		rs = append(rs, row{
			fmt.Sprintf("5. polling relay every %s: latency at %d rows/s for %s", p.Interval, c.PollRate, c.PollDuration),
			pct(p.Latency), "", "", ""})
		rs = append(rs, row{
			fmt.Sprintf("5. polling relay every %s: idle database, %.0f s", p.Interval, r.IdleSeconds),
			fmt.Sprintf("%.2f transactions/s (%d); %.2f statements/s", p.IdleTxnPerSec, p.IdleTxn, p.IdleStmtPerS), "", "", ""})
	}
	beats := r.IdleSeconds / c.Heartbeat.Seconds()
	extra := r.IdleRelayTxn - r.IdleControlTxn
	// Each heartbeat is one statement of the relay, and the walsender's
	// decoding of it commits two more catalog transactions of its own
	// (measured: +3 per heartbeat on an idle database).
	v.Idle = float64(extra) <= (math.Ceil(beats)+1)*txnPerHeartbeat
	rs = append(rs, row{
		fmt.Sprintf("5. cdc-relay: idle database, %.0f s, heartbeat every %s", r.IdleSeconds, c.Heartbeat),
		fmt.Sprintf("%.2f transactions/s (%d)", float64(r.IdleRelayTxn)/max(r.IdleSeconds, 1), r.IdleRelayTxn),
		fmt.Sprintf("control database with nothing attached: %d", r.IdleControlTxn),
		fmt.Sprintf("heartbeat only: ≤ %.0f heartbeats (+1 at the window's edge) × %d transactions (its statement and the walsender's decoding of it)", math.Ceil(beats), txnPerHeartbeat), verdict(v.Idle)})
	return rs, v
}

// Table is the figures as a Markdown table.
func (h *Harness) Table() string {
	rs, _ := h.rows()
	var b strings.Builder
	b.WriteString("| measurement | figure | beside | target | verdict |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.what, r.figure, r.beside, r.target, r.verdict)
	}
	return b.String()
}

//go:embed analysis.md
var analysis string

// Markdown is docs/benchmarks.md.
func (h *Harness) Markdown() string {
	r, c := h.Res, h.Cfg
	_, v := h.rows()
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, `# Benchmarks

Generated by `+"`make bench`"+` (tests/bench) on %s; the "Where the time goes" section is
tests/bench/analysis.md. Every figure below comes from one run, side by side on the same machine:
the machine was shared with other work, so absolute numbers are noisy and the ratios are what count.

## Machine

- %d CPUs, %s; %.1f GiB memory; load average %s at the start, %s at the end
- %s; %s; %s
- the relay is the built binary (`+"`cdc-relay run`"+`), configured by environment: CDC_RELAY_MAX_IN_FLIGHT=%d,
  CDC_RELAY_HEARTBEAT_INTERVAL=%s

## Commands

`+"```"+`
make bench        # = %s
`+"```"+`

Each step has its own database, slots, exchange and durable queue; all are removed at its end.

## Figures

%s
Targets: throughput %s; p99 at %d rows/s %s; p99 at %d rows/s %s; peak RSS %s; idle %s.

## How each figure is measured

1. **Publish limit**: one connection, one confirm-mode channel, at most %d unconfirmed messages, messages
   with the relay's properties, headers and ~300-byte body, mandatory and persistent, to a durable topic
   exchange with one durable queue bound; a consumer (auto-ack) counts them. The limit is messages over the
   time from the first publish to the last message consumed, the same end point as the relay's steps.
   **Decode limit**: a bare pglogrepl client on a slot of its own, created before the rows were written,
   that only parses the pgoutput messages, from START_REPLICATION to the last insert decoded.
2. **Drain**: the backlog is written before the relay starts (INSERT … SELECT generate_series in
   transactions of %d rows, or a DO loop that commits after every row; synchronous_commit off for the
   writer only). Time runs from the relay's process start to the **last message consumed** on its durable
   queue; CPU is utime+stime of /proc/<pid>/stat read at that moment.
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
`, m.Date.Format("2006-01-02 15:04 UTC"),
		m.CPUs, m.CPUModel, m.MemoryGiB, m.LoadStart, m.LoadEnd,
		m.Postgres, m.RabbitMQ, m.Go, c.Window, c.Heartbeat,
		Command,
		h.Table(),
		verdict(v.Throughput), firstRate(c), verdict(v.Latency500), lastRate(c), verdict(v.Latency2000), verdict(v.RSS), verdict(v.Idle),
		c.Window, c.BulkTxn, pacedConns, c.Window, c.PollBatch)
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

func firstRate(c Config) int {
	if len(c.Rates) == 0 {
		return 0
	}
	return c.Rates[0]
}

func lastRate(c Config) int {
	if len(c.Rates) == 0 {
		return 0
	}
	return c.Rates[len(c.Rates)-1]
}
