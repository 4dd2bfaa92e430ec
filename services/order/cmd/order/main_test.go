package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/internal/platform/platformtest"
)

func start(t *testing.T) *platformtest.Service {
	t.Helper()
	t.Parallel()
	return platformtest.Start(t, run, platformtest.NewEnv(t, ""))
}

func TestCreateOrderWritesOrderAndTwoOutboxRows(t *testing.T) {
	svc := start(t)
	code, body := svc.Do(t, http.MethodPost, "/api/v1/orders/", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1, "order_id": 77}`)
	require.Equal(t, http.StatusCreated, code, body)
	assert.JSONEq(t, `{"order_id":1,"customer_id":"1","product_id":"1","amount":"1","quantity":1,"status":"created"}`, body)

	code, body = svc.Do(t, http.MethodPost, "/api/v1/orders/", `{"customer_id": "c2", "product_id": "2", "amount": 1000.00}`)
	require.Equal(t, http.StatusCreated, code, body)
	assert.JSONEq(t, `{"order_id":2,"customer_id":"c2","product_id":"2","amount":"1000.00","quantity":0,"status":"created"}`, body)

	code, body = svc.Do(t, http.MethodGet, "/api/v1/orders/", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `[{"order_id":1,"customer_id":"1","product_id":"1","amount":"1","quantity":1,"status":"created"},
		{"order_id":2,"customer_id":"c2","product_id":"2","amount":"1000.00","quantity":0,"status":"created"}]`, body)

	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	rows := platformtest.Outbox(t, conn)
	require.Len(t, rows, 4)
	exchange := svc.Env.Vars["SAGA_EXCHANGE"]
	for i, key := range []string{"stock.v1", "payment.v1"} {
		r := rows[i]
		assert.Equal(t, key, r.RoutingKey)
		assert.Equal(t, "order", r.AggregateType)
		assert.Equal(t, "1", r.AggregateID)
		assert.Equal(t, "order.status_changed", r.EventType)
		assert.Equal(t, map[string]any{"amount": "1", "customer_id": "1", "order_id": float64(1),
			"product_id": "1", "quantity": float64(1), "status": "created"}, r.Payload)
		assert.Equal(t, r.ID, r.Headers["dop-msg-id"])
		assert.Equal(t, "/exchange/"+exchange+"/"+key, r.Headers["dop-msg-destination"])
		assert.Equal(t, "Published", r.Headers["dop-msg-type"])
		assert.Regexp(t, regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`), r.Headers["dop-msg-sent-time"])
	}
}

func TestHTTPContract(t *testing.T) {
	svc := start(t)
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, "/api/v1/orders/", http.StatusOK, `[]`},
		{http.MethodGet, "/api/v1/orders", http.StatusMovedPermanently, "/api/v1/orders/"},
		{http.MethodGet, "/api/v1/orders?x=1", http.StatusMovedPermanently, "/api/v1/orders/?x=1"},
		{http.MethodPost, "/api/v1/orders", http.StatusTemporaryRedirect, "/api/v1/orders/"},
		{http.MethodPut, "/api/v1/orders/", http.StatusMethodNotAllowed, `{"detail": "Method \"PUT\" not allowed."}`},
		{http.MethodDelete, "/api/v1/orders/", http.StatusMethodNotAllowed, `{"detail": "Method \"DELETE\" not allowed."}`},
		{http.MethodGet, "/api/v1/nothing/", http.StatusNotFound, `{"detail": "Not found."}`},
		{http.MethodGet, "/livez", http.StatusOK, `{"status": "ok"}`},
		{http.MethodGet, "/readyz", http.StatusOK, `{"status": "ok"}`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, body := svc.Do(t, tc.method, tc.path, "")
			require.Equal(t, tc.code, code, body)
			if strings.HasPrefix(tc.body, "/") {
				assert.Equal(t, tc.body, body)
			} else {
				assert.JSONEq(t, tc.body, body)
			}
		})
	}
}

