package app

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/saga-cdc/saga/services/internal/platform"
)

func body(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       NewOrder
		errs       platform.FieldErrors
	}{
		{"numbers become strings", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`,
			NewOrder{CustomerID: "1", ProductID: "1", Amount: "1", Quantity: 1}, nil},
		{"literal kept", `{"customer_id": "c", "product_id": "p", "amount": 1000.00}`,
			NewOrder{CustomerID: "c", ProductID: "p", Amount: "1000.00"}, nil},
		{"trimmed, quantity string, order_id ignored, status created", `{"customer_id": " c ", "product_id": "p", "amount": " 2.5 ", "quantity": "3", "order_id": 9, "status": "created"}`,
			NewOrder{CustomerID: "c", ProductID: "p", Amount: "2.5", Quantity: 3}, nil},
		{"quantity 5.0 is 5", `{"customer_id": 1, "product_id": 1, "amount": 0, "quantity": 5.0}`,
			NewOrder{CustomerID: "1", ProductID: "1", Amount: "0", Quantity: 5}, nil},
		{"max quantity", `{"customer_id": 1, "product_id": 1, "amount": 0, "quantity": 2147483647}`,
			NewOrder{CustomerID: "1", ProductID: "1", Amount: "0", Quantity: 2147483647}, nil},
		{"missing", `{}`, NewOrder{}, platform.FieldErrors{"customer_id": {msgRequired}, "product_id": {msgRequired}, "amount": {msgRequired}}},
		{"nulls", `{"customer_id": null, "product_id": null, "amount": null, "quantity": null, "status": null}`, NewOrder{},
			platform.FieldErrors{"customer_id": {msgNull}, "product_id": {msgNull}, "amount": {msgNull}, "quantity": {msgNull}, "status": {msgNull}}},
		{"blank and wrong types", `{"customer_id": "", "product_id": true, "amount": [1]}`, NewOrder{},
			platform.FieldErrors{"customer_id": {msgBlank}, "product_id": {msgNotText}, "amount": {msgNotText}}},
		{"too long", `{"customer_id": "ééééééééééééééééééééé", "product_id": 1, "amount": 1}`, NewOrder{},
			platform.FieldErrors{"customer_id": {msgTooLong}}},
		{"twenty characters fit", `{"customer_id": "éééééééééééééééééééé", "product_id": 1, "amount": 1}`,
			NewOrder{CustomerID: "éééééééééééééééééééé", ProductID: "1", Amount: "1"}, nil},
		{"amount", `{"customer_id": 1, "product_id": 1, "amount": "abc"}`, NewOrder{}, platform.FieldErrors{"amount": {msgNumber}}},
		{"amount exponent", `{"customer_id": 1, "product_id": 1, "amount": 1e3}`, NewOrder{}, platform.FieldErrors{"amount": {msgNumber}}},
		{"negative amount", `{"customer_id": 1, "product_id": 1, "amount": "-0.01"}`, NewOrder{}, platform.FieldErrors{"amount": {msgMin0}}},
		{"quantity x", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": "x"}`, NewOrder{}, platform.FieldErrors{"quantity": {msgInteger}}},
		{"quantity fraction", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1.5}`, NewOrder{}, platform.FieldErrors{"quantity": {msgInteger}}},
		{"quantity bool", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": true}`, NewOrder{}, platform.FieldErrors{"quantity": {msgInteger}}},
		{"negative quantity", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": -1}`, NewOrder{}, platform.FieldErrors{"quantity": {msgMin0}}},
		{"huge quantity", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 99999999999999999999999}`, NewOrder{}, platform.FieldErrors{"quantity": {msgMaxInt}}},
		{"quantity text too long", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": "` + repeat("1", 1001) + `"}`, NewOrder{}, platform.FieldErrors{"quantity": {msgIntLarge}}},
		{"status bogus", `{"customer_id": 1, "product_id": 1, "amount": 1, "status": "bogus"}`, NewOrder{}, platform.FieldErrors{"status": {`"bogus" is not a valid choice.`}}},
		{"status reserved", `{"customer_id": 1, "product_id": 1, "amount": 1, "status": "reserved"}`, NewOrder{}, platform.FieldErrors{"status": {`"reserved" is not a valid choice.`}}},
		{"status number", `{"customer_id": 1, "product_id": 1, "amount": 1, "status": 1}`, NewOrder{}, platform.FieldErrors{"status": {`"1" is not a valid choice.`}}},
		{"status object", `{"customer_id": 1, "product_id": 1, "amount": 1, "status": {}}`, NewOrder{}, platform.FieldErrors{"status": {`"{}" is not a valid choice.`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := Validate(body(t, tc.body))
			assert.Equal(t, tc.errs, errs)
			assert.Equal(t, tc.want, got)
		})
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestNext(t *testing.T) {
	all := []Status{StatusCreated, StatusReserved, StatusNotReserved, StatusPaymentConfirmed, StatusPaymentDenied}
	allowed := map[[2]Status]bool{
		{StatusCreated, StatusReserved}:          true,
		{StatusCreated, StatusNotReserved}:       true,
		{StatusReserved, StatusPaymentConfirmed}: true,
		{StatusReserved, StatusPaymentDenied}:    true,
	}
	for _, cur := range all {
		for _, in := range all {
			assert.Equal(t, allowed[[2]Status{cur, in}], Next(cur, in), "%s → %s", cur, in)
		}
		assert.False(t, Next(cur, "bogus"))
	}
}

func TestStatusValid(t *testing.T) {
	for _, s := range []Status{StatusCreated, StatusReserved, StatusNotReserved, StatusPaymentConfirmed, StatusPaymentDenied} {
		assert.True(t, s.Valid())
	}
	assert.False(t, Status("shipped").Valid())
	assert.False(t, Status("").Valid())
}
