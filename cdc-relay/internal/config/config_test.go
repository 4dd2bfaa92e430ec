package config

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

var required = map[string]string{
	"CDC_RELAY_DATABASE_URL": "postgres://relay:s3cret@db:5432/orders",
	"CDC_RELAY_AMQP_URL":     "amqp://guest:guest@rabbitmq:5672/",
}

func with(extra map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range required {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse("cdc-relay run", nil, env(required), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, Config{
		Name:              "cdc_relay",
		DatabaseURL:       required["CDC_RELAY_DATABASE_URL"],
		AMQPURL:           required["CDC_RELAY_AMQP_URL"],
		Slot:              "cdc_relay",
		Publication:       "cdc_relay_outbox",
		Table:             Table{Schema: "public", Name: "outbox"},
		Exchange:          "saga",
		HTTPAddr:          ":9400",
		MaxInFlight:       1000,
		Channels:          1,
		HeartbeatInterval: 10 * time.Second,
		LogFormat:         "json",
		LogLevel:          slog.LevelInfo,
		Poison:            "stop",
		Unroutable:        "hold",
		SlotFailover:      "auto",
		Headers:           outbox.AllGroups,
	}, c)
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	c, err := Parse("cdc-relay run",
		[]string{"--slot", "flag_slot", "--max-in-flight=50", "--table", "events.outbox", "--log-level", "debug"},
		env(with(map[string]string{"CDC_RELAY_SLOT": "env_slot", "CDC_RELAY_MAX_IN_FLIGHT": "7", "CDC_RELAY_EXCHANGE": "env_x"})), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "flag_slot", c.Slot)
	assert.Equal(t, 50, c.MaxInFlight)
	assert.Equal(t, Table{Schema: "events", Name: "outbox"}, c.Table)
	assert.Equal(t, "env_x", c.Exchange, "env applies where no flag is given")
	assert.Equal(t, slog.LevelDebug, c.LogLevel)

	c, err = Parse("cdc-relay run", []string{"--poison", "park", "--headers", "row, aggregate"}, env(required), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, PoisonPark, c.Poison)
	assert.Equal(t, outbox.GroupRow|outbox.GroupAggregate, c.Headers)
}

func TestParseErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // each must appear in the error
	}{
		{"missing URLs", map[string]string{}, nil, []string{"CDC_RELAY_DATABASE_URL (--database-url): is required", "CDC_RELAY_AMQP_URL (--amqp-url): is required"}},
		{"bad database URL", with(map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://u:pw@host:notaport/db"}), nil, []string{"CDC_RELAY_DATABASE_URL", "not a valid Postgres URL"}},
		{"amqp scheme", with(map[string]string{"CDC_RELAY_AMQP_URL": "http://rabbit"}), nil, []string{"CDC_RELAY_AMQP_URL", "amqp://"}},
		{"slot name", with(map[string]string{"CDC_RELAY_SLOT": "Bad-Slot"}), nil, []string{"CDC_RELAY_SLOT", `"Bad-Slot" is not a slot name`}},
		{"publication name", with(map[string]string{"CDC_RELAY_PUBLICATION": "a b"}), nil, []string{"CDC_RELAY_PUBLICATION"}},
		{"table name", with(map[string]string{"CDC_RELAY_TABLE": "public.out;drop"}), nil, []string{"CDC_RELAY_TABLE", "not a table name"}},
		{"empty exchange", with(nil), []string{"--exchange="}, []string{"CDC_RELAY_EXCHANGE", "1 to 255"}},
		{"http addr", with(map[string]string{"CDC_RELAY_HTTP_ADDR": "9400"}), nil, []string{"CDC_RELAY_HTTP_ADDR", "host:port"}},
		{"window not a number", with(map[string]string{"CDC_RELAY_MAX_IN_FLIGHT": "lots"}), nil, []string{"CDC_RELAY_MAX_IN_FLIGHT", `"lots" is not a whole number`}},
		{"window zero", with(map[string]string{"CDC_RELAY_MAX_IN_FLIGHT": "0"}), nil, []string{"CDC_RELAY_MAX_IN_FLIGHT", "out of range"}},
		{"window too big", with(nil), []string{"--max-in-flight=100001"}, []string{"CDC_RELAY_MAX_IN_FLIGHT", "out of range"}},
		{"heartbeat not a duration", with(map[string]string{"CDC_RELAY_HEARTBEAT_INTERVAL": "10"}), nil, []string{"CDC_RELAY_HEARTBEAT_INTERVAL", "not a duration"}},
		{"heartbeat too short", with(map[string]string{"CDC_RELAY_HEARTBEAT_INTERVAL": "1ms"}), nil, []string{"CDC_RELAY_HEARTBEAT_INTERVAL", "out of range"}},
		{"log format", with(map[string]string{"CDC_RELAY_LOG_FORMAT": "xml"}), nil, []string{"CDC_RELAY_LOG_FORMAT"}},
		{"log level", with(map[string]string{"CDC_RELAY_LOG_LEVEL": "loud"}), nil, []string{"CDC_RELAY_LOG_LEVEL"}},
		{"poison", with(map[string]string{"CDC_RELAY_POISON": "skip"}), nil, []string{"CDC_RELAY_POISON (--poison)", `"skip" is not stop or park`}},
		{"poison queue name too long", with(map[string]string{"CDC_RELAY_POISON": "park", "CDC_RELAY_EXCHANGE": strings.Repeat("x", 250)}), nil, []string{"CDC_RELAY_EXCHANGE", "parking queue"}},
		{"unroutable", with(map[string]string{"CDC_RELAY_UNROUTABLE": "drop"}), nil, []string{"CDC_RELAY_UNROUTABLE (--unroutable)", `"drop" is not hold or park`}},
		{"management URL", with(map[string]string{"CDC_RELAY_AMQP_MANAGEMENT_URL": "rabbit:15672"}), nil, []string{"CDC_RELAY_AMQP_MANAGEMENT_URL", "not an http:// or https:// URL"}},
		{"slot failover", with(map[string]string{"CDC_RELAY_SLOT_FAILOVER": "yes"}), nil, []string{"CDC_RELAY_SLOT_FAILOVER (--slot-failover)", `"yes" is not auto, on or off`}},
		{"channels", with(map[string]string{"CDC_RELAY_CHANNELS": "17"}), nil, []string{"CDC_RELAY_CHANNELS (--channels)", "17 is out of range 1..16"}},
		{"headers", with(map[string]string{"CDC_RELAY_HEADERS": "row,dop"}), nil, []string{"CDC_RELAY_HEADERS (--headers)", `"dop" is not a header group`}},
		{"unknown flag", with(nil), []string{"--nope"}, []string{"nope"}},
		{"stray argument", with(nil), []string{"extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("cdc-relay run", tt.args, env(tt.env), io.Discard)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "s3cret", "a secret leaked into the error")
			assert.NotContains(t, err.Error(), ":pw@", "a secret leaked into the error")
		})
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	c, err := Parse("cdc-relay run", nil, env(with(map[string]string{
		"CDC_RELAY_AMQP_URL": "amqps://user:hunter2@rabbit:5671/vh",
	})), io.Discard)
	require.NoError(t, err)
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	out := b.String()
	assert.NotContains(t, out, "s3cret")
	assert.NotContains(t, out, "hunter2")
	assert.Contains(t, out, "postgres://relay:xxxxx@db:5432/orders")
	assert.Contains(t, out, "amqps://user:xxxxx@rabbit:5671/vh")
}

func TestMaskURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:p@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db?password=p&sslmode=disable", "postgres://h/db?password=xxxxx&sslmode=disable"},
		{"host=h user=u password=p dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password='a b' dbname=d", "host=h password=xxxxx dbname=d"},
		// Several hosts: net/url refuses the host list, the password must still go.
		{"postgres://relay:s3cret@db-a:5432,db-b:5432/orders?target_session_attrs=primary",
			"postgres://relay:xxxxx@db-a:5432,db-b:5432/orders?target_session_attrs=primary"},
		{"postgres://relay:s3cret@db-a,db-b/orders", "postgres://relay:xxxxx@db-a,db-b/orders"},
		// Query strings: password and sslpassword, wherever they stand.
		{"postgres://h/db?sslmode=verify-full&sslpassword=k3y&password=p", "postgres://h/db?sslmode=verify-full&sslpassword=xxxxx&password=xxxxx"},
		{"postgres://u:p@h/db?PASSWORD=p", "postgres://u:xxxxx@h/db?PASSWORD=xxxxx"},
		// A password holding the characters a URL uses, percent-encoded or not.
		{"amqp://u:p%40ss%2Fw@rabbit:5672/", "amqp://u:xxxxx@rabbit:5672/"},
		{"amqp://u:p@ss@rabbit:5672/vh", "amqp://u:xxxxx@rabbit:5672/vh"},
		{"host=h sslpassword=k3y password=p", "host=h sslpassword=xxxxx password=xxxxx"},
		// Spaces around '=' (pgconn accepts them), and a password holding
		// an unencoded '#' or '?', which would end the authority early.
		{"host=h password = s3cret dbname=d", "host=h password=xxxxx dbname=d"},
		{"amqp://u:pa#s3cret@rabbit:5672/", "amqp://u:xxxxx@rabbit:5672/"},
		{"postgres://u:pa?s3cret@db/x", "postgres://u:xxxxx@db/x"},
		{"", ""},
	}
	for _, tt := range tests {
		got := MaskURL(tt.in)
		assert.Equal(t, tt.want, got, tt.in)
		for _, secret := range []string{"s3cret", "k3y", "p%40ss", "p@ss"} {
			assert.NotContains(t, got, secret, tt.in)
		}
	}
}

