// Package config turns the environment and command-line flags into the relay's
// typed Config (docs/contracts.md, "Relay configuration"). It is the only
// package that reads the environment: everything else receives a Config.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/internal/envfile"
)

// Config is the effective configuration of one relay process.
type Config struct {
	// Name names the relay in logs and /status: the entry's name in a config
	// file, else the slot.
	Name string
	// DatabaseURL is a plain Postgres URL (or keyword/value string) of the
	// database whose outbox is relayed. The relay adds replication=database
	// itself for its stream connection.
	DatabaseURL string
	// AMQPURL is the RabbitMQ URL, amqp:// or amqps://.
	AMQPURL string
	// Slot is the logical replication slot the relay reads from (created when missing).
	Slot string
	// Publication holds the outbox table (created before the slot when missing).
	Publication string
	// Table is the outbox table, schema-qualified.
	Table Table
	// Exchange is the durable topic exchange every message is published to.
	Exchange string
	// HTTPAddr serves /livez, /readyz, /metrics and /status.
	HTTPAddr string
	// MaxInFlight bounds the messages published but not yet confirmed by the
	// broker; when it is reached the relay stops reading the WAL stream.
	MaxInFlight int
	// Channels is the number of broker channels the relay publishes on. One
	// (the default) keeps commit order across the whole outbox; several keep
	// it per aggregate (aggregate_type and aggregate_id pick the channel)
	// and let the broker take more messages a second. A transaction is still
	// acknowledged only once every one of its messages is confirmed.
	Channels int
	// HeartbeatInterval is how often an idle relay reports its position to
	// Postgres and checks that the stream is alive.
	HeartbeatInterval time.Duration
	// LogFormat is "json" or "text".
	LogFormat string
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level
	// Poison is what the relay does with an outbox row that can never be
	// published (a field over an AMQP limit, a body over the broker's
	// max_message_size): PoisonStop stops the relay naming the row,
	// PoisonPark publishes a small envelope of it to the queue
	// "<exchange>.poison" and goes on.
	Poison string
	// Unroutable is what the relay does with a message no queue is bound to
	// receive: UnroutableHold never acknowledges past it and retries until a
	// queue is bound (commit order kept); UnroutablePark links the exchange
	// to the alternate exchange "<exchange>.unroutable" (a policy), whose
	// queue of the same name takes such messages, and goes on.
	Unroutable string
	// ManagementURL is the RabbitMQ HTTP API the relay sets the
	// alternate-exchange policy through (UnroutablePark). Empty: derived from
	// AMQPURL (same host and credentials, port 15672, or 15671 for amqps);
	// "off": the operator sets the policy.
	ManagementURL string
	// SlotFailover decides whether the relay's slot is a failover slot,
	// synchronised to standbys so that a promotion keeps it (Postgres 17 and
	// later): FailoverAuto where the server supports it, FailoverOn always
	// (a server before 17 is then an error), FailoverOff never.
	SlotFailover string
	// Headers are the header groups every message carries (row, aggregate,
	// cloudevents; all by default): fewer make lighter messages, which cost
	// the broker less.
	Headers outbox.HeaderGroups
}

// Values of Config.SlotFailover.
const (
	FailoverAuto = "auto"
	FailoverOn   = "on"
	FailoverOff  = "off"
)

// Values of Config.Unroutable.
const (
	UnroutableHold = "hold"
	UnroutablePark = "park"
	// ManagementOff is the ManagementURL that leaves policies to the operator.
	ManagementOff = "off"
)

// Values of Config.Poison.
const (
	PoisonStop = "stop"
	PoisonPark = "park"
)

// Table is a schema-qualified table name.
type Table struct {
	Schema string
	Name   string
}

// String returns schema.name, unquoted.
func (t Table) String() string { return t.Schema + "." + t.Name }

// Defaults of docs/contracts.md, "Relay configuration".
const (
	DefaultSlot              = "cdc_relay"
	DefaultPublication       = "cdc_relay_outbox"
	DefaultTable             = "public.outbox"
	DefaultExchange          = "saga"
	DefaultHTTPAddr          = ":9400"
	DefaultMaxInFlight       = 1000
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultLogFormat         = "json"
	DefaultLogLevel          = "info"
	DefaultPoison            = PoisonStop
	DefaultUnroutable        = UnroutableHold
	DefaultSlotFailover      = FailoverAuto

	// maxMaxInFlight caps the window: amqp091 keeps a record per unconfirmed
	// message and the relay's memory must stay bounded by the window.
	maxMaxInFlight = 100_000
	// maxChannels is publisher.MaxChannels.
	maxChannels = 16
)

