package chaos

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// kept is a small system that kept every promise: a confirmed order, a
// denied one and one out of stock, with their messages.
func kept() State {
	return State{
		Orders: []Order{
			{ID: "1", CustomerID: "c1", ProductID: "p", Quantity: 2, Amount: "10", Status: PaymentConfirmed},
			{ID: "2", CustomerID: "c2", ProductID: "p", Quantity: 1, Amount: "5000", Status: PaymentDenied},
			{ID: "3", CustomerID: "c3", ProductID: "p", Quantity: 100000, Amount: "10", Status: NotReserved},
		},
		Reservations: []Reservation{
			{OrderID: "1", ProductID: "p", Quantity: 2, Status: PaymentConfirmed},
			{OrderID: "2", ProductID: "p", Quantity: 1, Status: PaymentDenied},
			{OrderID: "3", ProductID: "p", Quantity: 100000, Status: NotReserved},
		},
		Payments:     []Payment{{OrderID: "1", Status: PaymentConfirmed}, {OrderID: "2", Status: PaymentDenied}},
		InitialStock: map[string]int{"p": 10},
		Stock:        map[string]int{"p": 8},
		Scenarios:    map[string]Scenario{"c1": ScenarioConfirm, "c2": ScenarioDenied, "c3": ScenarioOutOfStock},
		Outbox: map[string][]OutboxRow{
			"order": {{ID: "m1", AggregateID: "1", RoutingKey: "stock.v1"}, {ID: "m2", AggregateID: "1", RoutingKey: "payment.v1"}},
			"stock": {{ID: "m3", AggregateID: "1", RoutingKey: "order.v1"}},
		},
		Inbox: map[string]map[string]bool{
			"stock": {"m1": true}, "payment": {"m2": true}, "order": {"m3": true},
		},
		Consumers: map[string]string{"stock.v1": "stock", "payment.v1": "payment", "order.v1": "order"},
		DLQ:       map[string]int{"DLQ.order.v1": 0},
		Slots:     []Slot{{Name: "s_order"}, {Name: "s_stock"}},
		WantSlots: []string{"s_order", "s_stock"},
	}
}

// Every invariant fails when the system breaks it: each case breaks one
// the way a real fault would, and Check must name that invariant.
func TestEachInvariantCatchesItsBreak(t *testing.T) {
	tests := []struct {
		name      string
		brk       func(*State)
		invariant string
		detail    string
	}{
		{"a saga stuck half way (a lost order.v1 message)", func(s *State) { s.Orders[0].Status = "reserved" },
			"terminal", "order 1 (confirm) is reserved, want payment_confirmed"},
		{"an order the run never placed", func(s *State) { s.Orders[2].CustomerID = "stranger" },
			"terminal", "not placed by the run"},
		{"a retried POST made a second order", func(s *State) {
			dup := s.Orders[0]
			dup.ID = "99"
			s.Orders = append(s.Orders, dup)
		}, "once", "customer c1 placed one order and has 2"},
		{"a placed order missing (a POST answered 201 for a rolled back insert)", func(s *State) {
			s.Orders, s.Reservations, s.Payments = s.Orders[1:], s.Reservations[1:], s.Payments[1:]
		}, "once", "the order of customer c1 was placed and is not in the orders table"},
		{"a denied order confirmed", func(s *State) { s.Orders[1].Status = PaymentConfirmed },
			"terminal", "order 2 (denied) is payment_confirmed"},
		{"reservation behind its order", func(s *State) { s.Reservations[0].Status = "reserved" },
			"agreement", "order 1 is payment_confirmed, its reservation reserved"},
		{"payment disagrees", func(s *State) { s.Payments[0].Status = PaymentDenied },
			"agreement", "its payment payment_denied"},
		{"confirmed without a payment", func(s *State) { s.Payments = s.Payments[1:] },
			"agreement", "order 1 is payment_confirmed without a payment"},
		{"not reserved without its reservation", func(s *State) { s.Reservations = s.Reservations[:2] },
			"agreement", "order 3 is not_reserved, its reservation none"},
		{"stock not given back after a denied payment", func(s *State) { s.Stock["p"] = 7 },
			"stock", "product p: 7 in stock, want 8"},
		{"negative stock", func(s *State) { s.Stock["p"] = -1 },
			"stock", "product p has -1 in stock"},
		{"two payments (a duplicate handled twice)", func(s *State) { s.Payments = append(s.Payments, Payment{OrderID: "1", Status: PaymentConfirmed}) },
			"payment", "order 1 has 2 payments"},
		{"a payment for an order never reserved", func(s *State) { s.Payments = append(s.Payments, Payment{OrderID: "3", Status: PaymentDenied}) },
			"payment", "order 3 has a payment but was never reserved"},
		{"a consumer that acked before commit, then crashed (message lost)", func(s *State) { delete(s.Inbox["stock"], "m1") },
			"delivery", "order's message m1 (order 1, stock.v1) never reached stock"},
		{"a message in a dead-letter queue", func(s *State) { s.DLQ["DLQ.order.v1"] = 3 },
			"dead-letters", "DLQ.order.v1 holds 3 message(s)"},
		{"a relay behind the outbox", func(s *State) { s.Slots[1].Behind = 4096 },
			"relayed", "slot s_stock is 4096 bytes behind the WAL"},
		{"a slot left behind", func(s *State) { s.Slots = append(s.Slots, Slot{Name: "forgotten"}) },
			"relayed", "slot forgotten is left behind"},
		{"a slot missing", func(s *State) { s.Slots = s.Slots[:1] },
			"relayed", "slot s_stock is missing"},
	}
	assert.Empty(t, Check(kept()), "the kept system")
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := kept()
			tt.brk(&s)
			got := Check(s)
			found := false
			for _, v := range got {
				if v.Invariant == tt.invariant && strings.Contains(v.Detail, tt.detail) {
					found = true
				}
			}
			assert.True(t, found, "want %s: %q in %v", tt.invariant, tt.detail, got)
			covered[tt.invariant] = true
		})
	}
	for _, inv := range Invariants {
		assert.True(t, covered[inv], "no case breaks invariant %s", inv)
	}
}

// On a product that may run out, a confirm or denied order may end
// not_reserved; elsewhere it may not.
func TestLimitedProductsMayRunOut(t *testing.T) {
	s := kept()
	s.Orders[0].Status, s.Reservations[0].Status = NotReserved, NotReserved
	s.Payments = s.Payments[1:]
	s.Stock["p"] = 10
	assert.NotEmpty(t, Check(s))
	s.Limited = map[string]bool{"p": true}
	assert.Empty(t, Check(s))
}
