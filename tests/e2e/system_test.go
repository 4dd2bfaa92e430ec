package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/proctest"
	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// binDir holds the binaries built once by TestMain.
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "saga-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
			"./services/order/cmd/order", "./services/stock/cmd/stock", "./services/payment/cmd/payment",
			"./cdc-relay/cmd/cdc-relay")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build binaries: %w\n%s", err, out)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// System is the three services and their three relays, on databases, an
// exchange, queues and slots of their own.
type System struct {
	Exchange string
	AMQPURL  string
	Prefix   string
	Order    *Process
	Stock    *Process
	Payment  *Process
	DBs      map[string]string // service → database URL

	mu       sync.Mutex
	messages []amqp.Delivery // everything published to the exchange
}

// Process is a running binary.
type Process struct {
	Name string
	URL  string // HTTP base URL, for services
	logs *proctest.Output
}

// Logs returns what the process wrote so far.
func (p *Process) Logs() string { return p.logs.String() }

// StartSystem starts the whole saga and returns once every relay streams.
func StartSystem(t *testing.T) *System {
	t.Helper()
	return StartSystemWith(t, nil, nil)
}

// StartSystemWith is StartSystem with extra environment for the services
// (SAGA_QUEUE_TYPE, say) and for the relays.
func StartSystemWith(t *testing.T, serviceEnv, relayEnv map[string]string) *System {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	amqpURL := testenv.AMQPURL(t)
	s := &System{
		Exchange: testenv.NewExchange(t),
		AMQPURL:  amqpURL,
		Prefix:   testenv.RandomName("t_") + ".",
		DBs:      map[string]string{},
	}
	t.Cleanup(func() { deleteQueues(t, amqpURL, s.Prefix) })

	// Every message on the exchange, to count them per saga.
	all := testenv.Consume(t, testenv.NewQueue(t, s.Exchange, "#"))
	go func() {
		for d := range all {
			s.mu.Lock()
			s.messages = append(s.messages, d)
			s.mu.Unlock()
		}
	}()

	procs := map[string]**Process{"order": &s.Order, "stock": &s.Stock, "payment": &s.Payment}
	for _, name := range []string{"order", "stock", "payment"} {
		db := testenv.NewDatabase(t)
		s.DBs[name] = db
		env := map[string]string{
			"DATABASE_URL":      db,
			"AMQP_URL":          amqpURL,
			"HTTP_ADDR":         "127.0.0.1:0",
			"SAGA_EXCHANGE":     s.Exchange,
			"SAGA_QUEUE_PREFIX": s.Prefix,
		}
		for k, v := range serviceEnv {
			env[k] = v
		}
		*procs[name] = startProcess(t, name, []string{name}, env, true)
	}
	for _, name := range []string{"order", "stock", "payment"} {
		waitReady(t, *procs[name])
	}
	for _, name := range []string{"order", "stock", "payment"} {
		db := s.DBs[name]
		slot := testenv.RandomName("t_slot_")
		// Registered before the relay starts, so it runs after the relay stops.
		t.Cleanup(func() { testenv.DropSlot(t, db, slot) })
		env := map[string]string{
			"CDC_RELAY_DATABASE_URL":       db,
			"CDC_RELAY_AMQP_URL":           amqpURL,
			"CDC_RELAY_SLOT":               slot,
			"CDC_RELAY_EXCHANGE":           s.Exchange,
			"CDC_RELAY_HTTP_ADDR":          "127.0.0.1:0",
			"CDC_RELAY_HEARTBEAT_INTERVAL": "1s",
		}
		for k, v := range relayEnv {
			env[k] = v
		}
		relay := startProcess(t, "relay-"+name, []string{"cdc-relay", "run"}, env, false)
		waitSlotActive(t, relay, db, slot)
	}
	return s
}

// startProcess runs binary args[0] from binDir with env added to this
// process's environment, and stops it with SIGTERM at cleanup.
func startProcess(t *testing.T, name string, args []string, env map[string]string, http bool) *Process {
	t.Helper()
	logs := &proctest.Output{}
	listening := logs.Await("http server listening", "addr")
	cmd := exec.Command(filepath.Join(binDir, args[0]), args[1:]...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start(), name)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p := &Process{Name: name, logs: logs}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop within 20s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, tail(logs.String(), 60))
		}
	})
	if http {
		select {
		case addr := <-listening:
			p.URL = "http://" + addr
		case err := <-exited:
			t.Fatalf("%s exited at start: %v\n%s", name, err, logs.String())
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not listen within 60s\n%s", name, logs.String())
		}
	}
	return p
}

func waitReady(t *testing.T, p *Process) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.URL + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 20*time.Millisecond, "%s not ready:\n%s", p.Name, p.logs)
}

// waitSlotActive waits until the relay streams from its slot: from then on,
// every outbox insert reaches the exchange.
func waitSlotActive(t *testing.T, relay *Process, db, slot string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var active bool
		err := conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return err == nil && active
	}, 60*time.Second, 20*time.Millisecond, "%s does not stream from slot %s:\n%s", relay.Name, slot, relay.logs)
}

