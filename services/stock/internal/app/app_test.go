package app

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func ptr(n int) *int { return &n }

func TestDecide(t *testing.T) {
	reserved := &Reservation{OrderID: "1", ProductID: "1", Quantity: 3, Status: StatusReserved}
	for _, tc := range []struct {
		name      string
		ev        OrderEvent
		res       *Reservation
		available *int
		want      Decision
	}{
		{"reserve", OrderEvent{Status: OrderCreated, Quantity: 3}, nil, ptr(10), Decision{Action: Create, Status: StatusReserved, StockDelta: -3}},
		{"reserve all", OrderEvent{Status: OrderCreated, Quantity: 10}, nil, ptr(10), Decision{Action: Create, Status: StatusReserved, StockDelta: -10}},
		{"reserve zero", OrderEvent{Status: OrderCreated, Quantity: 0}, nil, ptr(0), Decision{Action: Create, Status: StatusReserved}},
		{"not enough", OrderEvent{Status: OrderCreated, Quantity: 11}, nil, ptr(10), Decision{Action: Create, Status: StatusNotReserved}},
		{"unknown product", OrderEvent{Status: OrderCreated, Quantity: 1}, nil, nil, Decision{Action: Create, Status: StatusNotReserved}},
		{"created again", OrderEvent{Status: OrderCreated, Quantity: 1}, reserved, ptr(10), Decision{Reason: "order already has a reservation"}},
		{"compensate", OrderEvent{Status: OrderPaymentDenied}, reserved, ptr(7), Decision{Action: Update, Status: StatusPaymentDenied, StockDelta: 3}},
		{"compensate twice", OrderEvent{Status: OrderPaymentDenied}, &Reservation{Quantity: 3, Status: StatusPaymentDenied}, ptr(10), Decision{Reason: "no reserved reservation to compensate"}},
		{"compensate not reserved", OrderEvent{Status: OrderPaymentDenied}, &Reservation{Quantity: 11, Status: StatusNotReserved}, ptr(10), Decision{Reason: "no reserved reservation to compensate"}},
		{"compensate nothing", OrderEvent{Status: OrderPaymentDenied}, nil, ptr(10), Decision{Reason: "no reserved reservation to compensate"}},
		{"confirm", OrderEvent{Status: OrderPaymentConfirmed}, reserved, nil, Decision{Action: Update, Status: StatusPaymentConfirmed}},
		{"confirm twice", OrderEvent{Status: OrderPaymentConfirmed}, &Reservation{Status: StatusPaymentConfirmed}, nil, Decision{Reason: "no reserved reservation to confirm"}},
		{"confirm nothing", OrderEvent{Status: OrderPaymentConfirmed}, nil, nil, Decision{Reason: "no reserved reservation to confirm"}},
		{"echo reserved", OrderEvent{Status: OrderReserved}, reserved, nil, Decision{Reason: "status reserved needs no action from stock"}},
		{"echo not reserved", OrderEvent{Status: OrderNotReserved}, nil, nil, Decision{Reason: "status not_reserved needs no action from stock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Decide(tc.ev, tc.res, tc.available))
		})
	}
}
