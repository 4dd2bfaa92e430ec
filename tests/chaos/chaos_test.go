package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/relaytest"
	"github.com/saga-cdc/saga/tests/helpers/tcpproxy"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// The run's size and seed: SAGA_CHAOS_ORDERS orders (300 by default, the
// short run of `make test`), SAGA_CHAOS_FAULTS faults (by default one of
// each kind), SAGA_CHAOS_SEED (by default the clock; printed, so a run can
// be replayed).
const (
	EnvOrders = "SAGA_CHAOS_ORDERS"
	EnvFaults = "SAGA_CHAOS_FAULTS"
	EnvSeed   = "SAGA_CHAOS_SEED"
)

func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err, "%s=%q", name, v)
	return n
}

// TestChaos places orders through the gateway while a seeded schedule of
// faults hits every part of the system, then checks that every order kept
// its promise (Check) and reports the figures.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chaos test runs the whole system")
	}
	testenv.OutsideTheMatrix(t)
	orders := int(envInt(t, EnvOrders, 300))
	seed := envInt(t, EnvSeed, time.Now().UnixNano()%1_000_000)
	t.Logf("chaos: seed %d (%s=%d replays this run), %d orders", seed, EnvSeed, seed, orders)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5a6a))

	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	mq := testenv.StartRabbitMQ(t)
	proxy := tcpproxy.Start(t, fmt.Sprintf("127.0.0.1:%d", mq.Port))
	// A specific address rather than 0.0.0.0: the demo's health checks and
	// gateway must reach its processes there.
	demo := NewDemo(t, root, "127.0.0.2", pg.URL(""), mq.URL(),
		"SAGA_DEMO_AMQP_URL_RELAY_STOCK=amqp://guest:guest@"+proxy.Addr()+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	require.NoError(t, demo.Up(ctx))
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range Processes {
				t.Logf("--- %s.log (last lines)\n%s", p, tailLines(demo.Log(p), 25))
			}
			// The whole logs outlive the test's directory, for the post-mortem.
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("chaos-%d-logs", seed))
			_ = os.RemoveAll(keep)
			if err := os.CopyFS(keep, os.DirFS(filepath.Join(demo.Dir, "log"))); err != nil {
				t.Logf("keep the logs: %v", err)
			} else {
				t.Logf("the processes' whole logs: %s", keep)
			}
		}
	})
	sys := newSystem(t, demo, pg, mq)
	sys.raiseStock(t)

	schedule := Schedule(rng, int(envInt(t, EnvFaults, 0)))
	t.Logf("chaos: faults %s", strings.Join(schedule, ", "))
	placer := newPlacer(demo.GatewayURL(), rng.Int64())
	placed := make(chan error, 1)
	pace := time.Duration(float64(len(schedule)) * 3.5 * float64(time.Second) / float64(orders))
	go func() { placed <- placer.place(ctx, orders, pace) }()
	watch := sys.watch(ctx)

	injector := &injector{demo: demo, pg: pg, mq: mq, proxy: proxy, rng: rng, t: t}
	for _, f := range schedule {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		began := time.Now()
		require.NoError(t, injector.inject(ctx, f), "fault %s", f)
		t.Logf("chaos: %s (%s)", f, time.Since(began).Round(time.Millisecond))
	}
	lastFault := time.Now()
	require.NoError(t, <-placed)
	// A process a fault left down is started again, as an operator would.
	require.NoError(t, demo.Up(ctx))

	settled, stuck := sys.settle(t, placer, 4*time.Minute)
	settle := settled.Sub(lastFault)
	for _, id := range stuck {
		t.Logf("chaos: the trail of stuck order %s:\n%s", id, sys.trail(t, id))
	}
	slowest := watch.stop(placer)
	state := sys.state(t, placer)
	violations := Check(state)
	for _, v := range violations {
		t.Errorf("invariant broken: %s", v)
	}

	fig := relaytest.Saga{Seed: seed, Orders: len(state.Orders), Scenarios: placer.scenarioCounts(), Outcomes: map[string]int{},
		Faults: map[string]int{}, Duplicates: map[string]int{}, Settle: settle, Slowest: slowest, Violations: len(violations)}
	for _, o := range state.Orders {
		fig.Outcomes[o.Status]++
	}
	for _, f := range schedule {
		fig.Faults[kindOf(f)]++
	}
	for _, svc := range Services {
		fig.Duplicates[svc] = strings.Count(demo.Log(svc), "duplicate message acked without effect")
	}
	t.Log(renderFigures(fig))
	relaytest.RecordSaga(t, fig)
}

