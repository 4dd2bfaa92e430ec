package app

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDecide(t *testing.T) {
	for amount, want := range map[string]Status{
		"0": StatusConfirmed, "1": StatusConfirmed, "10": StatusConfirmed, "50": StatusConfirmed, "0.5": StatusConfirmed,
		"999": StatusConfirmed, "999.99": StatusConfirmed, "999.999999": StatusConfirmed,
		"1000": StatusDenied, "1000.00": StatusDenied, "1000.0001": StatusDenied, "1001": StatusDenied, "99999": StatusDenied,
	} {
		got, err := Decide(amount)
		assert.NoError(t, err, amount)
		assert.Equal(t, want, got, amount)
	}
	for _, bad := range []string{"", "abc", "1e3", "1,000"} {
		_, err := Decide(bad)
		assert.EqualError(t, err, `amount "`+bad+`" is not a decimal number`)
	}
}
