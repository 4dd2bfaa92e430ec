package platform

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOrderID(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{`1`, "1", true},
		{`"42"`, "42", true},
		{` 7 `, "7", true},
		{`"007"`, "7", true},
		{``, "", false},
		{`null`, "", false},
		{`0`, "", false},
		{`-1`, "", false},
		{`1.5`, "", false},
		{`"abc"`, "", false},
		{`true`, "", false},
		{`{}`, "", false},
		{`"1`, "", false},
		{`99999999999999999999`, "", false},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := OrderID(json.RawMessage(tc.raw))
			if !tc.ok {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrUnprocessable)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		err       bool
	}{
		{`"a b"`, "a b", false},
		{`1000.00`, "1000.00", false},
		{`-5`, "-5", false},
		{`1e3`, "1e3", false},
		{``, "", true},
		{`true`, "", true},
		{`[1]`, "", true},
		{`"x`, "", true},
		{`-`, "", true},
	} {
		got, err := Text(json.RawMessage(tc.raw))
		if tc.err {
			assert.Error(t, err, tc.raw)
			continue
		}
		assert.NoError(t, err, tc.raw)
		assert.Equal(t, tc.want, got, tc.raw)
	}
}

func TestOrderIDValue(t *testing.T) {
	assert.Equal(t, int64(12), OrderIDValue("12"))
	assert.Equal(t, "A-1", OrderIDValue("A-1"))
}

func TestDecodeBodyAndStringField(t *testing.T) {
	for _, body := range []string{`x`, `null`, `[1]`, `"s"`, ``} {
		_, err := DecodeBody([]byte(body))
		assert.ErrorIs(t, err, ErrUnprocessable, body)
	}
	m, err := DecodeBody([]byte(`{"status": "reserved", "n": 1}`))
	require.NoError(t, err)
	s, err := StringField(m, "status")
	require.NoError(t, err)
	assert.Equal(t, "reserved", s)
	_, err = StringField(m, "n")
	assert.EqualError(t, err, "unprocessable message: n is not a string")
	_, err = StringField(m, "missing")
	assert.EqualError(t, err, "unprocessable message: missing is missing")
}

func TestParseDecimal(t *testing.T) {
	for s, ok := range map[string]bool{
		"1": true, "1000.00": true, ".5": true, "5.": true, "+3": true, "-2": true,
		"": false, "abc": false, "1e3": false, "1/2": false, "0x10": false, "1 000": false, "NaN": false,
	} {
		_, got := ParseDecimal(s)
		assert.Equal(t, ok, got, s)
	}
	r, _ := ParseDecimal("999.99")
	assert.Equal(t, "99999/100", r.String())
}

func TestUnprocessable(t *testing.T) {
	err := Unprocessable("unknown order %d", 9)
	assert.True(t, errors.Is(err, ErrUnprocessable))
	assert.Equal(t, "unprocessable message: unknown order 9", err.Error())
}
