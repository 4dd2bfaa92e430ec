package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// CeilingRun is one burst: the broker's rate for messages of one shape,
// published one way, with a consumer on the queue or with none.
type CeilingRun struct {
	Round     int
	Shape     string
	Strategy  string
	Consumer  bool
	Messages  int
	Elapsed   time.Duration // first publish to the last message in the queue (or consumed) and confirmed
	BrokerCPU time.Duration // 0 when the broker is not a process of this machine
}

// Rate is messages per second.
func (c CeilingRun) Rate() float64 { return rate(c.Messages, c.Elapsed) }

// QueuedRun is one drain with no consumer, in one round.
type QueuedRun struct {
	Round   int
	Backlog string
	Mode    string
	Queued
}

// The shapes whose ceilings are measured with every strategy, in both
// scenarios; the header groups alone and the peer's style are measured
// with the reference strategy, with no consumer.
var (
	ceilingShapes = []Shape{ShapeRaw, ShapeNone, ShapeAll}
	groupShapes   = []Shape{ShapeRow, ShapeAggregate, ShapeCloudEvents, ShapePeer}
)

// rounds measures, Rounds times over, the ceilings and the drains with no
// consumer attached, one after the other in each round, so a drift of the
// machine's speed (the broker's store, another tenant) touches both alike;
// the report takes medians.
func (h *Harness) rounds(step Step) {
	for r := range h.Cfg.Rounds {
		step(fmt.Sprintf("round-%d-ceilings", r+1), func(tb testing.TB) { h.ceilings(tb, r) })
		for _, b := range h.Cfg.Backlogs() {
			step(fmt.Sprintf("round-%d-queued-%d-rows-per-txn", r+1, b.Txn), func(tb testing.TB) { h.queuedDrains(tb, r, b) })
		}
	}
}

// ceilings measures every shape with every strategy, with no consumer and
// with one, then the header groups alone.
func (h *Harness) ceilings(tb testing.TB, round int) {
	ctx := h.ctx(tb)
	for _, consumer := range []bool{false, true} {
		for _, shape := range ceilingShapes {
			for _, s := range Strategies(h.Cfg.Window) {
				h.ceiling(tb, ctx, round, shape, s, consumer)
			}
		}
	}
	for _, shape := range groupShapes {
		h.ceiling(tb, ctx, round, shape, ReferenceStrategy(h.Cfg.Window, shape), false)
	}
}

// ReferenceStrategy is how the raw rate, the ratios' reference, is
// published: one channel, confirms pipelined, the relay's window. The
// peer's style has no confirms.
func ReferenceStrategy(window int, shape Shape) Strategy {
	if shape.Transient {
		return Strategy{Name: "1 channel, no confirms", Channels: 1, Window: window, NoConfirms: true}
	}
	return Strategies(window)[0]
}

// ceiling runs one burst of CeilingMessages and records it.
func (h *Harness) ceiling(tb testing.TB, ctx context.Context, round int, shape Shape, s Strategy, consumer bool) {
	n := h.Cfg.CeilingMessages
	ex := testenv.NewExchange(tb)
	q := testenv.NewQueue(tb, ex, RoutingKey)
	quiesce(ctx, h.brokerPID, h.Cfg.BrokerSettle)
	var wait func(context.Context) (time.Time, error)
	if consumer {
		wait = consume(tb, q, n, false).wait
	} else {
		wait = watchDepth(ctx, h.AMQPURL, q, n).wait
	}
	broker0 := cpuOf(h.brokerPID)
	began, lastConfirm, err := burst(ctx, h.AMQPURL, ex, shape, s, n)
	if err != nil {
		tb.Fatalf("ceiling %s, %s: %v", shape.Name, s.Name, err)
	}
	end, err := wait(ctx)
	if err != nil {
		tb.Fatalf("ceiling %s, %s: %v", shape.Name, s.Name, err)
	}
	run := CeilingRun{Round: round, Shape: shape.Name, Strategy: s.Name, Consumer: consumer, Messages: n,
		Elapsed: later(end, lastConfirm).Sub(began), BrokerCPU: cpuOf(h.brokerPID) - broker0}
	purge(tb, ctx, h.AMQPURL, q)
	h.mu.Lock()
	h.Res.Ceilings = append(h.Res.Ceilings, run)
	h.mu.Unlock()
}