func deleteQueues(t *testing.T, amqpURL, prefix string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Errorf("delete queues %s*: %v", prefix, err)
		return
	}
	defer conn.Close()
	for _, key := range []string{"order.v1", "stock.v1", "payment.v1"} {
		for _, q := range []string{prefix + key, "DLQ." + prefix + key} {
			ch, err := conn.Channel()
			if err != nil {
				t.Errorf("delete queue %s: %v", q, err)
				return
			}
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
			_ = ch.Close()
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Messages returns a copy of every message seen on the exchange.
func (s *System) Messages() []amqp.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]amqp.Delivery(nil), s.messages...)
}

// MessagesOf returns the messages of one saga: those whose body names orderID.
func (s *System) MessagesOf(orderID int) []amqp.Delivery {
	return s.MessagesByOrder()[fmt.Sprint(orderID)]
}

// MessagesByOrder groups every message seen so far by the order_id of its
// body, in one pass (checking hundreds of sagas one by one would decode every
// message hundreds of times).
func (s *System) MessagesByOrder() map[string][]amqp.Delivery {
	out := map[string][]amqp.Delivery{}
	for _, d := range s.Messages() {
		var body struct {
			OrderID json.RawMessage `json:"order_id"`
		}
		if json.Unmarshal(d.Body, &body) != nil {
			continue
		}
		id := strings.Trim(string(body.OrderID), `"`)
		out[id] = append(out[id], d)
	}
	return out
}

// Do sends a request and returns the status, the body (or Location of a
// redirect).
func Do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	_, resp, b := send(t, method, url, body)
	if resp.StatusCode/100 == 3 {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

// send sends a JSON request without following redirects and returns it,
// its response and the response's body, read whole.
func send(t *testing.T, method, url, body string, header ...string) (*http.Request, *http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return req, resp, b
}

// GetJSON GETs url and decodes the JSON answer into v.
func GetJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, body := Do(t, http.MethodGet, url, "")
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, json.Unmarshal([]byte(body), v), body)
}

// Order, Reservation, Payment and Stock are the API's objects.
type Order struct {
	OrderID    int    `json:"order_id"`
	CustomerID string `json:"customer_id"`
	ProductID  string `json:"product_id"`
	Amount     string `json:"amount"`
	Quantity   int    `json:"quantity"`
	Status     string `json:"status"`
}

type Reservation struct {
	ID        int    `json:"id"`
	OrderID   string `json:"order_id"`
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
	Status    string `json:"status"`
}

type Payment struct {
	PaymentID  string `json:"payment_id"`
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     string `json:"amount"`
	Status     string `json:"status"`
	Created    string `json:"created"`
}

type Stock struct {
	ID        int    `json:"id"`
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// State is everything the three APIs show.
type State struct {
	Orders       map[int]Order
	Reservations map[string]Reservation
	Payments     map[string]Payment
	Stock        map[string]int
}

// State reads the three APIs.
func (s *System) State(t *testing.T) State {
	t.Helper()
	var orders []Order
	var reservations []Reservation
	var payments []Payment
	var stocks []Stock
	GetJSON(t, s.Order.URL+"/api/v1/orders/", &orders)
	GetJSON(t, s.Stock.URL+"/api/v1/reservations/", &reservations)
	GetJSON(t, s.Payment.URL+"/api/v1/payments/", &payments)
	GetJSON(t, s.Stock.URL+"/api/v1/stocks/", &stocks)
	st := State{Orders: map[int]Order{}, Reservations: map[string]Reservation{}, Payments: map[string]Payment{}, Stock: map[string]int{}}
	for _, o := range orders {
		st.Orders[o.OrderID] = o
	}
	for _, r := range reservations {
		st.Reservations[r.OrderID] = r
	}
	for _, p := range payments {
		st.Payments[p.OrderID] = p
	}
	for _, x := range stocks {
		st.Stock[x.ProductID] = x.Quantity
	}
	return st
}

// CreateOrder posts an order and returns it.
func (s *System) CreateOrder(t *testing.T, body string) Order {
	t.Helper()
	code, resp := Do(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", body)
	require.Equal(t, http.StatusCreated, code, resp)
	var o Order
	require.NoError(t, json.Unmarshal([]byte(resp), &o))
	return o
}

// ended reports whether the order is in an end state in all three services.
func ended(st State, id int) bool {
	o, ok := st.Orders[id]
	if !ok {
		return false
	}
	r, hasR := st.Reservations[fmt.Sprint(id)]
	p, hasP := st.Payments[fmt.Sprint(id)]
	switch o.Status {
	case "payment_confirmed", "payment_denied":
		return hasR && hasP && r.Status == o.Status && p.Status == o.Status
	case "not_reserved":
		return hasR && r.Status == "not_reserved" && !hasP
	}
	return false
}
