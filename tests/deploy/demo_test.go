package deploy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/tests/helpers/otlptest"
)

// demoPorts are the fixed ports of the local demo; nothing else on the
// machine may use them while this test runs.
var demoPorts = []int{8000, 8001, 8002, 8080, 9401, 9402, 9403}

// TestDemoEndToEnd runs `make demo` without Docker, drives one order to
// payment_confirmed through the gateway on :8080, and runs `make demo-down`.
// The demo gets a random name, so its databases, slots, exchange and queues
// are its own; the test drops them all at the end. It listens on a
// specific address (SAGA_DEMO_HOST=127.0.0.2): the health checks, the
// gateway's upstreams and the printed URLs follow it, and nothing listens
// on 127.0.0.1 (the dashboard test runs the default address).
func TestDemoEndToEnd(t *testing.T) {
	// Tracing on, as a user turns it on: the processes export to an OTLP
	// receiver (Jaeger's place), and the gateway serves a Jaeger UI.
	otlp := otlptest.Start(t)
	jaeger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "jaeger ui: %s", r.URL.Path)
	}))
	defer jaeger.Close()
	d := startDemo(t, "127.0.0.2", "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "SAGA_DEMO_JAEGER_URL="+jaeger.URL)
	name, start := d.name, d.started

	client := &http.Client{Timeout: 10 * time.Second}
	gw := "http://127.0.0.2:8080"
	for _, p := range demoPorts {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("SAGA_DEMO_HOST=127.0.0.2, yet 127.0.0.1:%d answers", p)
		}
	}

	// A preflight is answered by the gateway like Kong's cors plugin.
	req, _ := http.NewRequest(http.MethodOptions, gw+"/order/api/v1/orders/", nil)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Methods") != "GET,POST" {
		t.Errorf("preflight: %s %v", resp.Status, resp.Header)
	}

	// One order, through the gateway.
	req, _ = http.NewRequest(http.MethodPost, gw+"/order/api/v1/orders/",
		strings.NewReader(`{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://localhost:3000")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /order/api/v1/orders/: %s %s", resp.Status, body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:3000" {
		t.Errorf("POST: Access-Control-Allow-Origin = %q", got)
	}
	var created struct {
		OrderID json.Number `json:"order_id"`
		Status  string      `json:"status"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.OrderID == "" || created.Status != "created" {
		t.Fatalf("POST answered %s (%v)", body, err)
	}

	// The saga runs through three relays and RabbitMQ.
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		status, raw := orderStatus(t, client, gw, created.OrderID.String())
		last = raw
		if status == "payment_confirmed" {
			break
		}
		if status == "payment_denied" || status == "not_reserved" {
			t.Fatalf("order %s ended as %s: %s", created.OrderID, status, raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not payment_confirmed after 90s; orders: %s", created.OrderID, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("order %s payment_confirmed %s after make demo", created.OrderID, time.Since(start).Round(time.Second))

	for _, path := range []string{"/stock/api/v1/reservations/", "/payment/api/v1/payments/"} {
		raw := get(t, client, gw+path)
		if !strings.Contains(raw, `"payment_confirmed"`) {
			t.Errorf("GET %s: no payment_confirmed entry: %s", path, raw)
		}
	}
	checkRelays(t, client, gw, name, true)
	checkTrace(t, otlp)
	if got := get(t, client, gw+"/jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736"); got != "jaeger ui: /jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("GET /jaeger/trace/...: %q, want Jaeger's UI with the path kept", got)
	}
	// The Postman collection, as a user runs it, with its assertions.
	runCollection(t, gw)
	upStartsOnlyWhatIsMissing(t, d, client, gw)
}

// checkRelays checks each relay's status through the gateway: its slot,
// ready, and with events, that it published.
func checkRelays(t *testing.T, client *http.Client, gw, name string, events bool) {
	t.Helper()
	for _, r := range []string{"order", "stock", "payment"} {
		var st struct {
			Slot            string `json:"slot"`
			Ready           bool   `json:"ready"`
			EventsPublished int    `json:"events_published"`
		}
		raw := get(t, client, gw+"/relays/"+r+"/status")
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Errorf("/relays/%s/status: %v: %s", r, err, raw)
			continue
		}
		if st.Slot != name+"_"+r || !st.Ready || events && st.EventsPublished == 0 {
			t.Errorf("/relays/%s/status: %s", r, raw)
		}
	}
}

// demo is a local demo (deploy/local/demo.sh) started by startDemo.
type demo struct {
	// name prefixes its databases and slots, and names its exchange.
	name string
	// started is when `make demo` began.
	started time.Time
	// root, env and state run demo.sh on this demo again.
	root, state string
	env         []string
	// host is the address it listens on.
	host string
}

// pids reads the demo's pid files.
func (d *demo) pids(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{"order", "stock", "payment", "relay-order", "relay-stock", "relay-payment", "gateway"} {
		b, err := os.ReadFile(filepath.Join(d.state, "run", p+".pid"))
		if err != nil {
			t.Fatalf("pid of %s: %v", p, err)
		}
		out[p] = strings.TrimSpace(string(b))
	}
	return out
}

// startDemo runs `make demo` without Docker under a random demo name, and
// registers `make demo-down` and the removal of everything the demo made
// (databases, slots, queues, exchange) as the test's cleanup. It skips in
// -short mode and off Linux, and fails when a demo port is taken.
//
// The demo listens on fixed ports, so the tests that call it must not run in
// parallel: they live in this package, and none calls t.Parallel.
// host is SAGA_DEMO_HOST: "" for the default, 127.0.0.1; extra is more
// environment (NAME=value) for demo.sh and so for its processes.
func startDemo(t *testing.T, host string, extra ...string) *demo {
	t.Helper()
	dial := host
	if dial == "" {
		dial = "127.0.0.1"
	}
	if testing.Short() {
		t.Skip("-short: the demo test starts Postgres, RabbitMQ and seven processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("deploy/local/demo.sh runs on Linux (Debian)")
	}
	var busy []string
	for _, p := range demoPorts {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", dial, p), time.Second); err == nil {
			c.Close()
			busy = append(busy, fmt.Sprint(p))
		}
	}
	if len(busy) > 0 {
		t.Fatalf("the demo's ports are in use: %s. This test needs 8000-8002, 8080 and 9401-9403 free: "+
			"stop a running demo with `make demo-down`, or find the owner with `ss -ltnp`", strings.Join(busy, ", "))
	}

	root := repoRoot(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "sagademo_" + hex.EncodeToString(rnd[:])
	state := t.TempDir()
	env := append(os.Environ(), "SAGA_DEMO_MODE=local", "SAGA_DEMO_NAME="+name, "SAGA_DEMO_DIR="+state, "SAGA_DEMO_HOST="+host)
	env = append(env, extra...)
	if pg, mq := os.Getenv("SAGA_TEST_PG_URL"), os.Getenv("SAGA_TEST_AMQP_URL"); pg != "" && mq != "" {
		env = append(env, "SAGA_DEMO_PG_URL="+pg, "SAGA_DEMO_AMQP_URL="+mq)
	}

	// The servers the demo will use (this runs ensure-services.sh when the
	// variables are unset), for the cleanup.
	out, err := command(root, env, "bash", "deploy/local/demo.sh", "env")
	if err != nil {
		t.Fatalf("demo.sh env: %v\n%s", err, out)
	}
	settings := parseExports(string(out))
	pgURL, amqpURL := settings["SAGA_DEMO_PG_URL"], settings["SAGA_DEMO_AMQP_URL"]
	if pgURL == "" || amqpURL == "" {
		t.Fatalf("demo.sh env printed no server URLs:\n%s", out)
	}
	env = append(env, "SAGA_DEMO_PG_URL="+pgURL, "SAGA_DEMO_AMQP_URL="+amqpURL)

	makeArgs := demoMakeArgs(t, root)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, filepath.Join(state, "log"))
		}
		if out, err := command(root, env, "make", append(makeArgs, "demo-down")...); err != nil {
			t.Errorf("make demo-down: %v\n%s", err, out)
		}
		for _, p := range demoPorts {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", dial, p), time.Second); err == nil {
				c.Close()
				t.Errorf("port %d still answers after make demo-down", p)
			}
		}
		dropDemo(t, pgURL, amqpURL, name)
	})

	start := time.Now()
	if out, err := command(root, env, "make", append(makeArgs, "demo")...); err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	} else if shown := map[string]string{"": "localhost", "127.0.0.1": "localhost"}[host]; !strings.Contains(string(out), "http://"+cmp.Or(shown, host)+":8080") {
		t.Errorf("make demo did not print the gateway URL on %s:\n%s", cmp.Or(shown, host), out)
	}
	t.Logf("make demo took %s", time.Since(start).Round(time.Second))
	return &demo{name: name, started: start, root: root, state: state, env: env, host: dial}
}

