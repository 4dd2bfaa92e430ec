package outbox

import (
	"bytes"
	"encoding/json"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reference is the mapping of Headers done with encoding/json: the scanner
// must agree with it on every input.
func reference(raw []byte) (amqp.Table, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, false
	}
	t := amqp.Table{}
	for k, v := range obj {
		v = bytes.TrimSpace(v)
		switch v[0] {
		case '"':
			var s string
			if json.Unmarshal(v, &s) != nil {
				return nil, false
			}
			t[k] = s
		case 't', 'f':
			t[k] = v[0] == 't'
		case 'n':
			t[k] = nil
		case '{', '[':
			var buf bytes.Buffer
			if json.Compact(&buf, v) != nil {
				return nil, false
			}
			t[k] = buf.String()
		default:
			var n json.Number
			if json.Unmarshal(v, &n) != nil {
				return nil, false
			}
			if i, err := n.Int64(); err == nil {
				t[k] = i
			} else if f, err := n.Float64(); err == nil {
				t[k] = f
			} else {
				return nil, false
			}
		}
	}
	return t, true
}

var scannerCases = []string{
	`{}`, ` { } `, `{"a":"x"}`, `{"a": "x", "b": 1, "c": -2.5e3, "d": true, "e": false, "f": null}`,
	`{"esc": "line\nbreak \"quoted\" \u00e9 \\ /"}`, `{"k\"ey": 1}`, `{"nested": {"a": [1, {"b": "}]"}], "c": "x"}}`,
	`{"arr": [ 1 , 2 ]}`, `{"big": 92233720368547758070}`, `{"neg": -9223372036854775808}`, `{"dup": 1, "dup": 2}`,
	`{"a":1,}`, `{"a" 1}`, `{"a":}`, `{"a":tru}`, `{"a":1} x`, `[1]`, `"s"`, `{`, `{"a":"unterminated}`,
	`{"a":[1,2}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":"ctl` + "\x01" + `"}`, `{"a":1e400}`, `null`,
}

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range scannerCases {
		t.Run(in, func(t *testing.T) { checkAgainstReference(t, []byte(in)) })
	}
}

func checkAgainstReference(t *testing.T, raw []byte) {
	want, ok := reference(raw)
	got := amqp.Table{}
	err := headersTable(raw, got)
	if !ok {
		assert.Error(t, err, "accepted what encoding/json refuses: %q", raw)
		return
	}
	require.NoError(t, err, "refused what encoding/json accepts: %q", raw)
	assert.Equal(t, want, got)
}

func FuzzHeadersScanner(f *testing.F) {
	for _, in := range scannerCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkAgainstReference(t, raw) })
}
