package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

func TestParseAllReadsAConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relays.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"databases": [
		{"name": "order", "database_url": "${ORDER_URL}", "slot": "relay_order"},
		{"database_url": "postgres://h/stock", "slot": "relay_stock", "exchange": "other", "table": "app.outbox", "max_in_flight": 10}
	]}`), 0o600))
	getenv := env(map[string]string{
		"CDC_RELAY_CONFIG":   path,
		"CDC_RELAY_AMQP_URL": "amqp://guest:guest@rabbit:5672/",
		"ORDER_URL":          "postgres://u:secret@h/order",
	})
	cs, err := ParseAll("cdc-relay run", []string{"--http-addr", "127.0.0.1:9999"}, getenv, io.Discard)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	assert.Equal(t, "order", cs[0].Name)
	assert.Equal(t, "postgres://u:secret@h/order", cs[0].DatabaseURL, "${VAR} expanded from the environment")
	assert.Equal(t, "relay_order", cs[0].Slot)
	assert.Equal(t, "saga", cs[0].Exchange, "the environment's default where the file is silent")
	assert.Equal(t, "127.0.0.1:9999", cs[0].HTTPAddr)
	assert.Equal(t, "relay_stock", cs[1].Name, "the slot names an unnamed entry")
	assert.Equal(t, "other", cs[1].Exchange)
	assert.Equal(t, Table{Schema: "app", Name: "outbox"}, cs[1].Table)
	assert.Equal(t, 10, cs[1].MaxInFlight)
	assert.Equal(t, "amqp://guest:guest@rabbit:5672/", cs[1].AMQPURL)
}

func TestParseAllWithoutAFileIsTheSidecarMode(t *testing.T) {
	cs, err := ParseAll("cdc-relay run", nil, env(required), io.Discard)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	assert.Equal(t, "cdc_relay", cs[0].Slot)
}

func TestConfigFileErrorsNameTheEntry(t *testing.T) {
	base := Config{AMQPURL: "amqp://h/", Slot: "cdc_relay", Publication: "p", Table: Table{"public", "outbox"},
		Exchange: "saga", HTTPAddr: ":9400", MaxInFlight: 1, Channels: 1, HeartbeatInterval: 10e9, LogFormat: "json", Poison: PoisonStop, Unroutable: UnroutableHold, SlotFailover: FailoverAuto, Headers: outbox.AllGroups}
	tests := []struct {
		name, file string
		want       []string
	}{
		{"not JSON", `databases:`, []string{"relays.json: not a valid config file"}},
		{"unknown key", `{"databases": [{"database_uri": "x"}]}`, []string{`unknown field "database_uri"`}},
		{"no databases", `{"databases": []}`, []string{"lists no databases"}},
		{"missing URL", `{"databases": [{"name": "a", "slot": "s1"}]}`, []string{"relays.json: databases[0] (a).database_url: is required", "(or set CDC_RELAY_DATABASE_URL)"}},
		{"unset variable", `{"databases": [{"name": "a", "slot": "s1", "database_url": "${NOPE}"}]}`, []string{"databases[0] (a).database_url: ${NOPE} is unset or empty"}},
		{"empty variable in a URL", `{"databases": [{"name": "a", "slot": "s1", "database_url": "postgres://u:${EMPTY}@h/a"}]}`, []string{"databases[0] (a).database_url: ${EMPTY} is unset or empty"}},
		{"unset variable in the slot", `{"databases": [{"name": "a", "slot": "${SLOT_A}", "database_url": "postgres://h/a"}]}`, []string{"databases[0] (a).slot: ${SLOT_A} is unset or empty"}},
		{"bad slot", `{"databases": [{"database_url": "postgres://h/a", "slot": "Bad"}]}`, []string{"databases[0] (Bad).slot:", `"Bad" is not a slot name`}},
		{"bad table", `{"databases": [{"database_url": "postgres://h/a", "slot": "s", "table": "x y"}]}`, []string{"databases[0] (s).table:"}},
		{"duplicate slot", `{"databases": [{"database_url": "postgres://h/a"}, {"database_url": "postgres://h/b"}]}`, []string{"databases[1] (cdc_relay).slot: slot \"cdc_relay\" is also the slot of cdc_relay"}},
		{"duplicate name", `{"databases": [{"name": "x", "database_url": "postgres://h/a", "slot": "a"}, {"name": "x", "database_url": "postgres://h/b", "slot": "b"}]}`, []string{`name "x" is used twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFile("relays.json", []byte(tt.file), base, env(map[string]string{"EMPTY": ""}))
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.json"), base, env(nil))
	require.ErrorContains(t, err, "CDC_RELAY_CONFIG (--config)")
	_, err = Parse("cdc-relay run", []string{"--config", "x.json"}, env(required), io.Discard)
	require.ErrorContains(t, err, "relays one database")
}

// An unset variable must not fall back to the environment's database: two
// entries would then relay the same database under two names.
func TestConfigFileUnsetVariableDoesNotFallBackToTheBase(t *testing.T) {
	base := Config{DatabaseURL: "postgres://h/base", AMQPURL: "amqp://h/", Slot: "cdc_relay", Publication: "p",
		Table: Table{"public", "outbox"}, Exchange: "saga", HTTPAddr: ":9400", MaxInFlight: 1, Channels: 1, HeartbeatInterval: 10e9, LogFormat: "json", Poison: PoisonStop, Unroutable: UnroutableHold, SlotFailover: FailoverAuto, Headers: outbox.AllGroups}
	file := `{"databases": [
		{"name": "order", "database_url": "${ORDER_URL}", "slot": "relay_order"},
		{"name": "stock", "database_url": "${STOCK_URL}", "slot": "relay_stock"}
	]}`
	_, err := parseFile("relays.json", []byte(file), base, env(map[string]string{"ORDER_URL": "postgres://h/order"}))
	require.Error(t, err)
	assert.Equal(t, "config file relays.json: databases[1] (stock).database_url: ${STOCK_URL} is unset or empty", err.Error())
}
