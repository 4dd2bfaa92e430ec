package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The headers column is decoded on every row, and encoding/json's reflection
// and map building was most of the relay's per-row CPU. headersTable scans
// the one shape it must accept, a JSON object, directly into the AMQP table,
// and falls back to encoding/json only for what it does not take apart
// itself (strings with escapes, numbers that are not plain integers).

var errNotObject = errors.New("not a JSON object")

// headersTable parses raw (a JSON object) into t.
func headersTable(raw []byte, t amqp.Table) error {
	s := scanner{b: raw}
	s.space()
	if !s.eat('{') {
		return errNotObject
	}
	s.space()
	if s.eat('}') {
		return s.end()
	}
	for {
		s.space()
		key, err := s.str()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		s.space()
		if !s.eat(':') {
			return fmt.Errorf("header %q: want ':'", key)
		}
		s.space()
		v, err := s.value()
		if err != nil {
			return fmt.Errorf("header %q: %w", key, err)
		}
		t[key] = v
		s.space()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return s.end()
		}
		return fmt.Errorf("header %q: want ',' or '}'", key)
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) end() error {
	s.space()
	if s.i != len(s.b) {
		return errors.New("data after the object")
	}
	return nil
}

// str reads a JSON string; escapes go through encoding/json.
func (s *scanner) str() (string, error) {
	if !s.eat('"') {
		return "", errors.New("want a string")
	}
	start, escaped := s.i, false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c == '"':
			s.i++
			// encoding/json replaces invalid UTF-8 with U+FFFD: so must we.
			if !escaped && utf8.Valid(s.b[start:s.i-1]) {
				return string(s.b[start : s.i-1]), nil
			}
			var out string
			err := json.Unmarshal(s.b[start-1:s.i], &out)
			return out, err
		case c < 0x20:
			return "", errors.New("control character in string")
		}
		s.i++
	}
	return "", errors.New("unterminated string")
}

// value reads one value: strings, numbers, booleans and null as AMQP values,
// objects and arrays as their compact JSON text.
func (s *scanner) value() (any, error) {
	if s.i >= len(s.b) {
		return nil, errors.New("want a value")
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{' || c == '[':
		start := s.i
		if err := s.skipNested(); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, s.b[start:s.i]); err != nil {
			return nil, err
		}
		return buf.String(), nil
	case c == 't':
		return true, s.word("true")
	case c == 'f':
		return false, s.word("false")
	case c == 'n':
		return nil, s.word("null")
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		for s.i < len(s.b) && bytes.IndexByte([]byte("+-.eE0123456789"), s.b[s.i]) >= 0 {
			s.i++
		}
		num := string(s.b[start:s.i])
		if jsonInt(num) {
			if i, err := strconv.ParseInt(num, 10, 64); err == nil {
				return i, nil
			}
		}
		var n json.Number
		if err := json.Unmarshal(s.b[start:s.i], &n); err != nil {
			return nil, fmt.Errorf("bad number %q", num)
		}
		return n.Float64()
	}
	return nil, fmt.Errorf("unexpected %q", s.b[s.i])
}

func (s *scanner) word(w string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		return fmt.Errorf("want %s", w)
	}
	s.i += len(w)
	return nil
}

// skipNested moves past one object or array, minding strings.
func (s *scanner) skipNested() error {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			if _, err := s.str(); err != nil {
				return err
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return nil
			}
		}
		s.i++
	}
	return errors.New("unterminated object or array")
}

// jsonInt reports whether s is a JSON integer: -?(0|[1-9][0-9]*).
func jsonInt(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