// Defaults is the configuration with every default of the table of
// docs/contracts.md and no URLs: a start for code (and tests) that build a
// Config rather than parse one.
func Defaults() Config {
	c, _, _ := parse("defaults", nil, func(string) string { return "" }, io.Discard)
	return c
}

// Error is a configuration error. Its message is one line naming the
// variable (and flag) and what to do.
type Error struct {
	Env, Flag string
	Problem   string
	// Where is set for a value from a config file: "relays.json: databases[1].slot".
	Where string
}

func (e *Error) Error() string {
	if e.Where != "" {
		return fmt.Sprintf("config file %s: %s", e.Where, e.Problem)
	}
	return fmt.Sprintf("config: %s (--%s): %s", e.Env, e.Flag, e.Problem)
}

// ErrHelp is returned when -h or --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

type option struct {
	env, flag, def, usage string
}

// secret are the options that may come from a file (VAR_FILE): the URLs,
// which hold passwords.
var secret = map[string]bool{
	"CDC_RELAY_DATABASE_URL": true, "CDC_RELAY_AMQP_URL": true, "CDC_RELAY_AMQP_MANAGEMENT_URL": true,
}

// Lookup reads variable env (flag names it in errors): for the URLs,
// getenv(env) or the content of the file getenv(env+"_FILE") names. An
// error is an *Error naming the _FILE variable.
func Lookup(getenv func(string) string, env, flag string) (string, error) {
	if !secret[env] {
		return getenv(env), nil
	}
	v, err := envfile.Lookup(getenv, env)
	if err != nil {
		return "", &Error{Env: env + "_FILE", Flag: flag, Problem: strings.TrimPrefix(err.Error(), env+"_FILE: ")}
	}
	return v, nil
}

// Usage is a flag's usage line, naming its variables.
func Usage(env, usage string) string {
	if secret[env] {
		return usage + " ($" + env + ", or a file named by $" + env + "_FILE)"
	}
	return usage + " ($" + env + ")"
}

var options = []option{
	{"CDC_RELAY_DATABASE_URL", "database-url", "", "Postgres URL of the database whose outbox is relayed (required)"},
	{"CDC_RELAY_AMQP_URL", "amqp-url", "", "RabbitMQ URL, amqp:// or amqps:// (required)"},
	{"CDC_RELAY_SLOT", "slot", DefaultSlot, "logical replication slot"},
	{"CDC_RELAY_PUBLICATION", "publication", DefaultPublication, "publication that holds the outbox table"},
	{"CDC_RELAY_TABLE", "table", DefaultTable, "outbox table, schema-qualified"},
	{"CDC_RELAY_EXCHANGE", "exchange", DefaultExchange, "topic exchange messages are published to"},
	{"CDC_RELAY_HTTP_ADDR", "http-addr", DefaultHTTPAddr, "address of /livez, /readyz, /metrics, /status"},
	{"CDC_RELAY_MAX_IN_FLIGHT", "max-in-flight", strconv.Itoa(DefaultMaxInFlight), "unconfirmed messages before the relay stops reading"},
	{"CDC_RELAY_CHANNELS", "channels", "1", "broker channels to publish on: 1 keeps commit order, more keep it per aggregate"},
	{"CDC_RELAY_HEARTBEAT_INTERVAL", "heartbeat-interval", DefaultHeartbeatInterval.String(), "status and heartbeat interval"},
	{"CDC_RELAY_LOG_FORMAT", "log-format", DefaultLogFormat, "json or text"},
	{"CDC_RELAY_LOG_LEVEL", "log-level", DefaultLogLevel, "debug, info, warn or error"},
	{"CDC_RELAY_UNROUTABLE", "unroutable", DefaultUnroutable, "a message no queue is bound for: hold (retry, keeping commit order) or park (in queue <exchange>.unroutable, through an alternate exchange)"},
	{"CDC_RELAY_AMQP_MANAGEMENT_URL", "amqp-management-url", "", "RabbitMQ HTTP API for the park mode's policy (default: the AMQP URL's host and credentials, port 15672; off: set by the operator)"},
	{"CDC_RELAY_HEADERS", "headers", "all", "header groups of every message: row (the outbox headers column), aggregate, cloudevents; comma-separated, all or none"},
	{"CDC_RELAY_SLOT_FAILOVER", "slot-failover", DefaultSlotFailover, "failover slot, kept through a promotion on Postgres 17+: auto (where supported), on or off"},
	{"CDC_RELAY_POISON", "poison", DefaultPoison, "a row that can never be published: stop (the relay, naming it) or park (in queue <exchange>.poison)"},
	{"CDC_RELAY_CONFIG", "config", "", "JSON file listing several databases to relay from one process (see docs/operations.md)"},
}

