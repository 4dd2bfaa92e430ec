package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform/platformtest"
)

func start(t *testing.T) *platformtest.Service {
	t.Helper()
	t.Parallel()
	return platformtest.Start(t, run, platformtest.NewEnv(t, ""))
}

func TestHTTPContract(t *testing.T) {
	svc := start(t)
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, "/api/v1/stocks/", http.StatusOK, `[{"id":1,"product_id":"1","quantity":10},{"id":2,"product_id":"2","quantity":10}]`},
		{http.MethodGet, "/api/v1/reservations/", http.StatusOK, `[]`},
		{http.MethodPost, "/api/v1/stocks/", http.StatusMethodNotAllowed, `{"detail": "Method \"POST\" not allowed."}`},
		{http.MethodPost, "/api/v1/reservations/", http.StatusMethodNotAllowed, `{"detail": "Method \"POST\" not allowed."}`},
		{http.MethodGet, "/api/v1/stocks", http.StatusMovedPermanently, "/api/v1/stocks/"},
		{http.MethodGet, "/api/v1/reservations", http.StatusMovedPermanently, "/api/v1/reservations/"},
		{http.MethodPost, "/api/v1/stocks", http.StatusTemporaryRedirect, "/api/v1/stocks/"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, body := svc.Do(t, tc.method, tc.path, "")
			require.Equal(t, tc.code, code, body)
			if tc.code/100 == 3 {
				assert.Equal(t, tc.body, body)
			} else {
				assert.JSONEq(t, tc.body, body)
			}
		})
	}
}

func orderMsg(id any, product any, quantity int, status string) string {
	return fmt.Sprintf(`{"amount":"1","customer_id":"1","order_id":%v,"product_id":%v,"quantity":%d,"status":%q}`,
		id, product, quantity, status)
}

type state struct {
	stock        map[string]int
	reservations map[string]string // order_id → status
	sent         []string          // "<order_id>:<status>" of outbox rows, in order
}

func read(t *testing.T, svc *platformtest.Service) state {
	t.Helper()
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	s := state{stock: map[string]int{}, reservations: map[string]string{}}
	rows, err := conn.Query(context.Background(), `SELECT product_id, quantity FROM stock`)
	require.NoError(t, err)
	for rows.Next() {
		var p string
		var q int
		require.NoError(t, rows.Scan(&p, &q))
		s.stock[p] = q
	}
	rows, err = conn.Query(context.Background(), `SELECT order_id, status FROM reservation`)
	require.NoError(t, err)
	for rows.Next() {
		var o, st string
		require.NoError(t, rows.Scan(&o, &st))
		s.reservations[o] = st
	}
	for _, r := range platformtest.Outbox(t, conn) {
		require.Equal(t, "order.v1", r.RoutingKey)
		require.Equal(t, "reservation", r.AggregateType)
		require.Equal(t, "reservation.status_changed", r.EventType)
		require.Equal(t, r.ID, r.Headers["dop-msg-id"])
		s.sent = append(s.sent, fmt.Sprintf("%v:%v", r.Payload["order_id"], r.Payload["status"]))
	}
	return s
}

func waitInbox(t *testing.T, svc *platformtest.Service, n int) {
	t.Helper()
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	require.Eventually(t, func() bool { return platformtest.Count(t, conn, "inbox", "") == n },
		20*time.Second, 10*time.Millisecond, "inbox rows")
}