func TestInvalidRequestsWriteNothing(t *testing.T) {
	svc := start(t)
	huge := `{"customer_id": "1", "product_id": "1", "amount": "1", "pad": "` + strings.Repeat("x", 2<<20) + `"}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"missing fields", `{}`, `{"customer_id":["This field is required."],"product_id":["This field is required."],"amount":["This field is required."]}`},
		{"empty body", ``, `{"customer_id":["This field is required."],"product_id":["This field is required."],"amount":["This field is required."]}`},
		{"negative quantity", `{"customer_id":1,"product_id":1,"amount":1,"quantity":-1}`, `{"quantity":["Ensure this value is greater than or equal to 0."]}`},
		{"quantity x", `{"customer_id":1,"product_id":1,"amount":1,"quantity":"x"}`, `{"quantity":["A valid integer is required."]}`},
		{"quantity too large", `{"customer_id":1,"product_id":1,"amount":1,"quantity":2147483648}`, `{"quantity":["Ensure this value is less than or equal to 2147483647."]}`},
		{"amount abc", `{"customer_id":1,"product_id":1,"amount":"abc"}`, `{"amount":["A valid number is required."]}`},
		{"negative amount", `{"customer_id":1,"product_id":1,"amount":-5}`, `{"amount":["Ensure this value is greater than or equal to 0."]}`},
		{"status bogus", `{"customer_id":1,"product_id":1,"amount":1,"status":"bogus"}`, `{"status":["\"bogus\" is not a valid choice."]}`},
		{"status reserved", `{"customer_id":1,"product_id":1,"amount":1,"status":"reserved"}`, `{"status":["\"reserved\" is not a valid choice."]}`},
		{"nulls", `{"customer_id":null,"product_id":1,"amount":1,"quantity":null}`, `{"customer_id":["This field may not be null."],"quantity":["This field may not be null."]}`},
		{"blank and object", `{"customer_id":"  ","product_id":{},"amount":1}`, `{"customer_id":["This field may not be blank."],"product_id":["Not a valid string."]}`},
		{"too long", `{"customer_id":"123456789012345678901","product_id":1,"amount":1}`, `{"customer_id":["Ensure this field has no more than 20 characters."]}`},
		{"not JSON", `customer_id=1`, ``},
		{"trailing data", `{"customer_id":1,"product_id":1,"amount":1} {}`, ``},
		{"array", `[1]`, `{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}`},
		{"null", `null`, `{"non_field_errors":["No data provided"]}`},
		{"2 MiB body", huge, `{"detail":"Request body is larger than 1 MiB."}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := svc.Do(t, http.MethodPost, "/api/v1/orders/", tc.body)
			require.Equal(t, http.StatusBadRequest, code, body)
			if tc.want != "" {
				assert.JSONEq(t, tc.want, body)
				return
			}
			var detail map[string]string
			require.NoError(t, json.Unmarshal([]byte(body), &detail), body)
			assert.True(t, strings.HasPrefix(detail["detail"], "JSON parse error - "), body)
		})
	}
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	assert.Zero(t, platformtest.Count(t, conn, "orders", ""))
	assert.Zero(t, platformtest.Count(t, conn, "outbox", ""))
	assert.Zero(t, platformtest.Count(t, conn, "inbox", ""))
}

// waitInbox waits until the service has consumed n messages (duplicates
// and rejected messages leave no inbox row).
func waitInbox(t *testing.T, svc *platformtest.Service, n int) {
	t.Helper()
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	require.Eventually(t, func() bool { return platformtest.Count(t, conn, "inbox", "") == n },
		20*time.Second, 10*time.Millisecond, "inbox rows")
}