// demoMakeArgs runs the demo targets through the Makefile when it includes
// deploy/demo.mk, else through deploy/demo.mk alone.
func demoMakeArgs(t *testing.T, root string) []string {
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err == nil && bytes.Contains(b, []byte("deploy/demo.mk")) {
		return []string{"--no-print-directory"}
	}
	t.Log("the Makefile does not include deploy/demo.mk yet: using make -f deploy/demo.mk")
	return []string{"--no-print-directory", "-f", "deploy/demo.mk"}
}

func command(dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	return cmd.CombinedOutput()
}

// parseExports reads lines like export NAME='value'.
func parseExports(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(rest, "=")
		out[k] = strings.Trim(v, "'")
	}
	return out
}

func orderStatus(t *testing.T, client *http.Client, gw, id string) (string, string) {
	t.Helper()
	raw := get(t, client, gw+"/order/api/v1/orders/")
	var orders []struct {
		OrderID json.Number `json:"order_id"`
		Status  string      `json:"status"`
	}
	if err := json.Unmarshal([]byte(raw), &orders); err != nil {
		t.Fatalf("GET orders: %v: %s", err, raw)
	}
	for _, o := range orders {
		if o.OrderID.String() == id {
			return o.Status, raw
		}
	}
	return "", raw
}

func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		t.Logf("--- %s (last lines)\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}

// dropDemo removes what the demo named name made: its replication slots
// (a forgotten slot holds WAL forever), databases, queues and exchange.
func dropDemo(t *testing.T, pgURL, amqpURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Errorf("cleanup: connect to Postgres: %v", err)
	} else {
		defer conn.Close(ctx)
		for _, svc := range []string{"order", "stock", "payment"} {
			db := name + "_" + svc
			// The relay has stopped; its walsender may take a moment to
			// release the slot.
			for i := 0; ; i++ {
				_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, db)
				if err == nil {
					break
				}
				if i == 50 {
					t.Errorf("cleanup: drop slot %s: %v", db, err)
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{db}.Sanitize()+` WITH (FORCE)`); err != nil {
				t.Errorf("cleanup: drop database %s: %v", db, err)
			}
			// The roles demo.sh made for the service and its relay.
			for _, role := range []string{name + "_relay_" + svc, name + "_" + svc} {
				if _, err := conn.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{role}.Sanitize()); err != nil {
					t.Errorf("cleanup: drop role %s: %v", role, err)
				}
			}
		}
	}
	mq, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Errorf("cleanup: connect to RabbitMQ: %v", err)
		return
	}
	defer mq.Close()
	ch, err := mq.Channel()
	if err != nil {
		t.Errorf("cleanup: RabbitMQ channel: %v", err)
		return
	}
	for _, key := range []string{"order.v1", "stock.v1", "payment.v1"} {
		q := name + "." + key
		for _, queue := range []string{q, "DLQ." + q} {
			if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
				t.Errorf("cleanup: delete queue %s: %v", queue, err)
				return
			}
		}
	}
	if err := ch.ExchangeDelete(name, false, false); err != nil {
		t.Errorf("cleanup: delete exchange %s: %v", name, err)
	}
}

