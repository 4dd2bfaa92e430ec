package bench

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// Mode is a relay configuration the drains compare.
type Mode struct {
	Name     string
	Key      string // for metric names
	Headers  string // CDC_RELAY_HEADERS
	Channels int    // CDC_RELAY_CHANNELS
	Window   int    // CDC_RELAY_MAX_IN_FLIGHT; 0: the run's (its default, 1000)
}

// The modes: the default (every header group, one channel: commit order,
// a window of 1000), the lightest documented message, and each with the
// larger window a backlog-heavy deployment would set.
var (
	ModeDefault    = Mode{Name: "default: headers all, 1 channel, window 1000", Key: "default", Headers: "all", Channels: 1}
	ModeDefaultBig = Mode{Name: "headers all, 1 channel, window 5000", Key: "all-w5000", Headers: "all", Channels: 1, Window: 5000}
	ModeLight      = Mode{Name: "headers none, 1 channel, window 1000", Key: "none", Headers: "none", Channels: 1}
	ModeLightBig   = Mode{Name: "headers none, 1 channel, window 5000", Key: "none-w5000", Headers: "none", Channels: 1, Window: 5000}
	ModeLightFan   = Mode{Name: "headers none, 2 channels, window 1000", Key: "none-2ch", Headers: "none", Channels: 2}
)

// Modes are the modes every backlog is drained in.
func Modes() []Mode {
	return []Mode{ModeDefault, ModeDefaultBig, ModeLight, ModeLightBig, ModeLightFan}
}

// window is the mode's CDC_RELAY_MAX_IN_FLIGHT in a run whose default is def.
func (m Mode) window(def int) int {
	if m.Window > 0 {
		return m.Window
	}
	return def
}

func (m Mode) env() []string {
	return []string{"CDC_RELAY_HEADERS=" + m.Headers, "CDC_RELAY_CHANNELS=" + strconv.Itoa(m.Channels)}
}

// Shape is the message shape the mode publishes.
func (m Mode) Shape() Shape {
	if m.Headers == "all" {
		return ShapeAll
	}
	return ShapeNone
}

// Backlog is a backlog shape: Rows rows in transactions of Txn rows.
type Backlog struct {
	Name string
	Rows int
	Txn  int
}

// Backlogs are the shapes drained with no consumer attached.
func (c Config) Backlogs() []Backlog {
	return []Backlog{
		{Name: fmt.Sprintf("%d single-row transactions", c.QueuedRows), Rows: c.QueuedRows, Txn: 1},
		{Name: fmt.Sprintf("%d × %d-row transactions", c.QueuedRows/c.QueuedTxn, c.QueuedTxn), Rows: c.QueuedRows, Txn: c.QueuedTxn},
		{Name: fmt.Sprintf("one %d-row transaction", c.QueuedBig), Rows: c.QueuedBig, Txn: c.QueuedBig},
	}
}

// write writes the backlog to db.
func (b Backlog) write(ctx context.Context, db string) error {
	if b.Txn == 1 {
		return writeSingle(ctx, db, 1, b.Rows)
	}
	return writeBulk(ctx, db, 1, b.Rows, b.Txn)
}

// Queued is the relay draining a backlog with no consumer attached: the
// messages pile up in the queue, as in a backlog that outgrew its
// consumers, which costs the broker more than a queue whose consumer takes
// each message at once (it must write them all to disk).
type Queued struct {
	Rows      int
	Elapsed   time.Duration // process start to the queue holding every row
	First     time.Duration // process start to the first message in the queue
	RelayCPU  time.Duration
	BrokerCPU time.Duration // 0 when the broker is not a process of this machine
	SenderCPU time.Duration // the walsender's
}

// Rate is rows per second.
func (q Queued) Rate() float64 { return rate(q.Rows, q.Elapsed) }

// RelayMicros is the relay's CPU per message, µs.
func (q Queued) RelayMicros() float64 { return perMsg(q.RelayCPU, q.Rows) }

// BrokerMicros is the broker's CPU per message, µs.
func (q Queued) BrokerMicros() float64 { return perMsg(q.BrokerCPU, q.Rows) }

func perMsg(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// drainQueued starts the relay in mode on a slot with n rows behind it,
// with no consumer on its queue, and measures until the queue holds n
// messages.
func (h *Harness) drainQueued(tb testing.TB, ctx context.Context, db, slot string, n int, mode Mode) Queued {
	ex := testenv.NewExchange(tb)
	q := testenv.NewQueue(tb, ex, RoutingKey)
	quiesce(ctx, h.brokerPID, h.Cfg.BrokerSettle)
	w := watchDepth(ctx, h.AMQPURL, q, n)
	broker0 := cpuOf(h.brokerPID)
	began := time.Now()
	p := startRelay(tb, h.Bin, relaySettings{dbURL: db, amqpURL: h.AMQPURL, slot: slot, exchange: ex,
		window: mode.window(h.Cfg.Window), heartbeat: h.Cfg.Heartbeat, extraEnv: mode.env()})
	full, err := w.wait(ctx)
	if err != nil {
		tb.Fatalf("relay drain (%s): %v; relay output:\n%s", mode.Name, err, p.out.String())
	}
	res := Queued{Rows: n, Elapsed: full.Sub(began), BrokerCPU: cpuOf(h.brokerPID) - broker0}
	if !w.first.IsZero() {
		res.First = w.first.Sub(began)
	}
	st, err := p.stats()
	if err != nil {
		tb.Fatal(err)
	}
	res.RelayCPU = st.CPU
	if pid, err := senderPID(ctx, db, slot); err == nil {
		res.SenderCPU = cpuOf(pid)
	}
	p.stop()
	purge(tb, ctx, h.AMQPURL, q)
	return res
}

// senderPID is the pid of the walsender streaming slot.
func senderPID(ctx context.Context, db, slot string) (int, error) {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var pid *int32
	if err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err != nil {
		return 0, err
	}
	if pid == nil {
		return 0, fmt.Errorf("slot %s has no walsender", slot)
	}
	return int(*pid), nil
}
