// Package chaos runs the whole saga system (Postgres, RabbitMQ, the three
// services and their three relays, as real processes started by
// deploy/local/demo.sh) under a load of orders while a seeded schedule of
// faults crashes, stops, stalls and cuts its parts, then checks that every
// order kept its promise (invariants.go). `make chaos` runs a long schedule;
// `make test` a short one.
package chaos

import (
	"fmt"
	"sort"
	"strings"
)

// Scenario is what an order was placed to do.
type Scenario string

const (
	// ScenarioConfirm: stock enough and an amount under 1000: it should end
	// payment_confirmed (or not_reserved, on a product that ran out).
	ScenarioConfirm Scenario = "confirm"
	// ScenarioDenied: an amount of 1000 or more: payment_denied (or
	// not_reserved, on a product that ran out).
	ScenarioDenied Scenario = "denied"
	// ScenarioOutOfStock: more than any stock: not_reserved.
	ScenarioOutOfStock Scenario = "out_of_stock"
)

// Terminal states of a saga.
const (
	PaymentConfirmed = "payment_confirmed"
	PaymentDenied    = "payment_denied"
	NotReserved      = "not_reserved"
)

// Order is a row of the order service's orders table.
type Order struct {
	ID         string
	CustomerID string
	ProductID  string
	Quantity   int
	Amount     string
	Status     string
}

// Reservation is a row of the stock service's reservation table.
type Reservation struct {
	OrderID   string
	ProductID string
	Quantity  int
	Status    string
}

// Payment is a row of the payment service's payment table.
type Payment struct {
	OrderID string
	Status  string
}

// OutboxRow is a row of a service's outbox.
type OutboxRow struct {
	ID          string
	AggregateID string
	RoutingKey  string
}

// Slot is a replication slot of the system's Postgres.
type Slot struct {
	Name string
	// Behind is the WAL position the system reached once settled, minus the
	// slot's confirmed position, in bytes: > 0 means outbox rows (or other
	// WAL) not relayed.
	Behind int64
}

// State is the system as the invariants see it once it settled.
type State struct {
	Orders       []Order
	Reservations []Reservation
	Payments     []Payment
	// InitialStock and Stock are each product's quantity before the orders
	// and now.
	InitialStock, Stock map[string]int
	// Limited are the products whose stock may run out during the run.
	Limited map[string]bool
	// Scenarios maps a customer id (one per order placed) to its scenario.
	Scenarios map[string]Scenario
	// Outbox is each service's outbox ("order", "stock", "payment"); Inbox
	// the message ids in each one's inbox.
	Outbox map[string][]OutboxRow
	Inbox  map[string]map[string]bool
	// Consumers maps a routing key to the service whose queue it reaches.
	Consumers map[string]string
	// DLQ is the number of messages in each dead-letter queue.
	DLQ map[string]int
	// Slots are the server's replication slots; WantSlots the system's own.
	Slots     []Slot
	WantSlots []string
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	Detail    string
}

func (v Violation) String() string { return v.Invariant + ": " + v.Detail }

// Invariants names them, in the order Check reports them.
var Invariants = []string{
	"once",         // each order placed is one order
	"terminal",     // every order is in a terminal state that matches its scenario
	"agreement",    // its reservation and payment agree with it
	"stock",        // stock is conserved and never negative
	"payment",      // at most one payment per order, and only for a reserved order
	"delivery",     // every outbox message reached its consumer's inbox
	"dead-letters", // no dead-letter queue holds a message
	"relayed",      // every slot relayed the whole outbox, and no slot is left behind
}