// queuedDrains writes backlog b once and drains it in every mode, each on
// its own slot, with no consumer attached.
func (h *Harness) queuedDrains(tb testing.TB, round int, b Backlog) {
	ctx := h.ctx(tb)
	modes := Modes()
	slots := make([]string, len(modes))
	for i := range modes {
		slots[i] = testenv.RandomName("bench_relay_")
	}
	db := outboxDB(tb, slots...)
	if err := b.write(ctx, db); err != nil {
		tb.Fatal(err)
	}
	for i, m := range modes {
		q := h.drainQueued(tb, ctx, db, slots[i], b.Rows, m)
		h.mu.Lock()
		h.Res.QueuedRuns = append(h.Res.QueuedRuns, QueuedRun{Round: round, Backlog: b.Name, Mode: m.Name, Queued: q})
		h.mu.Unlock()
		metric(tb, q.Rate(), "rows/s-"+m.Key)
	}
}

// purge empties a queue at once: a burst's messages would otherwise stay
// in the broker's store until the step ends, and weigh on the next burst.
func purge(tb testing.TB, ctx context.Context, amqpURL, queue string) {
	conn, err := dial(ctx, amqpURL, "saga-bench-purge")
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("purge %s: open channel: %v", queue, err)
	}
	if _, err := ch.QueuePurge(queue, false); err != nil {
		tb.Fatalf("purge %s: %v", queue, err)
	}
}

// median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Ceiling is a shape's ceiling in one scenario: the strategy whose median
// rate over the rounds was best.
type Ceiling struct {
	Shape, Strategy string
	Consumer        bool
	Rate            float64 // median over the rounds, messages/s
	BrokerMicros    float64 // median broker CPU per message, µs
	Rates           []float64
}

// ceilingOf is the best strategy's median for shape in a scenario; with
// strategy set, that strategy's.
func (r Results) ceilingOf(shape string, consumer bool, strategy string) Ceiling {
	by := map[string][]CeilingRun{}
	var order []string
	for _, c := range r.Ceilings {
		if c.Shape != shape || c.Consumer != consumer || (strategy != "" && c.Strategy != strategy) {
			continue
		}
		if _, ok := by[c.Strategy]; !ok {
			order = append(order, c.Strategy)
		}
		by[c.Strategy] = append(by[c.Strategy], c)
	}
	var best Ceiling
	for _, s := range order {
		var rates, broker []float64
		for _, c := range by[s] {
			rates = append(rates, c.Rate())
			broker = append(broker, perMsg(c.BrokerCPU, c.Messages))
		}
		if m := median(rates); m > best.Rate {
			best = Ceiling{Shape: shape, Strategy: s, Consumer: consumer, Rate: m, BrokerMicros: median(broker), Rates: rates}
		}
	}
	return best
}

// Drained is a backlog's drains in one mode: medians over the rounds.
type Drained struct {
	Backlog, Mode                       string
	Rate                                float64
	RelayMicros, BrokerMicros, FirstSec float64
	Rates                               []float64
}

// drained is the median of the drains of backlog in mode.
func (r Results) drained(backlog, mode string) Drained {
	d := Drained{Backlog: backlog, Mode: mode}
	var relay, broker, first []float64
	for _, q := range r.QueuedRuns {
		if q.Backlog != backlog || q.Mode != mode {
			continue
		}
		d.Rates = append(d.Rates, q.Rate())
		relay = append(relay, q.RelayMicros())
		broker = append(broker, q.BrokerMicros())
		first = append(first, q.First.Seconds())
	}
	d.Rate, d.RelayMicros, d.BrokerMicros, d.FirstSec = median(d.Rates), median(relay), median(broker), median(first)
	return d
}
