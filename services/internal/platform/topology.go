package platform

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Routing keys of docs/contracts.md, "Messaging contract". They never
// change; queue names may get a prefix (Config.QueuePrefix).
const (
	RoutingKeyOrder   = "order.v1"
	RoutingKeyStock   = "stock.v1"
	RoutingKeyPayment = "payment.v1"
)

// Topology is the exchange and queues of docs/contracts.md, "Messaging
// contract".
type Topology struct {
	Exchange    string
	QueuePrefix string
	// QueueType is the type of every queue: QueueClassic (the default, for
	// one broker) or QueueQuorum (replicated, for a cluster).
	QueueType string
}

// The queue types (x-queue-type).
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// args are a queue's arguments: dead-lettering to dlrk through the default
// exchange and, for a quorum queue, its type and at-least-once
// dead-lettering (the broker keeps a rejected message until its DLQ
// confirmed it, which needs the reject-publish overflow).
func (t Topology) args(dlrk string) amqp.Table {
	a := amqp.Table{
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": dlrk,
	}
	if t.QueueType == QueueQuorum {
		a["x-queue-type"] = QueueQuorum
		a["x-dead-letter-strategy"] = "at-least-once"
		a["x-overflow"] = "reject-publish"
	}
	return a
}

// Queue is the queue consuming routingKey: the routing key itself behind
// the prefix.
func (t Topology) Queue(routingKey string) string { return t.QueuePrefix + routingKey }

// DLQ is the dead-letter queue of queue: "DLQ.<queue>", as django-outbox-pattern names it.
func DLQ(queue string) string { return "DLQ." + queue }

// Declarer is the part of *amqp.Channel that Declare needs.
type Declarer interface {
	ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error)
	QueueBind(name, key, exchange string, noWait bool, args amqp.Table) error
}

// Declare declares the exchange and all three queues with their DLQs, not
// only the caller's own queue: whichever service starts first makes every
// routing key routable, so the relay's mandatory publishes are never returned
// because a consumer has not started yet. Declarations are idempotent; the
// arguments are byte-identical to those django-outbox-pattern's STOMP
// subscriptions declare (classic queues), so services built on it (such as
// the original demo's, docs/origin.md) and this project's can share a broker.
func (t Topology) Declare(_ context.Context, ch Declarer) error {
	if err := ch.ExchangeDeclare(t.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", t.Exchange, err)
	}
	for _, key := range []string{RoutingKeyOrder, RoutingKeyStock, RoutingKeyPayment} {
		q := t.Queue(key)
		if _, err := ch.QueueDeclare(DLQ(q), true, false, false, false, t.args(DLQ(DLQ(q)))); err != nil {
			return fmt.Errorf("declare queue %q: %w", DLQ(q), err)
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, t.args(DLQ(q))); err != nil {
			return fmt.Errorf("declare queue %q: %w", q, err)
		}
		if err := ch.QueueBind(q, key, t.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to %q with %q: %w", q, t.Exchange, key, err)
		}
	}
	return nil
}