// Parse reads the environment through getenv, then args (flags override the
// environment), and validates the result. Usage goes to usage on -h. It is
// the sidecar mode: one database; a config file is ParseAll's.
func Parse(name string, args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c, file, err := parse(name, args, getenv, usage)
	if err != nil {
		return Config{}, err
	}
	if file != "" {
		return Config{}, &Error{Env: "CDC_RELAY_CONFIG", Flag: "config", Problem: "this command relays one database; unset it"}
	}
	return c, c.Validate()
}

// ParseAll returns the relays of one process: the one the environment and
// flags describe, or, when CDC_RELAY_CONFIG names a file, one per database
// listed there, each starting from the environment's values.
func ParseAll(name string, args []string, getenv func(string) string, usage io.Writer) ([]Config, error) {
	base, file, err := parse(name, args, getenv, usage)
	if err != nil {
		return nil, err
	}
	if file == "" {
		return []Config{base}, base.Validate()
	}
	return LoadFile(file, base, getenv)
}

func parse(name string, args []string, getenv func(string) string, usage io.Writer) (Config, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usage)
	envs := make([]string, len(options))
	for i, o := range options {
		envs[i] = o.env
	}
	read := Bind(fs, envs, getenv)
	if err := fs.Parse(args); err != nil {
		return Config{}, "", err
	}
	if fs.NArg() > 0 {
		return Config{}, "", fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	c, file, err := read.fill()
	if err != nil {
		return Config{}, "", err
	}
	return c, file, nil
}

// Bound is a set of CDC_RELAY_* variables bound to the flags of a FlagSet
// (see Bind); once the FlagSet is parsed, Config reads them back.
type Bound struct {
	fs       *flag.FlagSet
	vals     map[string]*string // by variable
	secrets  map[string]string  // the URLs' values, kept out of the flags' defaults
	fileErrs []error
}

// Bind registers on fs the flag of each variable of envs, with the
// variable's value (or, for a URL, its file's) as the flag's default, so
// that a command of its own reads the same settings, with the same names
// and checks, as `cdc-relay run`. It panics on a name that is not a
// CDC_RELAY_* variable of this package: a programming error.
func Bind(fs *flag.FlagSet, envs []string, getenv func(string) string) *Bound {
	b := &Bound{fs: fs, vals: make(map[string]*string, len(envs)), secrets: map[string]string{}}
	for _, env := range envs {
		o, ok := optionOf(env)
		if !ok {
			panic("config: no variable " + env)
		}
		v, err := Lookup(getenv, o.env, o.flag)
		if err != nil {
			b.fileErrs = append(b.fileErrs, err)
		}
		if v == "" {
			v = o.def
		}
		if secret[o.env] {
			// A flag's default is printed with the usage (-h, a mistyped
			// flag): a URL's, which holds a password, is not its default.
			b.secrets[o.env], v = v, ""
		}
		b.vals[o.env] = fs.String(o.flag, v, Usage(o.env, o.usage))
	}
	return b
}

