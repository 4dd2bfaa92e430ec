// Package app is the order service's domain: validation of a new order
// (docs/contracts.md, "HTTP contract"), the forward-only status machine
// (docs/contracts.md, "Messaging contract"), and the use cases that change an
// order together with its outbox rows.
package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/saga-cdc/saga/services/internal/platform"
)

// Status is an order's status.
type Status string

// The five order statuses.
const (
	StatusCreated          Status = "created"
	StatusReserved         Status = "reserved"
	StatusNotReserved      Status = "not_reserved"
	StatusPaymentConfirmed Status = "payment_confirmed"
	StatusPaymentDenied    Status = "payment_denied"
)

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusCreated, StatusReserved, StatusNotReserved, StatusPaymentConfirmed, StatusPaymentDenied:
		return true
	}
	return false
}

// Next says whether an order in status cur moves to incoming. Orders move
// only forward: created → reserved | not_reserved, reserved →
// payment_confirmed | payment_denied. Anything else (an echo of the current
// status, a duplicate, a late or reordered message) is ignored, so no
// message can move an order back. The original demo (docs/origin.md) copied
// any differing status.
func Next(cur, incoming Status) bool {
	switch cur {
	case StatusCreated:
		return incoming == StatusReserved || incoming == StatusNotReserved
	case StatusReserved:
		return incoming == StatusPaymentConfirmed || incoming == StatusPaymentDenied
	}
	return false
}

// Order is an order as the API shows it.
type Order struct {
	OrderID    int64  `json:"order_id"`
	CustomerID string `json:"customer_id"`
	ProductID  string `json:"product_id"`
	Amount     string `json:"amount"`
	Quantity   int    `json:"quantity"`
	Status     Status `json:"status"`
}

// NewOrder is a validated POST body.
type NewOrder struct {
	CustomerID string
	ProductID  string
	Amount     string
	Quantity   int
	// IdempotencyKey is the request's Idempotency-Key header; "" for none.
	IdempotencyKey string
}

// IdempotencyKeyHeader is the request header that makes POST idempotent:
// a retry with the same key gets the order the first request created.
const IdempotencyKeyHeader = "Idempotency-Key"

// MaxIdempotencyKey is the longest key the orders table stores.
const MaxIdempotencyKey = 255

// CheckIdempotencyKey returns the field error for a key that is not 1 to
// MaxIdempotencyKey visible ASCII characters, or "".
func CheckIdempotencyKey(key string) string {
	if key == "" || len(key) > MaxIdempotencyKey {
		return fmt.Sprintf("Ensure this header has 1 to %d characters.", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "Use visible ASCII characters only (no spaces)."
		}
	}
	return ""
}

// sameRequest reports whether an order created earlier under the same
// idempotency key was asked for with the same fields as n.
func (o Order) sameRequest(n NewOrder) bool {
	return o.CustomerID == n.CustomerID && o.ProductID == n.ProductID && o.Amount == n.Amount && o.Quantity == n.Quantity
}

// Limits of the original demo's Django model (docs/origin.md):
// CharField(max_length=20), PositiveIntegerField.
const (
	maxChars    = 20
	maxQuantity = 2147483647
	// maxIntText is Django REST framework's IntegerField.MAX_STRING_LENGTH.
	maxIntText = 1000
)

// Messages of Django REST framework, which clients of the HTTP contract see.
const (
	msgRequired = "This field is required."
	msgNull     = "This field may not be null."
	msgBlank    = "This field may not be blank."
	msgNotText  = "Not a valid string."
	msgTooLong  = "Ensure this field has no more than 20 characters."
	msgInteger  = "A valid integer is required."
	msgIntLarge = "String value too large."
	msgMin0     = "Ensure this value is greater than or equal to 0."
	msgMaxInt   = "Ensure this value is less than or equal to 2147483647."
	msgNumber   = "A valid number is required."
)

// Validate checks a POST body (docs/contracts.md, "HTTP contract") and
// returns the new order or Django REST framework's field errors. order_id is
// ignored; status, if present, must be "created": the original demo let a
// client create an order already "reserved".
func Validate(body map[string]json.RawMessage) (NewOrder, platform.FieldErrors) {
	errs := platform.FieldErrors{}
	var o NewOrder
	o.CustomerID = text(errs, body, "customer_id")
	o.ProductID = text(errs, body, "product_id")
	o.Amount = text(errs, body, "amount")
	if _, failed := errs["amount"]; !failed {
		if r, ok := platform.ParseDecimal(o.Amount); !ok {
			errs.Add("amount", msgNumber)
		} else if r.Sign() < 0 {
			errs.Add("amount", msgMin0)
		}
	}
	o.Quantity = quantity(errs, body["quantity"])
	if raw, ok := body["status"]; ok {
		status(errs, raw)
	}
	if len(errs) > 0 {
		return NewOrder{}, errs
	}
	return o, nil
}

// text reads a required string field as Django REST framework's CharField
// does: numbers become their text, surrounding whitespace is trimmed.
func text(errs platform.FieldErrors, body map[string]json.RawMessage, field string) string {
	raw, ok := body[field]
	if !ok {
		errs.Add(field, msgRequired)
		return ""
	}
	if isNull(raw) {
		errs.Add(field, msgNull)
		return ""
	}
	s, err := platform.Text(raw)
	if err != nil {
		errs.Add(field, msgNotText)
		return ""
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		errs.Add(field, msgBlank)
	case utf8.RuneCountInString(s) > maxChars:
		errs.Add(field, msgTooLong)
	}
	return s
}

// integral strips a fraction of zeros, as Django REST framework does before
// parsing an integer ("5.0" is 5).
var integral = regexp.MustCompile(`\.0*\s*$`)

func quantity(errs platform.FieldErrors, raw json.RawMessage) int {
	if raw == nil {
		return 0
	}
	if isNull(raw) {
		errs.Add("quantity", msgNull)
		return 0
	}
	s, err := platform.Text(raw)
	if err != nil {
		errs.Add("quantity", msgInteger)
		return 0
	}
	if len(s) > maxIntText {
		errs.Add("quantity", msgIntLarge)
		return 0
	}
	n, ok := new(big.Int).SetString(strings.TrimSpace(integral.ReplaceAllString(s, "")), 10)
	switch {
	case !ok:
		errs.Add("quantity", msgInteger)
	case n.Sign() < 0:
		errs.Add("quantity", msgMin0)
	case n.Cmp(big.NewInt(maxQuantity)) > 0:
		errs.Add("quantity", msgMaxInt)
	default:
		return int(n.Int64())
	}
	return 0
}

func status(errs platform.FieldErrors, raw json.RawMessage) {
	if isNull(raw) {
		errs.Add("status", msgNull)
		return
	}
	s, err := platform.Text(raw)
	if err != nil {
		s = string(bytes.TrimSpace(raw))
	}
	if Status(s) != StatusCreated {
		errs.Add("status", fmt.Sprintf(`"%s" is not a valid choice.`, s))
	}
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
