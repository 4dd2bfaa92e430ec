package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

var docPath = flag.String("bench.doc", filepath.Join("..", "..", "docs", "benchmarks.md"),
	"where BenchmarkRelay writes its report (empty: nowhere)")

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds cdc-relay, and its pprof variant when asked, once per
// test binary.
var binaries = sync.OnceValues(func() ([2]string, error) {
	var bins [2]string
	dir, err := os.MkdirTemp("", "cdc-relay-bench-")
	if err != nil {
		return bins, fmt.Errorf("make a directory for the binaries: %w", err)
	}
	binDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if bins[0], err = Build(ctx, dir, false); err != nil {
		return bins, err
	}
	if bins[1], err = Build(ctx, dir, true); err != nil {
		return bins, err
	}
	return bins, nil
})

func newHarness(tb testing.TB, cfg Config) *Harness {
	tb.Helper()
	h := &Harness{Cfg: cfg, PGURL: testenv.PostgresURL(tb), AMQPURL: testenv.AMQPURL(tb),
		ProfileTo: filepath.Join(os.TempDir(), "cdc-relay-bench.cpu.pprof")}
	bins, err := binaries()
	if err != nil {
		tb.Fatal(err)
	}
	h.Bin, h.BinPprof = bins[0], bins[1]
	// The broker's CPU is read from /proc when it runs on this machine;
	// elsewhere its figures are left out.
	h.brokerPID, _ = listenerPID(h.AMQPURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if h.Res.Machine, err = ReadMachine(ctx, h.PGURL, h.AMQPURL); err != nil {
		tb.Fatal(err)
	}
	return h
}

// checkSlots fails tb if a slot the harness made is still there.
func checkSlots(tb testing.TB, h *Harness) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, err := leftoverSlots(ctx, h.PGURL, madeSlots())
	if err != nil {
		tb.Fatal(err)
	}
	if len(left) > 0 {
		tb.Errorf("replication slots left behind: %v", left)
	}
}

// BenchmarkRelay is `make bench`: the measurements of docs/benchmarks.md in one run. It
// prints the table and writes docs/benchmarks.md. Run it once:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./tests/bench/
func BenchmarkRelay(b *testing.B) {
	h := newHarness(b, Full())
	began := time.Now()
	h.Run(func(name string, fn func(testing.TB)) bool {
		return b.Run(name, func(b *testing.B) { fn(b) })
	})
	h.Res.EndRun()
	checkSlots(b, h)
	fmt.Printf("\n%s\nwhole run: %s\n", h.Table(), time.Since(began).Round(time.Second))
	if *docPath != "" {
		if err := os.WriteFile(*docPath, []byte(h.Markdown()), 0o644); err != nil {
			b.Fatalf("write report: %v", err)
		}
		fmt.Println("wrote", *docPath)
	}
}

