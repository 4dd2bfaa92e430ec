// Package e2e drives the whole saga over HTTP: the three services and one
// cdc-relay per database run as processes built from this module, on
// databases, an exchange, queues and replication slots of their own.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const deadline = 60 * time.Second

// threeSagas places one order of each ending and checks that each ends so:
// payment_confirmed, payment_denied, not_reserved, with stock to match.
func threeSagas(t *testing.T, s *System) (success, denied, notReserved Order, st State) {
	t.Helper()
	success = s.CreateOrder(t, `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`)
	denied = s.CreateOrder(t, `{"customer_id": 1, "product_id": 1, "amount": 1000, "quantity": 1}`)
	notReserved = s.CreateOrder(t, `{"customer_id": 1, "product_id": 2, "amount": 1, "quantity": 11}`)
	require.Eventually(t, func() bool {
		st = s.State(t)
		return ended(st, success.OrderID) && ended(st, denied.OrderID) && ended(st, notReserved.OrderID)
	}, deadline, 50*time.Millisecond, "sagas did not end")
	assert.Equal(t, "payment_confirmed", st.Orders[success.OrderID].Status)
	assert.Equal(t, "payment_denied", st.Orders[denied.OrderID].Status)
	assert.Equal(t, "not_reserved", st.Orders[notReserved.OrderID].Status)
	assert.Equal(t, Reservation{ID: 3, OrderID: "3", ProductID: "2", Quantity: 11, Status: "not_reserved"}, st.Reservations["3"])
	assert.Equal(t, map[string]int{"1": 9, "2": 10}, st.Stock, "success takes 1, denied gives back")
	return success, denied, notReserved, st
}

// The same sagas on quorum queues (SAGA_QUEUE_TYPE=quorum), what a RabbitMQ
// cluster wants; RabbitMQ 3.10 runs them on one node too.
func TestSagasOnQuorumQueues(t *testing.T) {
	t.Parallel()
	s := StartSystemWith(t, map[string]string{"SAGA_QUEUE_TYPE": "quorum"}, nil)
	threeSagas(t, s)
	conn, err := amqp.Dial(s.AMQPURL)
	require.NoError(t, err)
	defer conn.Close()
	for q, dlrk := range map[string]string{
		s.Prefix + "order.v1":            "DLQ." + s.Prefix + "order.v1",
		"DLQ." + s.Prefix + "payment.v1": "DLQ.DLQ." + s.Prefix + "payment.v1",
	} {
		ch, err := conn.Channel()
		require.NoError(t, err)
		// A declaration succeeds only with the arguments the queue has: these
		// are a quorum queue's (a classic queue would refuse x-queue-type).
		_, err = ch.QueueDeclare(q, true, false, false, false, amqp.Table{
			"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlrk,
		})
		require.NoError(t, err, "%s is not the quorum queue SAGA_QUEUE_TYPE=quorum declares", q)
		_ = ch.Close()
	}
}