func orderStatus(t *testing.T, svc *platformtest.Service, id int) string {
	t.Helper()
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	var s string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT status FROM orders WHERE order_id = $1`, id).Scan(&s))
	return s
}

func TestConsumerMovesOrdersForwardOnly(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	for range 2 {
		code, body := svc.Do(t, http.MethodPost, "/api/v1/orders/", `{"customer_id":1,"product_id":1,"amount":1,"quantity":1}`)
		require.Equal(t, http.StatusCreated, code, body)
	}
	send := func(id, body string) string {
		return platformtest.Publish(t, amqpURL, exchange, platformtest.Message{ID: id, RoutingKey: "order.v1", Type: "reservation.status_changed", Body: body})
	}

	reserved := send("", `{"order_id": 1, "status": "reserved"}`)
	waitInbox(t, svc, 1)
	assert.Equal(t, "reserved", orderStatus(t, svc, 1))
	rows := platformtest.Outbox(t, conn)
	require.Len(t, rows, 6)
	for _, r := range rows[4:] {
		assert.Equal(t, "reserved", r.Payload["status"])
		assert.Equal(t, float64(1), r.Payload["order_id"])
	}

	// The same message again is acked without effect; the next message
	// proves the duplicate was consumed before it.
	send(reserved, `{"order_id": 1, "status": "reserved"}`)
	send("", `{"order_id": "1", "status": "reserved"}`)   // same status, new id: no change
	send("", `{"order_id": 1, "status": "not_reserved"}`) // sideways: ignored
	send("", `{"order_id": 1, "status": "created"}`)      // backwards: ignored
	waitInbox(t, svc, 4)
	assert.Equal(t, "reserved", orderStatus(t, svc, 1))
	assert.Equal(t, 6, platformtest.Count(t, conn, "outbox", ""))

	// order_id as a string moves it on; then nothing moves it back.
	send("", `{"order_id": "1", "status": "payment_confirmed"}`)
	send("", `{"order_id": 1, "status": "payment_denied"}`)
	send("", `{"order_id": 2, "status": "payment_confirmed"}`) // created → payment_confirmed: ignored
	send("", `{"order_id": 2, "status": "not_reserved"}`)
	waitInbox(t, svc, 8)
	assert.Equal(t, "payment_confirmed", orderStatus(t, svc, 1))
	assert.Equal(t, "not_reserved", orderStatus(t, svc, 2))
	assert.Equal(t, 10, platformtest.Count(t, conn, "outbox", ""))
	assert.Equal(t, 2, platformtest.Count(t, conn, "outbox", "payload->>'status' = 'payment_confirmed'"))
	assert.Equal(t, 2, platformtest.Count(t, conn, "outbox", "payload->>'status' = 'not_reserved' AND aggregate_id = '2'"))
}

func TestConsumerDedupsOnDopMsgIDWithoutMessageID(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	code, body := svc.Do(t, http.MethodPost, "/api/v1/orders/", `{"customer_id":1,"product_id":1,"amount":1,"quantity":1}`)
	require.Equal(t, http.StatusCreated, code, body)
	id := platform.NewUUID()
	for range 2 {
		platformtest.Publish(t, amqpURL, exchange, platformtest.Message{ID: id, NoMessageID: true, RoutingKey: "order.v1", Body: `{"order_id": 1, "status": "reserved"}`})
	}
	platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "order.v1", Body: `{"order_id": 1, "status": "payment_denied"}`})
	waitInbox(t, svc, 2)
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	assert.Equal(t, 1, platformtest.Count(t, conn, "inbox", "message_id = $1", id))
	assert.Equal(t, "payment_denied", orderStatus(t, svc, 1))
	assert.Equal(t, 6, platformtest.Count(t, conn, "outbox", ""))
}

func TestPoisonMessagesGoToTheDLQ(t *testing.T) {
	svc := start(t)
	amqpURL, exchange := svc.Env.Vars["AMQP_URL"], svc.Env.Vars["SAGA_EXCHANGE"]
	code, body := svc.Do(t, http.MethodPost, "/api/v1/orders/", `{"customer_id":1,"product_id":1,"amount":1,"quantity":1}`)
	require.Equal(t, http.StatusCreated, code, body)
	poison := []string{
		`not json`,
		`{"order_id": 999, "status": "reserved"}`,
		`{"order_id": 1, "status": "bogus"}`,
		`{"order_id": "abc", "status": "reserved"}`,
		`{"order_id": 1}`,
		`[1, 2]`,
	}
	for _, b := range poison {
		platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "order.v1", Body: b})
	}
	// No message id at all: nothing to dedup on.
	noID := `{"order_id": 1, "status": "payment_confirmed"}`
	platformtest.Publish(t, amqpURL, exchange, platformtest.Message{NoIDs: true, RoutingKey: "order.v1", Body: noID})
	platformtest.Publish(t, amqpURL, exchange, platformtest.Message{RoutingKey: "order.v1", Body: `{"order_id": 1, "status": "reserved"}`})
	waitInbox(t, svc, 1)
	assert.Equal(t, "reserved", orderStatus(t, svc, 1))
	deliveries := platformtest.DLQDeliveries(t, amqpURL, svc.Env.Queue("order.v1"), len(poison)+1, 10*time.Second)
	var dead, reasons []string
	for _, d := range deliveries {
		dead = append(dead, string(d.Body))
		reason, _ := d.Headers[platform.HeaderRejectReason].(string)
		reasons = append(reasons, reason)
		assert.Equal(t, svc.Env.Queue("order.v1"), d.Headers[platform.HeaderRejectQueue])
	}
	assert.ElementsMatch(t, append(poison, noID), dead)
	logs := svc.Logs()
	assert.Contains(t, logs, "message rejected to the dead-letter queue")
	for _, reason := range []string{"body is not a JSON object", "unknown order 999", `status "bogus" is not an order status`,
		`order_id: "abc" is not a positive integer`, "status is missing", "no message_id property and no dop-msg-id header"} {
		assert.Contains(t, logs, strings.ReplaceAll(reason, `"`, `\"`))
		found := false
		for _, r := range reasons {
			found = found || strings.Contains(r, reason)
		}
		assert.True(t, found, "no message in the DLQ says %q: %q", reason, reasons)
	}
}