// Config returns the bound variables' values in a Config (the others at
// their defaults, the URLs empty), checked as `run` checks them: an error
// joins one *Error per bad bound variable and names no other.
func (b *Bound) Config() (Config, error) {
	c, _, err := b.fill()
	if err != nil {
		return Config{}, err
	}
	var mine []error
	for _, e := range unjoin(c.Validate()) {
		if ce, ok := e.(*Error); !ok || b.vals[ce.Env] != nil {
			mine = append(mine, e)
		}
	}
	return c, errors.Join(mine...)
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func optionOf(env string) (option, bool) {
	for _, o := range options {
		if o.env == env {
			return o, true
		}
	}
	return option{}, false
}

// fill reads the bound values into a Config (unbound variables at their
// defaults) and returns CDC_RELAY_CONFIG's value; it checks what parsing
// needs (numbers, durations, names), Validate the rest.
func (b *Bound) fill() (Config, string, error) {
	// A flag that replaces the variable makes its file's error moot.
	set := map[string]bool{}
	b.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	get := func(env string) string {
		o, _ := optionOf(env)
		if v, ok := b.vals[env]; ok {
			if sv, isSecret := b.secrets[env]; isSecret && !set[o.flag] {
				return strings.TrimSpace(sv)
			}
			return strings.TrimSpace(*v)
		}
		return o.def
	}
	var errs []error
	for _, e := range b.fileErrs {
		if !set[e.(*Error).Flag] {
			errs = append(errs, e)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, "", err
	}
	bad := func(env, problem string) {
		o, _ := optionOf(env)
		errs = append(errs, &Error{Env: env, Flag: o.flag, Problem: problem})
	}
	c := Config{
		DatabaseURL:  get("CDC_RELAY_DATABASE_URL"),
		AMQPURL:      get("CDC_RELAY_AMQP_URL"),
		Slot:         get("CDC_RELAY_SLOT"),
		Publication:  get("CDC_RELAY_PUBLICATION"),
		Exchange:     get("CDC_RELAY_EXCHANGE"),
		HTTPAddr:     get("CDC_RELAY_HTTP_ADDR"),
		LogFormat:    get("CDC_RELAY_LOG_FORMAT"),
		Poison:       get("CDC_RELAY_POISON"),
		Unroutable:   get("CDC_RELAY_UNROUTABLE"),
		SlotFailover: get("CDC_RELAY_SLOT_FAILOVER"),
		// The default is derived where it is used, from the final AMQP URL.
		ManagementURL: get("CDC_RELAY_AMQP_MANAGEMENT_URL"),
	}
	if t, err := ParseTable(get("CDC_RELAY_TABLE")); err != nil {
		bad("CDC_RELAY_TABLE", err.Error())
	} else {
		c.Table = t
	}
	if n, err := strconv.Atoi(get("CDC_RELAY_MAX_IN_FLIGHT")); err != nil {
		bad("CDC_RELAY_MAX_IN_FLIGHT", fmt.Sprintf("%q is not a whole number", get("CDC_RELAY_MAX_IN_FLIGHT")))
	} else {
		c.MaxInFlight = n
	}
	if n, err := strconv.Atoi(get("CDC_RELAY_CHANNELS")); err != nil {
		bad("CDC_RELAY_CHANNELS", fmt.Sprintf("%q is not a whole number", get("CDC_RELAY_CHANNELS")))
	} else {
		c.Channels = n
	}
	if d, err := time.ParseDuration(get("CDC_RELAY_HEARTBEAT_INTERVAL")); err != nil {
		bad("CDC_RELAY_HEARTBEAT_INTERVAL", fmt.Sprintf("%q is not a duration such as 10s", get("CDC_RELAY_HEARTBEAT_INTERVAL")))
	} else {
		c.HeartbeatInterval = d
	}
	if g, err := outbox.ParseHeaderGroups(get("CDC_RELAY_HEADERS")); err != nil {
		bad("CDC_RELAY_HEADERS", err.Error())
	} else {
		c.Headers = g
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("CDC_RELAY_LOG_LEVEL"))); err != nil {
		bad("CDC_RELAY_LOG_LEVEL", fmt.Sprintf("%q is not one of debug, info, warn, error", get("CDC_RELAY_LOG_LEVEL")))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, "", err
	}
	c.Name = c.Slot
	return c, get("CDC_RELAY_CONFIG"), nil
}

// IsIdentifier reports whether s is a name as Postgres folds unquoted
// identifiers and as the relay accepts for its slot and publication:
// lower-case letters, digits and _, at most 63 bytes.
func IsIdentifier(s string) bool { return identRE.MatchString(s) }

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ParseTable parses "schema.table" or "table" (schema public). Names are
// taken as Postgres folds unquoted identifiers: lower-case letters, digits, _.
func ParseTable(s string) (Table, error) {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if !identRE.MatchString(schema) || !identRE.MatchString(name) {
		return Table{}, fmt.Errorf("%q is not a table name such as public.outbox (lower-case letters, digits and _)", s)
	}
	return Table{Schema: schema, Name: name}, nil
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	var errs []error
	bad := func(env, flagName, problem string) {
		errs = append(errs, &Error{Env: env, Flag: flagName, Problem: problem})
	}
	switch {
	case c.DatabaseURL == "":
		bad("CDC_RELAY_DATABASE_URL", "database-url", "is required: a Postgres URL such as postgres://relay@db:5432/orders")
	default:
		if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
			bad("CDC_RELAY_DATABASE_URL", "database-url", "is not a valid Postgres URL: "+maskErr(err.Error(), c.DatabaseURL))
		}
	}
	switch {
	case c.AMQPURL == "":
		bad("CDC_RELAY_AMQP_URL", "amqp-url", "is required: a RabbitMQ URL such as amqp://user:pass@rabbitmq:5672/")
	default:
		if _, err := amqp.ParseURI(c.AMQPURL); err != nil {
			bad("CDC_RELAY_AMQP_URL", "amqp-url", "is not a valid amqp:// or amqps:// URL: "+maskErr(err.Error(), c.AMQPURL))
		}
	}
	if !identRE.MatchString(c.Slot) {
		bad("CDC_RELAY_SLOT", "slot", fmt.Sprintf("%q is not a slot name: lower-case letters, digits and _, at most 63", c.Slot))
	}
	if !identRE.MatchString(c.Publication) {
		bad("CDC_RELAY_PUBLICATION", "publication", fmt.Sprintf("%q is not a publication name: lower-case letters, digits and _, at most 63", c.Publication))
	}
	if c.Table.Name == "" {
		bad("CDC_RELAY_TABLE", "table", "is required")
	}
	if c.Exchange == "" || len(c.Exchange) > 255 {
		bad("CDC_RELAY_EXCHANGE", "exchange", "must be 1 to 255 characters (the default exchange cannot be declared)")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("CDC_RELAY_HTTP_ADDR", "http-addr", fmt.Sprintf("%q is not host:port (such as :9400)", c.HTTPAddr))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > maxMaxInFlight {
		bad("CDC_RELAY_MAX_IN_FLIGHT", "max-in-flight", fmt.Sprintf("%d is out of range 1..%d", c.MaxInFlight, maxMaxInFlight))
	}
	if c.Channels < 1 || c.Channels > maxChannels {
		bad("CDC_RELAY_CHANNELS", "channels", fmt.Sprintf("%d is out of range 1..%d", c.Channels, maxChannels))
	}
	if c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > time.Hour {
		bad("CDC_RELAY_HEARTBEAT_INTERVAL", "heartbeat-interval", fmt.Sprintf("%s is out of range 100ms..1h", c.HeartbeatInterval))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("CDC_RELAY_LOG_FORMAT", "log-format", fmt.Sprintf("%q is not json or text", c.LogFormat))
	}
	switch c.SlotFailover {
	case FailoverAuto, FailoverOn, FailoverOff:
	default:
		bad("CDC_RELAY_SLOT_FAILOVER", "slot-failover", fmt.Sprintf("%q is not auto, on or off", c.SlotFailover))
	}
	switch c.Unroutable {
	case UnroutableHold:
	case UnroutablePark:
		if len(c.Exchange) > 255-len(".unroutable") {
			bad("CDC_RELAY_EXCHANGE", "exchange", fmt.Sprintf("is over %d characters: with CDC_RELAY_UNROUTABLE=park its alternate exchange %q must fit AMQP's 255", 255-len(".unroutable"), c.Exchange+".unroutable"))
		}
	default:
		bad("CDC_RELAY_UNROUTABLE", "unroutable", fmt.Sprintf("%q is not hold or park", c.Unroutable))
	}
	if m := c.ManagementURL; m != "" && m != ManagementOff {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("CDC_RELAY_AMQP_MANAGEMENT_URL", "amqp-management-url", fmt.Sprintf("%q is not an http:// or https:// URL (or off)", MaskURL(m)))
		}
	}
	switch c.Poison {
	case PoisonStop:
	case PoisonPark:
		if len(c.Exchange) > 255-len(".poison") {
			bad("CDC_RELAY_EXCHANGE", "exchange", fmt.Sprintf("is over %d characters: with CDC_RELAY_POISON=park its parking queue %q must fit AMQP's 255", 255-len(".poison"), c.Exchange+".poison"))
		}
	default:
		bad("CDC_RELAY_POISON", "poison", fmt.Sprintf("%q is not stop or park", c.Poison))
	}
	return errors.Join(errs...)
}