// Check returns every broken invariant of s (none: the run kept its promise).
func Check(s State) []Violation {
	var out []Violation
	bad := func(inv, format string, args ...any) {
		out = append(out, Violation{Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}
	reservations := map[string]Reservation{}
	for _, r := range s.Reservations {
		reservations[r.OrderID] = r
	}
	payments := map[string][]Payment{}
	for _, p := range s.Payments {
		payments[p.OrderID] = append(payments[p.OrderID], p)
	}
	orders := map[string]Order{}

	// Each order placed is one order: the placer's retries carry an
	// Idempotency-Key, so a POST retried after its answer was lost must not
	// make a second one.
	perCustomer := map[string]int{}
	for _, o := range s.Orders {
		perCustomer[o.CustomerID]++
	}
	customers := make([]string, 0, len(s.Scenarios))
	for c := range s.Scenarios {
		customers = append(customers, c)
	}
	sort.Strings(customers)
	for _, c := range customers {
		switch n := perCustomer[c]; {
		case n == 0:
			bad("once", "the order of customer %s was placed and is not in the orders table", c)
		case n > 1:
			bad("once", "customer %s placed one order and has %d", c, n)
		}
	}

	for _, o := range s.Orders {
		orders[o.ID] = o
		sc, known := s.Scenarios[o.CustomerID]
		if !known {
			bad("terminal", "order %s of customer %s was not placed by the run", o.ID, o.CustomerID)
			continue
		}
		allowed := map[Scenario][]string{
			ScenarioConfirm:    {PaymentConfirmed},
			ScenarioDenied:     {PaymentDenied},
			ScenarioOutOfStock: {NotReserved},
		}[sc]
		if s.Limited[o.ProductID] && sc != ScenarioOutOfStock {
			allowed = append(allowed, NotReserved)
		}
		if !contains(allowed, o.Status) {
			bad("terminal", "order %s (%s) is %s, want %s", o.ID, sc, o.Status, strings.Join(allowed, " or "))
		}
		r, hasRes := reservations[o.ID]
		ps := payments[o.ID]
		switch o.Status {
		case PaymentConfirmed, PaymentDenied:
			switch {
			case !hasRes:
				bad("agreement", "order %s is %s without a reservation", o.ID, o.Status)
			case r.Status != o.Status:
				bad("agreement", "order %s is %s, its reservation %s", o.ID, o.Status, r.Status)
			case r.ProductID != o.ProductID || r.Quantity != o.Quantity:
				bad("agreement", "order %s is of %d × %s, its reservation of %d × %s", o.ID, o.Quantity, o.ProductID, r.Quantity, r.ProductID)
			}
			if len(ps) == 1 && ps[0].Status != o.Status {
				bad("agreement", "order %s is %s, its payment %s", o.ID, o.Status, ps[0].Status)
			}
			if len(ps) == 0 {
				bad("agreement", "order %s is %s without a payment", o.ID, o.Status)
			}
		case NotReserved:
			if !hasRes || r.Status != NotReserved {
				bad("agreement", "order %s is not_reserved, its reservation %s", o.ID, orNone(hasRes, r.Status))
			}
		}
		if len(ps) > 1 {
			bad("payment", "order %s has %d payments", o.ID, len(ps))
		}
		if len(ps) > 0 && (!hasRes || r.Status == NotReserved) {
			bad("payment", "order %s has a payment but was never reserved (reservation %s)", o.ID, orNone(hasRes, r.Status))
		}
	}
	for id := range payments {
		if _, ok := orders[id]; !ok {
			bad("payment", "payment of unknown order %s", id)
		}
	}

	taken := map[string]int{}
	for _, r := range s.Reservations {
		switch r.Status {
		case PaymentConfirmed, "reserved":
			taken[r.ProductID] += r.Quantity
		}
	}
	for _, p := range sortedKeys(s.InitialStock) {
		now := s.Stock[p]
		if now < 0 {
			bad("stock", "product %s has %d in stock", p, now)
		}
		if want := s.InitialStock[p] - taken[p]; now != want {
			bad("stock", "product %s: %d in stock, want %d (initial %d − %d taken by confirmed reservations)", p, now, want, s.InitialStock[p], taken[p])
		}
	}

	for _, svc := range sortedKeys(s.Outbox) {
		for _, row := range s.Outbox[svc] {
			to, ok := s.Consumers[row.RoutingKey]
			if !ok {
				bad("delivery", "%s's outbox row %s has routing key %q, which no service consumes", svc, row.ID, row.RoutingKey)
				continue
			}
			if !s.Inbox[to][row.ID] {
				bad("delivery", "%s's message %s (order %s, %s) never reached %s", svc, row.ID, row.AggregateID, row.RoutingKey, to)
			}
		}
	}
	for _, q := range sortedKeys(s.DLQ) {
		if n := s.DLQ[q]; n > 0 {
			bad("dead-letters", "%s holds %d message(s)", q, n)
		}
	}

	have := map[string]bool{}
	for _, sl := range s.Slots {
		have[sl.Name] = true
		if !contains(s.WantSlots, sl.Name) {
			bad("relayed", "slot %s is left behind", sl.Name)
			continue
		}
		if sl.Behind > 0 {
			bad("relayed", "slot %s is %d bytes behind the WAL: the outbox was not fully relayed", sl.Name, sl.Behind)
		}
	}
	for _, name := range s.WantSlots {
		if !have[name] {
			bad("relayed", "slot %s is missing", name)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orNone(ok bool, s string) string {
	if !ok {
		return "none"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