// TestSagas runs the three scenarios of docs/contracts.md, "Messaging
// contract", on one system, then the duplicate, invalid-request and
// poison-message checks on the same system.
func TestSagas(t *testing.T) {
	t.Parallel()
	s := StartSystem(t)
	success, denied, notReserved, _ := threeSagas(t, s)

	counts := func() [3]int {
		return [3]int{len(s.MessagesOf(success.OrderID)), len(s.MessagesOf(denied.OrderID)), len(s.MessagesOf(notReserved.OrderID))}
	}
	require.Eventually(t, func() bool { return counts() == [3]int{9, 9, 5} }, deadline, 20*time.Millisecond,
		"messages per saga: %v", counts)
	// The 23 messages of the three sagas, held to docs/asyncapi.yaml.
	checkMessages(t, append(append(s.MessagesOf(success.OrderID), s.MessagesOf(denied.OrderID)...), s.MessagesOf(notReserved.OrderID)...))
	for _, d := range s.Messages() {
		assert.NotEmpty(t, d.MessageId)
		assert.Equal(t, d.MessageId, d.Headers["dop-msg-id"], "message_id is the outbox id, as dop-msg-id")
		assert.Equal(t, "/exchange/"+s.Exchange+"/"+d.RoutingKey, d.Headers["dop-msg-destination"])
		assert.Equal(t, "Published", d.Headers["dop-msg-type"])
	}

	t.Run("duplicate delivery changes nothing", func(t *testing.T) {
		before := s.State(t)
		dups := s.MessagesOf(success.OrderID)
		republish(t, s, dups)
		for _, p := range []*Process{s.Order, s.Stock, s.Payment} {
			require.Eventually(t, func() bool {
				n := 0
				for _, d := range dups {
					if strings.Contains(p.Logs(), `"message_id":"`+d.MessageId+`"`) &&
						strings.Contains(p.Logs(), "duplicate message acked without effect") {
						n++
					}
				}
				return n == countKeys(dups, p.Name)
			}, deadline, 20*time.Millisecond, "%s did not ack its duplicates", p.Name)
		}
		assert.Equal(t, before, s.State(t))
		// The exchange-wide capture may see the copies after the services
		// acked them: wait for it.
		require.Eventually(t, func() bool { return len(s.MessagesOf(success.OrderID)) >= 18 }, deadline, 20*time.Millisecond,
			"the 9 duplicates did not reach the capture")
		assert.Len(t, s.MessagesOf(success.OrderID), 18, "the 9 duplicates and nothing more")
	})

	t.Run("invalid requests write nothing", func(t *testing.T) {
		before := s.State(t)
		total := len(s.Messages())
		for _, body := range []string{
			`{}`,
			`{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": -1}`,
			`{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": "x"}`,
			`{"customer_id": 1, "product_id": 1, "amount": "abc"}`,
			`{"customer_id": 1, "product_id": 1, "amount": 1, "status": "bogus"}`,
			`not json`,
			`{"customer_id": 1, "product_id": 1, "amount": 1, "pad": "` + strings.Repeat("x", 2<<20) + `"}`,
		} {
			code, resp := Do(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", body)
			assert.Equal(t, http.StatusBadRequest, code, resp)
			var errs map[string]any
			assert.NoError(t, json.Unmarshal([]byte(resp), &errs), resp)
			assert.NotEmpty(t, errs)
		}
		for _, url := range []string{s.Stock.URL + "/api/v1/stocks/", s.Stock.URL + "/api/v1/reservations/", s.Payment.URL + "/api/v1/payments/"} {
			code, resp := Do(t, http.MethodPost, url, `{}`)
			assert.Equal(t, http.StatusMethodNotAllowed, code)
			assert.JSONEq(t, `{"detail": "Method \"POST\" not allowed."}`, resp)
		}
		for _, url := range []string{s.Order.URL + "/api/v1/orders", s.Stock.URL + "/api/v1/stocks", s.Stock.URL + "/api/v1/reservations", s.Payment.URL + "/api/v1/payments"} {
			code, loc := Do(t, http.MethodGet, url, "")
			assert.Equal(t, http.StatusMovedPermanently, code)
			assert.Equal(t, url[strings.Index(url, "/api"):]+"/", loc)
		}
		// A valid order after them: once its saga ends, its 9 messages are
		// the only new ones on the exchange.
		marker := s.CreateOrder(t, `{"customer_id": 2, "product_id": 2, "amount": 5, "quantity": 2}`)
		require.Eventually(t, func() bool { return ended(s.State(t), marker.OrderID) && len(s.MessagesOf(marker.OrderID)) == 9 },
			deadline, 20*time.Millisecond)
		after := s.State(t)
		delete(after.Orders, marker.OrderID)
		delete(after.Reservations, fmt.Sprint(marker.OrderID))
		delete(after.Payments, fmt.Sprint(marker.OrderID))
		after.Stock["2"] += 2
		assert.Equal(t, before, after)
		assert.Len(t, s.Messages(), total+9)
	})

	t.Run("poison messages go to their DLQ", func(t *testing.T) {
		ch := channel(t, s.AMQPURL)
		poison := map[string]string{
			"order.v1":   `{"order_id": 99999, "status": "reserved"}`,
			"stock.v1":   `not json`,
			"payment.v1": `{"order_id": 1, "status": "reserved", "amount": "lots", "customer_id": "1"}`,
		}
		for key, body := range poison {
			require.NoError(t, ch.PublishWithContext(context.Background(), s.Exchange, key, true, false,
				amqp.Publishing{MessageId: "poison-" + key, Body: []byte(body), DeliveryMode: amqp.Persistent}))
		}
		for key, body := range poison {
			dlq := "DLQ." + s.Prefix + key
			require.Eventually(t, func() bool {
				d, ok, err := ch.Get(dlq, true)
				return err == nil && ok && string(d.Body) == body
			}, deadline, 20*time.Millisecond, "nothing in %s", dlq)
		}
		next := s.CreateOrder(t, `{"customer_id": 3, "product_id": 1, "amount": 2, "quantity": 1}`)
		require.Eventually(t, func() bool { return ended(s.State(t), next.OrderID) }, deadline, 20*time.Millisecond)
		assert.Equal(t, "payment_confirmed", s.State(t).Orders[next.OrderID].Status)
	})

	// Last: it places an order of its own.
	t.Run("responses match docs/openapi.yaml", func(t *testing.T) { checkResponses(t, s) })
}

// countKeys is how many of msgs the named service consumes.
func countKeys(msgs []amqp.Delivery, service string) int {
	n := 0
	for _, d := range msgs {
		if d.RoutingKey == service+".v1" {
			n++
		}
	}
	return n
}

func channel(t *testing.T, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

// republish sends msgs again as they were: the same message_id, headers
// and body, as a relay does after a failure.
func republish(t *testing.T, s *System, msgs []amqp.Delivery) {
	t.Helper()
	ch := channel(t, s.AMQPURL)
	for _, d := range msgs {
		require.NoError(t, ch.PublishWithContext(context.Background(), s.Exchange, d.RoutingKey, true, false, amqp.Publishing{
			MessageId: d.MessageId, Type: d.Type, ContentType: d.ContentType, DeliveryMode: amqp.Persistent,
			Headers: d.Headers, Body: d.Body, Timestamp: d.Timestamp,
		}))
	}
}

// TestConcurrentOrders posts 300 orders of mixed scenarios over the two
// products at once: every one ends, stock never goes negative, and each
// product's stock ends at 10 minus its confirmed quantities.
func TestConcurrentOrders(t *testing.T) {
	t.Parallel()
	s := StartSystem(t)
	const n = 300
	bodies := make([]string, n)
	for i := range bodies {
		product := 1 + i%2
		quantity := rand.IntN(3) // 0, 1 or 2
		if i%10 == 0 {
			quantity = 11
		}
		amount := "1"
		if i%3 == 0 {
			amount = "1000"
		}
		bodies[i] = fmt.Sprintf(`{"customer_id": %d, "product_id": %d, "amount": %q, "quantity": %d}`, i, product, amount, quantity)
	}
	ids := make([]int, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, body := range bodies {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ids[i] = s.CreateOrder(t, body).OrderID
		})
	}
	wg.Wait()

	var st State
	require.Eventually(t, func() bool {
		st = s.State(t)
		for _, id := range ids {
			if !ended(st, id) {
				return false
			}
		}
		return true
	}, 2*deadline, 100*time.Millisecond, "not every order ended")

	confirmed := map[string]int{}
	for _, id := range ids {
		o := st.Orders[id]
		if o.Status == "payment_confirmed" {
			confirmed[o.ProductID] += o.Quantity
			assert.NotEqual(t, "1000", o.Amount)
		}
		if o.Status == "payment_denied" {
			assert.Equal(t, "1000", o.Amount)
		}
		if o.Quantity > 10 {
			assert.Equal(t, "not_reserved", o.Status)
		}
	}
	for _, p := range []string{"1", "2"} {
		assert.GreaterOrEqual(t, st.Stock[p], 0)
		assert.Equal(t, 10-confirmed[p], st.Stock[p], "product %s", p)
	}
	require.Eventually(t, func() bool {
		byOrder := s.MessagesByOrder()
		for _, id := range ids {
			want := 9
			if st.Orders[id].Status == "not_reserved" {
				want = 5
			}
			if len(byOrder[fmt.Sprint(id)]) != want {
				return false
			}
		}
		return true
	}, deadline, 100*time.Millisecond, "messages per saga")
}