// LogValue logs the effective config with secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", MaskURL(c.DatabaseURL)),
		slog.String("amqp_url", MaskURL(c.AMQPURL)),
		slog.String("slot", c.Slot),
		slog.String("publication", c.Publication),
		slog.String("table", c.Table.String()),
		slog.String("exchange", c.Exchange),
		slog.String("http_addr", c.HTTPAddr),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("channels", c.Channels),
		slog.Duration("heartbeat_interval", c.HeartbeatInterval),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("poison", c.Poison),
		slog.String("unroutable", c.Unroutable),
		slog.String("slot_failover", c.SlotFailover),
		slog.String("headers", c.Headers.String()),
		slog.String("amqp_management_url", MaskURL(c.ManagementURL)),
	)
}

// Management returns the RabbitMQ HTTP API URL and credentials for the park
// mode's policy, or ok false when the operator sets it (ManagementOff).
func (c Config) Management() (base, user, password string, ok bool) {
	switch c.ManagementURL {
	case ManagementOff:
		return "", "", "", false
	case "":
		uri, err := amqp.ParseURI(c.AMQPURL)
		if err != nil {
			return "", "", "", false
		}
		scheme, port := "http", 15672
		if uri.Scheme == "amqps" {
			scheme, port = "https", 15671
		}
		return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(uri.Host, strconv.Itoa(port))), uri.Username, uri.Password, true
	}
	u, err := url.Parse(c.ManagementURL)
	if err != nil {
		return "", "", "", false
	}
	user, password = u.User.Username(), ""
	if p, set := u.User.Password(); set {
		password = p
	}
	if u.User == nil {
		// No credentials in the URL: those of the AMQP URL.
		if uri, err := amqp.ParseURI(c.AMQPURL); err == nil {
			user, password = uri.Username, uri.Password
		}
	}
	u.User = nil
	return strings.TrimRight(u.String(), "/"), user, password, true
}

