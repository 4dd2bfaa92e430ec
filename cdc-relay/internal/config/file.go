package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// fileConfig is the config file of the multi-database mode: one process,
// one relay per database (docs/contracts.md, "Relay configuration"). JSON, so
// it needs no parser beyond the standard library; "${VAR}" in a value is
// replaced by the environment variable VAR, so URLs with secrets can come
// from Kubernetes Secrets as environment variables rather than sit in the
// file.
//
//	{"databases": [
//	  {"name": "order", "database_url": "${ORDER_DATABASE_URL}", "slot": "cdc_relay_order"},
//	  {"name": "stock", "database_url": "${STOCK_DATABASE_URL}", "slot": "cdc_relay_stock", "exchange": "saga"}
//	]}
//
// Fields left out take the value of the environment (CDC_RELAY_*) or flags.
// The HTTP address, heartbeat interval and logging are per process.
type fileConfig struct {
	Databases []fileDatabase `json:"databases"`
}

type fileDatabase struct {
	Name        string `json:"name"`
	DatabaseURL string `json:"database_url"`
	AMQPURL     string `json:"amqp_url"`
	Slot        string `json:"slot"`
	Publication string `json:"publication"`
	Table       string `json:"table"`
	Exchange    string `json:"exchange"`
	MaxInFlight int    `json:"max_in_flight"`
}

// fileKeys maps a Config error's flag to the file's key.
var fileKeys = map[string]string{
	"database-url": "database_url", "amqp-url": "amqp_url", "slot": "slot", "publication": "publication",
	"table": "table", "exchange": "exchange", "max-in-flight": "max_in_flight",
}

// LoadFile reads the config file at path; base holds the environment's values.
func LoadFile(path string, base Config, getenv func(string) string) ([]Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Env: "CDC_RELAY_CONFIG", Flag: "config", Problem: err.Error()}
	}
	return parseFile(path, b, base, getenv)
}

func parseFile(path string, b []byte, base Config, getenv func(string) string) ([]Config, error) {
	var f fileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, &Error{Where: path, Problem: "not a valid config file: " + err.Error()}
	}
	if len(f.Databases) == 0 {
		return nil, &Error{Where: path, Problem: `lists no databases: {"databases": [{"database_url": "...", "slot": "..."}]}`}
	}
	var (
		out   []Config
		errs  []error
		slots = map[string]string{}
		names = map[string]bool{}
	)
	for i, d := range f.Databases {
		c := base
		// A reference to a variable that is unset or empty is an error, not
		// an empty value: falling back to the environment's value would
		// relay the base database twice under two names.
		var unset []string
		expand := func(key, s string) string {
			return os.Expand(s, func(name string) string {
				v := getenv(name)
				if v == "" {
					unset = append(unset, fmt.Sprintf("%s: ${%s} is unset or empty", key, name))
				}
				return v
			})
		}
		set := func(dst *string, key, v string) {
			if v = expand(key, v); v != "" {
				*dst = v
			}
		}
		set(&c.DatabaseURL, "database_url", d.DatabaseURL)
		set(&c.AMQPURL, "amqp_url", d.AMQPURL)
		set(&c.Slot, "slot", d.Slot)
		set(&c.Publication, "publication", d.Publication)
		set(&c.Exchange, "exchange", d.Exchange)
		if d.MaxInFlight != 0 {
			c.MaxInFlight = d.MaxInFlight
		}
		c.Name = expand("name", d.Name)
		if c.Name == "" {
			c.Name = c.Slot
		}
		table := expand("table", d.Table)
		where := fmt.Sprintf("%s: databases[%d] (%s)", path, i, c.Name)
		if len(unset) > 0 {
			for _, u := range unset {
				key, problem, _ := strings.Cut(u, ": ")
				errs = append(errs, &Error{Where: where + "." + key, Problem: problem})
			}
			continue
		}
		if d.Table != "" {
			t, err := ParseTable(table)
			if err != nil {
				errs = append(errs, &Error{Where: where + ".table", Problem: err.Error()})
				continue
			}
			c.Table = t
		}
		if err := c.Validate(); err != nil {
			errs = append(errs, inFile(err, where))
			continue
		}
		if prev, dup := slots[c.Slot]; dup {
			errs = append(errs, &Error{Where: where + ".slot", Problem: fmt.Sprintf("slot %q is also the slot of %s: slot names label the metrics, so each must be unique", c.Slot, prev)})
			continue
		}
		if names[c.Name] {
			errs = append(errs, &Error{Where: where + ".name", Problem: fmt.Sprintf("name %q is used twice", c.Name)})
			continue
		}
		slots[c.Slot], names[c.Name] = c.Name, true
		out = append(out, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// inFile points Validate's errors at the file's keys where the value can come from the file.
func inFile(err error, where string) error {
	var joined interface{ Unwrap() []error }
	list := []error{err}
	if errors.As(err, &joined) {
		list = joined.Unwrap()
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var ce *Error
		if errors.As(e, &ce) {
			if key, ok := fileKeys[ce.Flag]; ok {
				ce = &Error{Env: ce.Env, Flag: ce.Flag, Problem: ce.Problem + " (or set " + ce.Env + ")", Where: where + "." + key}
			}
			out = append(out, ce)
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