func TestReserveCompensateConfirm(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	send := func(id, body string) string {
		return platformtest.Publish(t, amqpURL, exchange, platformtest.Message{ID: id, RoutingKey: "stock.v1", Type: "order.status_changed", Body: body})
	}
	first := send("", orderMsg(1, `"1"`, 3, "created"))   // reserved: 10 → 7
	send("", orderMsg(2, 1, 11, "created"))               // not_reserved (numeric product id)
	send("", orderMsg(`"3"`, `"99"`, 1, "created"))       // unknown product: not_reserved
	send("", orderMsg(4, `"2"`, 10, "created"))           // reserved: product 2 → 0
	send("", orderMsg(5, `"2"`, 0, "created"))            // quantity 0 is reserved without change
	send("", orderMsg(1, `"1"`, 3, "reserved"))           // echo: ignored
	send("", orderMsg(2, `"1"`, 11, "not_reserved"))      // echo: ignored
	send("", orderMsg(1, `"1"`, 3, "payment_denied"))     // compensation: 7 → 10
	send("", orderMsg(4, `"2"`, 10, "payment_confirmed")) // confirmed
	send("", orderMsg(2, `"1"`, 11, "payment_denied"))    // not reserved: nothing to give back
	waitInbox(t, svc, 10)

	s := read(t, svc)
	assert.Equal(t, map[string]int{"1": 10, "2": 0}, s.stock)
	assert.Equal(t, map[string]string{"1": "payment_denied", "2": "not_reserved", "3": "not_reserved",
		"4": "payment_confirmed", "5": "reserved"}, s.reservations)
	assert.Equal(t, []string{"1:reserved", "2:not_reserved", "3:not_reserved", "4:reserved", "5:reserved",
		"1:payment_denied", "4:payment_confirmed"}, s.sent)

	// The same message again, a new created for a reserved order, and a
	// second compensation change nothing.
	send(first, orderMsg(1, `"1"`, 3, "created"))
	send("", orderMsg(1, `"1"`, 3, "created"))
	send("", orderMsg(1, `"1"`, 3, "payment_denied"))
	send("", orderMsg(4, `"2"`, 10, "payment_denied"))
	waitInbox(t, svc, 13)
	again := read(t, svc)
	assert.Equal(t, s, again)

	code, body := svc.Do(t, http.MethodGet, "/api/v1/reservations/", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `[{"id":1,"order_id":"1","product_id":"1","quantity":3,"status":"payment_denied"},
		{"id":2,"order_id":"2","product_id":"1","quantity":11,"status":"not_reserved"},
		{"id":3,"order_id":"3","product_id":"99","quantity":1,"status":"not_reserved"},
		{"id":4,"order_id":"4","product_id":"2","quantity":10,"status":"payment_confirmed"},
		{"id":5,"order_id":"5","product_id":"2","quantity":0,"status":"reserved"}]`, body)
}

func TestPoisonMessagesGoToTheDLQ(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	poison := []string{
		`{"order_id": 1, "status": "created"`,
		`{"order_id": 1, "product_id": "1", "quantity": -1, "status": "created"}`,
		`{"order_id": 1, "product_id": "1", "quantity": "x", "status": "created"}`,
		`{"order_id": 1, "product_id": "123456789012345678901", "quantity": 1, "status": "created"}`,
		`{"order_id": 1, "product_id": "1", "quantity": 1, "status": "shipped"}`,
		`{"order_id": null, "product_id": "1", "quantity": 1, "status": "created"}`,
	}
	for _, b := range poison {
		platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "stock.v1", Body: b})
	}
	platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "stock.v1", Body: orderMsg(1, `"1"`, 1, "created")})
	waitInbox(t, svc, 1)
	assert.Equal(t, map[string]string{"1": "reserved"}, read(t, svc).reservations)
	dead := platformtest.DLQMessages(t, amqpURL, svc.Env.Queue("stock.v1"), len(poison), 10*time.Second)
	assert.ElementsMatch(t, poison, dead)
}

func TestConcurrentReservationsNeverOversell(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	for i := 1; i <= 30; i++ {
		platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "stock.v1", Body: orderMsg(i, `"1"`, 1, "created")})
	}
	waitInbox(t, svc, 30)
	s := read(t, svc)
	assert.Equal(t, 0, s.stock["1"])
	reserved := 0
	for _, st := range s.reservations {
		if st == "reserved" {
			reserved++
		}
	}
	assert.Equal(t, 10, reserved)
	assert.Len(t, s.sent, 30)
}