// Fault kinds. A schedule has each at least once.
func faultKinds() []string {
	var kinds []string
	for _, p := range append(append([]string{}, Services...), Relays...) {
		kinds = append(kinds, "kill "+p, "term "+p)
	}
	for _, s := range Services {
		kinds = append(kinds, "stall "+s)
	}
	return append(kinds, "broker restart", "postgres restart", "cut relay-stock")
}

// Schedule is n faults (at least one of each kind; 0: exactly one of each),
// in a seeded random order.
func Schedule(rng *rand.Rand, n int) []string {
	kinds := faultKinds()
	out := append([]string{}, kinds...)
	// Stall one service of the three by default, not each.
	out = slicesDeleteStalls(out, rng)
	for len(out) < n {
		out = append(out, kinds[rng.IntN(len(kinds))])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func slicesDeleteStalls(kinds []string, rng *rand.Rand) []string {
	keep := "stall " + Services[rng.IntN(len(Services))]
	var out []string
	for _, k := range kinds {
		if strings.HasPrefix(k, "stall ") && k != keep {
			continue
		}
		out = append(out, k)
	}
	return out
}

func kindOf(fault string) string {
	f := strings.Fields(fault)
	switch f[0] {
	case "kill", "term":
		if strings.HasPrefix(f[1], "relay-") {
			return "SIG" + strings.ToUpper(f[0]) + " relay"
		}
		return "SIG" + strings.ToUpper(f[0]) + " service"
	case "stall":
		return "service stalled (SIGSTOP)"
	case "cut":
		return "broker connection cut (one relay)"
	}
	return fault
}

// injector carries out faults.
type injector struct {
	demo  *Demo
	pg    *testenv.Postgres
	mq    *testenv.RabbitMQ
	proxy *tcpproxy.Proxy
	rng   *rand.Rand
	t     *testing.T
}

func (in *injector) inject(ctx context.Context, fault string) error {
	f := strings.Fields(fault)
	switch f[0] {
	case "kill", "term":
		sig := syscall.SIGKILL
		if f[0] == "term" {
			sig = syscall.SIGTERM
		}
		pid := in.demo.Pid(f[1])
		if pid == 0 {
			return in.demo.Up(ctx) // it was down: bring it back first
		}
		if err := syscall.Kill(pid, sig); err != nil {
			return err
		}
		if err := WaitGone(pid, 40*time.Second); err != nil {
			return err
		}
		time.Sleep(time.Duration(200+in.rng.IntN(1800)) * time.Millisecond)
		return in.demo.Up(ctx)
	case "stall":
		if err := in.demo.Signal(f[1], syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(time.Duration(3000+in.rng.IntN(3000)) * time.Millisecond)
		return in.demo.Signal(f[1], syscall.SIGCONT)
	case "broker":
		in.mq.StopApp(in.t)
		time.Sleep(time.Second)
		in.mq.StartApp(in.t)
		return nil
	case "postgres":
		in.pg.Restart(in.t, "fast")
		return nil
	case "cut":
		in.proxy.DropAll()
		return nil
	}
	return fmt.Errorf("unknown fault %q", fault)
}

// placer places orders through the gateway, each of a scenario chosen by a
// seeded draw, with a customer id of its own (so a retried POST that did
// commit is still known).
type placer struct {
	gateway string
	rng     *rand.Rand
	client  *http.Client

	mu        sync.Mutex
	scenarios map[string]Scenario
	placedAt  map[string]time.Time
}

// Products: stock raised first on 1 to 5; 6 is limited so that it runs out.
var (
	products = []string{"1", "2", "3", "4", "5", "6"}
	limited  = map[string]bool{"6": true}
)

func newPlacer(gateway string, seed int64) *placer {
	return &placer{gateway: gateway, rng: rand.New(rand.NewPCG(uint64(seed), 7)), client: &http.Client{Timeout: 5 * time.Second},
		scenarios: map[string]Scenario{}, placedAt: map[string]time.Time{}}
}

func (p *placer) place(ctx context.Context, n int, pace time.Duration) error {
	pace = min(max(pace, 20*time.Millisecond), 500*time.Millisecond)
	tick := time.NewTicker(pace)
	defer tick.Stop()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		sc, product, qty, amount := p.draw()
		customer := "c" + strconv.Itoa(i+1)
		p.mu.Lock()
		p.scenarios[customer], p.placedAt[customer] = sc, time.Now()
		p.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.post(ctx, customer, product, qty, amount); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// draw is a scenario: about 60 % confirm, 20 % denied payment, 20 % out of stock.
func (p *placer) draw() (Scenario, string, int, int) {
	product := products[p.rng.IntN(len(products))]
	switch r := p.rng.IntN(10); {
	case r < 6:
		return ScenarioConfirm, product, 1 + p.rng.IntN(3), 1 + p.rng.IntN(999)
	case r < 8:
		return ScenarioDenied, product, 1 + p.rng.IntN(3), 1000 + p.rng.IntN(4000)
	default:
		return ScenarioOutOfStock, product, 10_000_000, 1 + p.rng.IntN(999)
	}
}

// post places one order, retrying while the order service or the gateway
// is down (a fault), for up to two minutes. Every try carries the same
// Idempotency-Key, as a careful client's would: a retry of a POST whose
// answer a fault cut after the order committed gets that order back.
func (p *placer) post(ctx context.Context, customer, product string, qty, amount int) error {
	body, _ := json.Marshal(map[string]any{"customer_id": customer, "product_id": product, "amount": amount, "quantity": qty})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.gateway+"/order/api/v1/orders/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "chaos-"+customer)
		resp, err := p.client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusCreated, resp.StatusCode == http.StatusOK:
				return nil // 200: a retry, answered with the order the first try created
			case resp.StatusCode < 500:
				return fmt.Errorf("POST order of %s: %s %s", customer, resp.Status, b)
			}
			err = fmt.Errorf("%s %s", resp.Status, b)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("POST order of %s: still failing after 2 minutes: %v", customer, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *placer) snapshot() (map[string]Scenario, map[string]time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sc, at := map[string]Scenario{}, map[string]time.Time{}
	for k, v := range p.scenarios {
		sc[k] = v
	}
	for k, v := range p.placedAt {
		at[k] = v
	}
	return sc, at
}

func (p *placer) scenarioCounts() map[string]int {
	sc, _ := p.snapshot()
	out := map[string]int{}
	for _, s := range sc {
		out[string(s)]++
	}
	return out
}

// system reads the demo's databases and broker.
type system struct {
	demo *Demo
	pg   *testenv.Postgres
	mq   *testenv.RabbitMQ
	db   map[string]string // service → database URL
}

func newSystem(t *testing.T, demo *Demo, pg *testenv.Postgres, mq *testenv.RabbitMQ) *system {
	s := &system{demo: demo, pg: pg, mq: mq, db: map[string]string{}}
	for _, svc := range Services {
		s.db[svc] = pg.URL(demo.Name + "_" + svc)
	}
	return s
}

// query runs sql on a service's database (retrying through a Postgres
// restart) and scans each row with scan.
func (s *system) query(ctx context.Context, svc, sql string, scan func(pgx.Rows) error, args ...any) error {
	var last error
	for try := 0; try < 100 && ctx.Err() == nil; try++ {
		last = func() error {
			conn, err := pgx.Connect(ctx, s.db[svc])
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			rows, err := conn.Query(ctx, sql, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				if err := scan(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		}()
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// raiseStock is the operator's part: plenty of products 1 to 5, a little of 6.
func (s *system) raiseStock(t *testing.T) {
	t.Helper()
	err := s.query(context.Background(), "stock", `WITH up AS (
			INSERT INTO stock (product_id, quantity) VALUES ('1', 100000), ('2', 100000), ('3', 100000), ('4', 100000), ('5', 100000), ('6', 40)
			ON CONFLICT (product_id) DO UPDATE SET quantity = excluded.quantity RETURNING 1)
		SELECT count(*) FROM up`, func(r pgx.Rows) error { var n int; return r.Scan(&n) })
	require.NoError(t, err)
}

// orderWatch notes when each order is first seen in its end state.
type orderWatch struct {
	mu   sync.Mutex
	done map[string]time.Time // customer → end state seen
	stp  context.CancelFunc
	wg   sync.WaitGroup
}

func (s *system) watch(ctx context.Context) *orderWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &orderWatch{done: map[string]time.Time{}, stp: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			_ = s.query(ctx, "order", `SELECT customer_id, status FROM orders WHERE status IN ('payment_confirmed', 'payment_denied', 'not_reserved')`,
				func(r pgx.Rows) error {
					var c, st string
					if err := r.Scan(&c, &st); err != nil {
						return err
					}
					w.mu.Lock()
					if _, ok := w.done[c]; !ok {
						w.done[c] = time.Now()
					}
					w.mu.Unlock()
					return nil
				})
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch and returns the slowest order's time from placed to
// its end state.
func (w *orderWatch) stop(p *placer) time.Duration {
	w.stp()
	w.wg.Wait()
	_, at := p.snapshot()
	var slowest time.Duration
	w.mu.Lock()
	defer w.mu.Unlock()
	for c, placed := range at {
		if d, ok := w.done[c]; ok && d.Sub(placed) > slowest {
			slowest = d.Sub(placed)
		}
	}
	return slowest
}

// settle waits until every placed order is in an end state and returns when.
func (s *system) settle(t *testing.T, p *placer, within time.Duration) (time.Time, []string) {
	t.Helper()
	sc, _ := p.snapshot()
	deadline := time.Now().Add(within)
	for {
		var placed, open int
		err := s.query(context.Background(), "order", `SELECT count(DISTINCT customer_id), count(*) FILTER (WHERE status NOT IN ('payment_confirmed', 'payment_denied', 'not_reserved')) FROM orders`,
			func(r pgx.Rows) error { return r.Scan(&placed, &open) })
		if err == nil && placed == len(sc) && open == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			var stuck, ids []string
			_ = s.query(context.Background(), "order", `SELECT order_id::text, customer_id || ' ' || status FROM orders
				WHERE status NOT IN ('payment_confirmed', 'payment_denied', 'not_reserved') ORDER BY order_id LIMIT 5`,
				func(r pgx.Rows) error {
					var id, x string
					err := r.Scan(&id, &x)
					ids, stuck = append(ids, id), append(stuck, id+" "+x)
					return err
				})
			// Not fatal: the invariants that follow say which message went missing.
			t.Errorf("the system did not settle within %s: %d of %d customers have orders, %d orders not in an end state (%v); first: %v",
				within, placed, len(sc), open, err, stuck)
			return time.Now(), ids
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// trail is what every service holds of one order: its outbox rows with
// that aggregate id, and for each whether its consumer's inbox has it.
func (s *system) trail(t *testing.T, orderID string) string {
	t.Helper()
	consumer := map[string]string{"order.v1": "order", "stock.v1": "stock", "payment.v1": "payment"}
	var b strings.Builder
	for _, svc := range Services {
		type row struct{ id, typ, key, at string }
		var rows []row
		err := s.query(context.Background(), svc, `SELECT id::text, event_type, routing_key, created_at::text FROM outbox WHERE aggregate_id = $1 ORDER BY created_at`,
			func(r pgx.Rows) error {
				var x row
				err := r.Scan(&x.id, &x.typ, &x.key, &x.at)
				rows = append(rows, x)
				return err
			}, orderID)
		if err != nil {
			fmt.Fprintf(&b, "  %s outbox: %v\n", svc, err)
			continue
		}
		for _, x := range rows {
			seen := "not in its inbox"
			to := consumer[x.key]
			var n int
			if err := s.query(context.Background(), to, `SELECT count(*) FROM inbox WHERE message_id = $1`,
				func(r pgx.Rows) error { return r.Scan(&n) }, x.id); err != nil {
				seen = err.Error()
			} else if n > 0 {
				seen = "in its inbox"
			}
			fmt.Fprintf(&b, "  %s outbox %s %s -> %s (%s), %s: %s\n", svc, x.at, x.typ, x.key, to, x.id, seen)
		}
	}
	return b.String()
}

// state reads everything Check needs, once the relays caught up with the
// WAL as it is now.
func (s *system) state(t *testing.T, p *placer) State {
	t.Helper()
	ctx := context.Background()
	st := State{InitialStock: map[string]int{}, Stock: map[string]int{}, Limited: limited, Outbox: map[string][]OutboxRow{},
		Inbox: map[string]map[string]bool{}, DLQ: map[string]int{},
		Consumers: map[string]string{"order.v1": "order", "stock.v1": "stock", "payment.v1": "payment"}}
	st.Scenarios, _ = p.snapshot()
	for _, prod := range products {
		st.InitialStock[prod] = 100000
	}
	st.InitialStock["6"] = 40

	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(s.query(ctx, "order", `SELECT order_id::text, customer_id, product_id, quantity, amount, status FROM orders`, func(r pgx.Rows) error {
		var o Order
		err := r.Scan(&o.ID, &o.CustomerID, &o.ProductID, &o.Quantity, &o.Amount, &o.Status)
		st.Orders = append(st.Orders, o)
		return err
	}))
	must(s.query(ctx, "stock", `SELECT order_id, product_id, quantity, status FROM reservation`, func(r pgx.Rows) error {
		var x Reservation
		err := r.Scan(&x.OrderID, &x.ProductID, &x.Quantity, &x.Status)
		st.Reservations = append(st.Reservations, x)
		return err
	}))
	must(s.query(ctx, "stock", `SELECT product_id, quantity FROM stock`, func(r pgx.Rows) error {
		var prod string
		var q int
		err := r.Scan(&prod, &q)
		if _, ours := st.InitialStock[prod]; ours {
			st.Stock[prod] = q
		}
		return err
	}))
	must(s.query(ctx, "payment", `SELECT order_id, status FROM payment`, func(r pgx.Rows) error {
		var x Payment
		err := r.Scan(&x.OrderID, &x.Status)
		st.Payments = append(st.Payments, x)
		return err
	}))
	for _, svc := range Services {
		must(s.query(ctx, svc, `SELECT id::text, aggregate_id, routing_key FROM outbox`, func(r pgx.Rows) error {
			var x OutboxRow
			err := r.Scan(&x.ID, &x.AggregateID, &x.RoutingKey)
			st.Outbox[svc] = append(st.Outbox[svc], x)
			return err
		}))
		st.Inbox[svc] = map[string]bool{}
		must(s.query(ctx, svc, `SELECT message_id FROM inbox`, func(r pgx.Rows) error {
			var id string
			err := r.Scan(&id)
			st.Inbox[svc][id] = true
			return err
		}))
	}

	// Every slot must reach the WAL as it is now: the outbox's last insert
	// is before it.
	var wal string
	must(s.query(ctx, "order", `SELECT pg_current_wal_lsn()::text`, func(r pgx.Rows) error { return r.Scan(&wal) }))
	deadline := time.Now().Add(time.Minute)
	for {
		st.Slots = nil
		must(s.query(ctx, "order", `SELECT slot_name::text, greatest(('`+wal+`'::pg_lsn - confirmed_flush_lsn)::bigint, 0) FROM pg_replication_slots`, func(r pgx.Rows) error {
			var sl Slot
			err := r.Scan(&sl.Name, &sl.Behind)
			st.Slots = append(st.Slots, sl)
			return err
		}))
		behind := false
		for _, sl := range st.Slots {
			behind = behind || sl.Behind > 0
		}
		if !behind || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, svc := range Services {
		st.WantSlots = append(st.WantSlots, s.demo.Name+"_"+svc)
	}

	conn, err := amqp.Dial(s.mq.URL())
	must(err)
	defer conn.Close()
	for _, key := range []string{"order.v1", "stock.v1", "payment.v1"} {
		q := "DLQ." + s.demo.Name + "." + key
		ch, err := conn.Channel()
		must(err)
		info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		must(err)
		st.DLQ[q] = info.Messages
		ch.Close()
	}
	return st
}

func renderFigures(f relaytest.Saga) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos figures (seed %d)\n", f.Seed)
	fmt.Fprintf(&b, "  orders          %d: %s\n", f.Orders, counts(f.Scenarios))
	fmt.Fprintf(&b, "  end states      %s\n", counts(f.Outcomes))
	fmt.Fprintf(&b, "  faults          %s\n", counts(f.Faults))
	fmt.Fprintf(&b, "  deduplicated    %s\n", counts(f.Duplicates))
	fmt.Fprintf(&b, "  settled         %s after the last fault; slowest order %s\n", f.Settle.Round(time.Millisecond), f.Slowest.Round(time.Millisecond))
	fmt.Fprintf(&b, "  violations      %d", f.Violations)
	return b.String()
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
