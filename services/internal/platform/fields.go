package platform

import (
	"bytes"
	"encoding/json"
	"math/big"
	"regexp"
	"strconv"
)

// OrderID reads an order id from a message: it comes as a JSON number or as a
// string (docs/contracts.md, "Messaging contract"), and both must be
// accepted. The result is the id's decimal text, as stock and payment store
// it.
func OrderID(raw json.RawMessage) (string, error) {
	s, err := Text(raw)
	if err != nil {
		return "", Unprocessable("order_id: %v", err)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return "", Unprocessable("order_id: %q is not a positive integer", s)
	}
	return strconv.FormatInt(n, 10), nil
}

// Text reads a JSON string, or a JSON number as its literal text (the HTTP
// contract stores numbers as strings). Anything else is an error.
func Text(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "", errMissing
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", err
		}
		return n.String(), nil
	default:
		return "", errNotText
	}
}

// OrderIDValue is how an order id goes into a message: a JSON number, as the
// original demo's Payment sent it (docs/origin.md), when the stored text is
// an integer.
func OrderIDValue(id string) any {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		return n
	}
	return id
}

type fieldError string

func (e fieldError) Error() string { return string(e) }

const (
	errMissing fieldError = "missing"
	errNotText fieldError = "not a string or a number"
)

// DecodeBody decodes a message body that must be a JSON object.
func DecodeBody(body []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, Unprocessable("body is not a JSON object")
	}
	return m, nil
}

// StringField reads a required JSON string member of a message.
func StringField(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", Unprocessable("%s is missing", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", Unprocessable("%s is not a string", name)
	}
	return s, nil
}

// decimalText is what an amount must look like: digits with an optional
// fraction and sign, no exponent (which would let "1e999999999" cost a
// big.Rat its memory).
var decimalText = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)$`)

// ParseDecimal parses an amount such as "1", "1000.00" or ".5" exactly.
func ParseDecimal(s string) (*big.Rat, bool) {
	if !decimalText.MatchString(s) {
		return nil, false
	}
	return new(big.Rat).SetString(s)
}