// upStartsOnlyWhatIsMissing kills one relay: `demo.sh up` starts it again and
// leaves the six other processes running (their pids do not change), and
// the gateway answers throughout; `demo.sh restart order` restarts the order
// service alone.
func upStartsOnlyWhatIsMissing(t *testing.T, d *demo, client *http.Client, gw string) {
	t.Helper()
	stop := make(chan struct{})
	failures := make(chan string, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := client.Get(gw + "/stock/api/v1/stocks/")
			if err != nil {
				failures <- err.Error()
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures <- resp.Status
			}
		}
	}()
	before := d.pids(t)
	if out, err := command(d.root, d.env, "kill", "-KILL", before["relay-stock"]); err != nil {
		t.Fatalf("kill relay-stock: %v %s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	out, err := command(d.root, d.env, "bash", "deploy/local/demo.sh", "up")
	if err != nil {
		t.Fatalf("demo.sh up after a crash: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "starting what does not run: relay-stock") {
		t.Errorf("demo.sh up did not say what it starts:\n%s", out)
	}
	after := d.pids(t)
	for p, pid := range before {
		switch {
		case p == "relay-stock" && after[p] == pid:
			t.Errorf("relay-stock was not started again (pid %s)", pid)
		case p != "relay-stock" && after[p] != pid:
			t.Errorf("%s was restarted (pid %s, now %s): up must leave running processes alone", p, pid, after[p])
		}
	}
	checkRelays(t, client, gw, d.name, false)

	out, err = command(d.root, d.env, "bash", "deploy/local/demo.sh", "restart", "order")
	if err != nil {
		t.Fatalf("demo.sh restart order: %v\n%s", err, out)
	}
	again := d.pids(t)
	for p, pid := range after {
		if (p == "order") == (again[p] == pid) {
			t.Errorf("after restart order: %s pid %s, now %s", p, pid, again[p])
		}
	}
	close(stop)
	<-done
	close(failures)
	var failed []string
	for f := range failures {
		failed = append(failed, f)
	}
	if len(failed) > 0 {
		t.Errorf("the gateway failed %d time(s) while one process was restarted: %v", len(failed), failed[0])
	}
}

// checkTrace: the order the demo placed is one trace, with the spans of
// the three services' consumers and of the relays in it.
func checkTrace(t *testing.T, otlp *otlptest.Receiver) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		root, ok := otlp.Find(func(s otlptest.Span) bool { return s.Service == "order" && s.Name == "POST /api/v1/orders/" })
		seen := map[string]bool{}
		if ok {
			for _, s := range otlp.Trace(root.Trace) {
				seen[s.Service+"/"+s.Kind] = true
			}
		}
		if seen["cdc-relay/PRODUCER"] && seen["stock/CONSUMER"] && seen["payment/CONSUMER"] && seen["order/CONSUMER"] {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the order's trace lacks a relay or a consumer span: %v", seen)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