// TestHarness runs every step of the benchmark with tiny numbers: each
// pipeline must deliver every row, every figure must be there, the report
// must render, and no slot may be left behind.
func TestHarness(t *testing.T) {
	h := newHarness(t, Smoke())
	h.Cfg.Profile = true
	h.Run(func(name string, fn func(testing.TB)) bool {
		return t.Run(name, func(t *testing.T) { fn(t) })
	})
	if t.Failed() {
		return
	}
	// The profile step runs only on a throughput miss; run it here anyway
	// so it stays tested.
	if h.Res.Profile == "" {
		t.Run("profile", func(t *testing.T) { h.profile(t) })
	}
	h.Res.EndRun()
	checkSlots(t, h)

	r := h.Res
	positive := map[string]float64{
		"decode batched": r.DecodeBatched, "decode single": r.DecodeSingle,
		"drain batched": r.DrainBatched.Rate(), "drain single": r.DrainSingle.Rate(), "drain big": r.DrainBig.Rate(),
		"peak RSS": float64(r.DrainBig.HWMKB), "cpu": r.DrainBatched.CPUPer100k(), "idle window": r.IdleSeconds,
	}
	for name, v := range positive {
		if v <= 0 {
			t.Errorf("%s: %v, want > 0", name, v)
		}
	}
	for _, consumer := range []bool{false, true} {
		for _, s := range ceilingShapes {
			for _, st := range Strategies(h.Cfg.Window) {
				if c := r.ceilingOf(s.Name, consumer, st.Name); c.Rate <= 0 {
					t.Errorf("ceiling of %s, %s, %s: none", s.Name, scenario(consumer), st.Name)
				}
			}
		}
	}
	for _, s := range groupShapes {
		if c := r.ceilingOf(s.Name, false, ""); c.Rate <= 0 {
			t.Errorf("ceiling of %s: none", s.Name)
		}
	}
	for _, b := range h.Cfg.Backlogs() {
		for _, m := range Modes() {
			if d := r.drained(b.Name, m.Name); d.Rate <= 0 || d.RelayMicros <= 0 {
				t.Errorf("drain of %s in %s: %+v", b.Name, m.Name, d)
			}
		}
	}
	if len(r.Latency) != len(h.Cfg.Rates) {
		t.Fatalf("latency steps: %d, want %d", len(r.Latency), len(h.Cfg.Rates))
	}
	for _, l := range r.Latency {
		if l.Relay.N == 0 || l.Probe.N == 0 {
			t.Errorf("latency at %d rows/s: relay %d and probe %d samples", l.Rate, l.Relay.N, l.Probe.N)
		}
	}
	for _, p := range r.Polls {
		if p.Drain <= 0 || p.Latency.N == 0 || p.IdleStmtPerS <= 0 {
			t.Errorf("polling every %s: %+v", p.Interval, p)
		}
	}
	if r.IdleRelayTxn <= 0 {
		t.Errorf("idle relay ran %d transactions, want its heartbeats", r.IdleRelayTxn)
	}
	if !strings.Contains(r.Profile, "flat") {
		t.Errorf("profile without pprof's table:\n%s", r.Profile)
	}
	md := h.Markdown()
	for _, want := range []string{"## Machine", "## Verdicts", "## The broker's ceilings", "## Drains with no consumer attached",
		"peer", "peak RSS", "polling relay", "idle database"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	t.Log("\n" + h.Table())
}

// The ceilings are worth something only if they are measured on the
// relay's own messages: for each header set, the message the harness builds
// for row 1 has the properties, header entries and body the relay sends
// for that row.
func TestMessageShapesMatchTheRelay(t *testing.T) {
	h := newHarness(t, Smoke())
	for _, shape := range append(slices.Clone(ceilingShapes[1:]), ShapeRow, ShapeAggregate, ShapeCloudEvents) {
		t.Run(shape.Name, func(t *testing.T) {
			ctx := h.ctx(t)
			slot := testenv.RandomName("bench_relay_")
			db := outboxDB(t, slot)
			require.NoError(t, writeSingle(ctx, db, 1, 1))
			ex := testenv.NewExchange(t)
			deliveries := testenv.Consume(t, testenv.NewQueue(t, ex, RoutingKey))
			p := startRelay(t, h.Bin, relaySettings{dbURL: db, amqpURL: h.AMQPURL, slot: slot, exchange: ex,
				window: h.Cfg.Window, heartbeat: h.Cfg.Heartbeat, extraEnv: []string{"CDC_RELAY_HEADERS=" + shape.Headers}})
			defer p.stop()
			var got amqp.Delivery
			select {
			case got = <-deliveries:
			case <-ctx.Done():
				t.Fatalf("no message from the relay: %v\n%s", ctx.Err(), p.out.String())
			}
			want := shape.message(1, benchSource)
			assert.Equal(t, string(want.Body), string(got.Body), "body")
			assert.Equal(t, want.DeliveryMode, got.DeliveryMode, "delivery mode")
			assert.Equal(t, want.ContentType, got.ContentType, "content type")
			assert.Equal(t, want.Type, got.Type, "type")
			assert.NotEmpty(t, got.MessageId)
			assert.False(t, got.Timestamp.IsZero(), "timestamp")
			assert.Equal(t, want.ContentEncoding, got.ContentEncoding, "content encoding")
			assert.Equal(t, want.CorrelationId, got.CorrelationId, "correlation id")
			assert.Equal(t, want.AppId, got.AppId, "app id")
			keys := func(tb amqp.Table) []string {
				var ks []string
				for k := range tb {
					ks = append(ks, k)
				}
				slices.Sort(ks)
				return ks
			}
			require.Equal(t, keys(want.Headers), keys(got.Headers), "header entries")
			for k, v := range want.Headers {
				assert.IsType(t, v, got.Headers[k], "header %s", k)
				if s, ok := v.(string); ok {
					// Within a few bytes: a time's trailing zeros are cut.
					g, _ := got.Headers[k].(string)
					assert.InDelta(t, len(s), len(g), 3, "header %s: its size (%q, the relay's %q)", k, s, g)
				}
			}
		})
	}
}