// A URL that does not parse is named in the error without its password,
// however it is written.
func TestBadURLErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{
		"postgres://relay:s3cret@db-a:5432,db-b:5432/orders?sslmode=bogus",
		"postgres://relay:s3cret@db:notaport/orders",
		"postgres://relay:s3%63ret@db:notaport/orders",
		"host=db password=s3cret sslmode=bogus",
	} {
		_, err := Parse("cdc-relay run", nil, env(map[string]string{"CDC_RELAY_DATABASE_URL": u, "CDC_RELAY_AMQP_URL": "amqp://r:s3cret@x:notaport"}), io.Discard)
		require.Error(t, err, u)
		assert.NotContains(t, err.Error(), "s3cret", u)
		assert.NotContains(t, err.Error(), "s3%63ret", u)
	}
}

// Each URL variable can come from a file instead (VAR_FILE, the Docker and
// Kubernetes secrets convention): its content, without the final newline.
func TestURLsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	db := write("db", "postgres://relay:s3cret@db:5432/orders\n")
	amqpFile := write("amqp", "amqps://user:hunter2@rabbit:5671/vh")
	mgmt := write("mgmt", "https://admin:pw@rabbit:15671\n")
	c, err := Parse("cdc-relay run", nil, env(map[string]string{
		"CDC_RELAY_DATABASE_URL_FILE":        db,
		"CDC_RELAY_AMQP_URL_FILE":            amqpFile,
		"CDC_RELAY_AMQP_MANAGEMENT_URL_FILE": mgmt,
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "postgres://relay:s3cret@db:5432/orders", c.DatabaseURL)
	assert.Equal(t, "amqps://user:hunter2@rabbit:5671/vh", c.AMQPURL)
	assert.Equal(t, "https://admin:pw@rabbit:15671", c.ManagementURL)

	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"both set", map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://db/x", "CDC_RELAY_DATABASE_URL_FILE": db, "CDC_RELAY_AMQP_URL": "amqp://r"},
			"CDC_RELAY_DATABASE_URL_FILE (--database-url): set either CDC_RELAY_DATABASE_URL or CDC_RELAY_DATABASE_URL_FILE, not both"},
		{"missing file", map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://db/x", "CDC_RELAY_AMQP_URL_FILE": filepath.Join(dir, "nope")},
			"CDC_RELAY_AMQP_URL_FILE (--amqp-url): read " + filepath.Join(dir, "nope")},
		{"empty file", map[string]string{"CDC_RELAY_DATABASE_URL_FILE": write("empty", "\n"), "CDC_RELAY_AMQP_URL": "amqp://r"},
			"CDC_RELAY_DATABASE_URL_FILE (--database-url): " + filepath.Join(dir, "empty") + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("cdc-relay run", nil, env(tt.env), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	// A flag still overrides the file.
	c, err = Parse("cdc-relay run", []string{"--database-url", "postgres://flag/db"}, env(map[string]string{
		"CDC_RELAY_DATABASE_URL_FILE": db, "CDC_RELAY_AMQP_URL": "amqp://r",
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "postgres://flag/db", c.DatabaseURL)
}

func TestParseTable(t *testing.T) {
	for in, want := range map[string]Table{
		"outbox":        {"public", "outbox"},
		"public.outbox": {"public", "outbox"},
		"app.events_2":  {"app", "events_2"},
	} {
		got, err := ParseTable(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, bad := range []string{"", "Outbox", "a.b.c", ".outbox", "x y", `"quoted"`} {
		_, err := ParseTable(bad)
		assert.Error(t, err, bad)
	}
}

func TestManagementURL(t *testing.T) {
	tests := []struct {
		amqp, mgmt     string
		base, user, pw string
		ok             bool
	}{
		{"amqp://u:p@rabbit:5672/", "", "http://rabbit:15672", "u", "p", true},
		{"amqps://u:p@rabbit/", "", "https://rabbit:15671", "u", "p", true},
		{"amqp://rabbit/", "", "http://rabbit:15672", "guest", "guest", true},
		{"amqp://u:p@rabbit/", "https://admin:s3cret@mq.example:443/", "https://mq.example:443", "admin", "s3cret", true},
		{"amqp://u:p@rabbit/", "http://mq:15672", "http://mq:15672", "u", "p", true},
		{"amqp://u:p@rabbit/", "off", "", "", "", false},
	}
	for _, tt := range tests {
		c := Config{AMQPURL: tt.amqp, ManagementURL: tt.mgmt}
		base, user, pw, ok := c.Management()
		assert.Equal(t, tt.ok, ok, tt.mgmt)
		assert.Equal(t, tt.base, base, tt.mgmt)
		assert.Equal(t, tt.user, user, tt.mgmt)
		assert.Equal(t, tt.pw, pw, tt.mgmt)
	}
}

func TestDefaultsAreValidOnceURLsAreSet(t *testing.T) {
	c := Defaults()
	assert.Equal(t, DefaultSlot, c.Slot)
	assert.Equal(t, DefaultMaxInFlight, c.MaxInFlight)
	require.Error(t, c.Validate(), "no URLs yet")
	c.DatabaseURL, c.AMQPURL = "postgres://h/db", "amqp://h/"
	require.NoError(t, c.Validate())
}

// The usage (-h, or a mistyped flag) prints each flag's default: a URL's,
// which holds a password, is not shown there, wherever it came from.
func TestUsageShowsNoPassword(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "db")
	require.NoError(t, os.WriteFile(pw, []byte("postgres://relay:s3cret-file@db/x"), 0o600))
	for _, e := range []map[string]string{
		{"CDC_RELAY_DATABASE_URL_FILE": pw, "CDC_RELAY_AMQP_URL": "amqp://u:s3cret-env@mq/"},
		{"CDC_RELAY_DATABASE_URL": "postgres://relay:s3cret-env@db/x", "CDC_RELAY_AMQP_URL": "amqp://u:s3cret-env@mq/"},
	} {
		var usage strings.Builder
		_, err := Parse("cdc-relay run", []string{"--mistyped"}, env(e), &usage)
		require.Error(t, err)
		assert.Contains(t, usage.String(), "-database-url")
		assert.NotContains(t, usage.String(), "s3cret")
		// And the values are still the ones read.
		c, err := Parse("cdc-relay run", nil, env(e), io.Discard)
		require.NoError(t, err)
		assert.Contains(t, c.DatabaseURL, "s3cret")
		assert.Contains(t, c.AMQPURL, "s3cret-env")
	}
}

// Bind gives a command of its own the daemon's variables, flags, defaults
// and checks for the subset it names, and reports the errors of that
// subset alone.
func TestBind(t *testing.T) {
	tests := []struct {
		name    string
		envs    []string
		env     map[string]string
		args    []string
		check   func(t *testing.T, c Config)
		wantErr []string
		notErr  []string
	}{
		{name: "a subset, from the environment", envs: []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_SLOT"},
			env: map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://db/x", "CDC_RELAY_SLOT": "s1", "CDC_RELAY_AMQP_URL": "not read"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "postgres://db/x", c.DatabaseURL)
				assert.Equal(t, "s1", c.Slot)
				assert.Empty(t, c.AMQPURL, "not bound: not read")
				assert.Equal(t, DefaultMaxInFlight, c.MaxInFlight, "unbound: the default")
			}},
		{name: "a flag overrides", envs: []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_MAX_IN_FLIGHT"},
			env: map[string]string{"CDC_RELAY_DATABASE_URL": "postgres://db/x"}, args: []string{"--max-in-flight", "7"},
			check: func(t *testing.T, c Config) { assert.Equal(t, 7, c.MaxInFlight) }},
		{name: "only the subset's errors", envs: []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_SLOT"},
			env:     map[string]string{"CDC_RELAY_SLOT": "Bad-Name"},
			wantErr: []string{"CDC_RELAY_DATABASE_URL (--database-url): is required", `CDC_RELAY_SLOT (--slot): "Bad-Name" is not a slot name`},
			notErr:  []string{"CDC_RELAY_AMQP_URL"}},
		{name: "a number that is not", envs: []string{"CDC_RELAY_MAX_IN_FLIGHT"}, args: []string{"--max-in-flight", "many"},
			wantErr: []string{`CDC_RELAY_MAX_IN_FLIGHT (--max-in-flight): "many" is not a whole number`}},
		{name: "out of range", envs: []string{"CDC_RELAY_MAX_IN_FLIGHT"}, args: []string{"--max-in-flight", "0"},
			wantErr: []string{"CDC_RELAY_MAX_IN_FLIGHT (--max-in-flight): 0 is out of range 1..100000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			b := Bind(fs, tt.envs, env(tt.env))
			require.NoError(t, fs.Parse(tt.args))
			c, err := b.Config()
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				for _, n := range tt.notErr {
					assert.NotContains(t, err.Error(), n)
				}
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	Bind(fs, []string{"CDC_RELAY_SLOT"}, env(nil))
	assert.NotNil(t, fs.Lookup("slot"))
	assert.Nil(t, fs.Lookup("amqp-url"), "only the named variables get flags")
	assert.Panics(t, func() { Bind(fs, []string{"CDC_RELAY_NOPE"}, env(nil)) })
}
