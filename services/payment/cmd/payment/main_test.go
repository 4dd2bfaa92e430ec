package main

import (
	"context"
	"encoding/json"
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
		{http.MethodGet, "/api/v1/payments/", http.StatusOK, `[]`},
		{http.MethodPost, "/api/v1/payments/", http.StatusMethodNotAllowed, `{"detail": "Method \"POST\" not allowed."}`},
		{http.MethodGet, "/api/v1/payments", http.StatusMovedPermanently, "/api/v1/payments/"},
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

func orderMsg(id any, amount any, status string) string {
	return fmt.Sprintf(`{"amount":%v,"customer_id":"7","order_id":%v,"product_id":"1","quantity":1,"status":%q}`, amount, id, status)
}

func waitInbox(t *testing.T, svc *platformtest.Service, n int) {
	t.Helper()
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	require.Eventually(t, func() bool { return platformtest.Count(t, conn, "inbox", "") == n },
		20*time.Second, 10*time.Millisecond, "inbox rows")
}

type payment struct {
	PaymentID  string `json:"payment_id"`
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     string `json:"amount"`
	Status     string `json:"status"`
	Created    string `json:"created"`
}

func TestPaysReservedOrdersOnceByAmount(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	send := func(id, body string) string {
		return platformtest.Publish(t, amqpURL, exchange, platformtest.Message{ID: id, RoutingKey: "payment.v1", Type: "order.status_changed", Body: body})
	}
	first := send("", orderMsg(1, `"1"`, "reserved"))
	send("", orderMsg(2, `"1000"`, "reserved"))
	send("", orderMsg(`"3"`, `"999.99"`, "reserved")) // a string comparison would deny this
	send("", orderMsg(4, `1000.00`, "reserved"))
	send("", orderMsg(5, `"50"`, "reserved")) // and this
	send("", orderMsg(6, `"1"`, "created"))
	send("", orderMsg(7, `"1"`, "not_reserved"))
	send("", orderMsg(1, `"1"`, "payment_confirmed"))
	waitInbox(t, svc, 8)
	send(first, orderMsg(1, `"1"`, "reserved"))    // duplicate message
	send("", orderMsg(1, `"5000"`, "reserved"))    // second reserved for a paid order
	send("", orderMsg(8, `"1"`, "payment_denied")) // marker
	waitInbox(t, svc, 10)

	code, body := svc.Do(t, http.MethodGet, "/api/v1/payments/", "")
	require.Equal(t, http.StatusOK, code)
	var got []payment
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	want := []struct{ order, amount, status string }{
		{"1", "1", "payment_confirmed"},
		{"2", "1000", "payment_denied"},
		{"3", "999.99", "payment_confirmed"},
		{"4", "1000.00", "payment_denied"},
		{"5", "50", "payment_confirmed"},
	}
	require.Len(t, got, len(want))
	for i, w := range want {
		assert.Equal(t, w.order, got[i].OrderID)
		assert.Equal(t, w.amount, got[i].Amount)
		assert.Equal(t, w.status, got[i].Status)
		assert.Equal(t, "7", got[i].CustomerID)
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, got[i].PaymentID)
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`, got[i].Created)
	}

	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	rows := platformtest.Outbox(t, conn)
	require.Len(t, rows, 5)
	for i, r := range rows {
		assert.Equal(t, "order.v1", r.RoutingKey)
		assert.Equal(t, "payment", r.AggregateType)
		assert.Equal(t, "payment.status_changed", r.EventType)
		assert.Equal(t, want[i].order, r.AggregateID)
		// order_id goes out as a number, as the original demo's Payment sent it.
		assert.Equal(t, map[string]any{"order_id": float64(i + 1), "status": want[i].status}, r.Payload)
	}
}

func TestPoisonMessagesGoToTheDLQ(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	poison := []string{
		`\x00`,
		orderMsg(1, `"abc"`, "reserved"),
		orderMsg(1, `"1e3"`, "reserved"),
		orderMsg(1, `true`, "reserved"),
		`{"order_id": 1, "status": "reserved"}`,
		`{"status": 7}`,
	}
	for _, b := range poison {
		platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "payment.v1", Body: b})
	}
	platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "payment.v1", Body: orderMsg(1, `"1"`, "reserved")})
	waitInbox(t, svc, 1)
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	var status string
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT status FROM payment WHERE order_id = '1'`).Scan(&status))
	assert.Equal(t, "payment_confirmed", status)
	dead := platformtest.DLQMessages(t, amqpURL, svc.Env.Queue("payment.v1"), len(poison), 10*time.Second)
	assert.ElementsMatch(t, poison, dead)
}