// MaskURL replaces the passwords of a URL or a keyword/value string with
// "xxxxx": the user information's (up to the last "@" before the query, so
// several hosts and unencoded characters are covered) and the password and
// sslpassword parameters. It never parses strictly: net/url refuses a
// Postgres host list, and a URL it cannot parse must not be logged with
// its password.
func MaskURL(s string) string {
	scheme := strings.Index(s, "://")
	if scheme < 0 {
		return passwordKV.ReplaceAllString(s, "${1}=xxxxx")
	}
	rest := s[scheme+3:]
	if from, to := userPassword(rest); from >= 0 {
		rest = rest[:from] + "xxxxx" + rest[to:]
	}
	return s[:scheme+3] + passwordParam.ReplaceAllString(rest, "${1}xxxxx")
}

// userPassword is where the password of the user information stands in
// the part of a URL after "://", or -1.
func userPassword(rest string) (from, to int) {
	end := strings.IndexAny(rest, "?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		// A password holding an unencoded '?' or '#' ends the authority too
		// early: take the last '@' anywhere (masking too much is harmless).
		if at = strings.LastIndex(rest, "@"); at < 0 {
			return -1, -1
		}
	}
	colon := strings.Index(rest[:at], ":")
	if colon < 0 {
		return -1, -1
	}
	return colon + 1, at
}

var (
	passwordKV    = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*('(\\'|[^'])*'|\S+)`)
	passwordParam = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)
)

// maskErr keeps a parse error from echoing a secret from the URL.
func maskErr(msg, rawURL string) string {
	if i := strings.Index(rawURL, "://"); i >= 0 {
		rest := rawURL[i+3:]
		if from, to := userPassword(rest); from >= 0 && to > from {
			p := rest[from:to]
			msg = strings.ReplaceAll(msg, p, "xxxxx")
			if u, err := url.PathUnescape(p); err == nil && u != p {
				msg = strings.ReplaceAll(msg, u, "xxxxx")
			}
		}
	}
	return passwordKV.ReplaceAllString(msg, "${1}=xxxxx")
}
