package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
)

// uses is the set of shared options a command takes.
type uses uint

const (
	useDB uses = 1 << iota
	useAMQP
	useSlot
	usePublication
	useTable
	useExchange
	useJSON
	useFailover
)

// options is the parsed command line of one command. The shared options have
// the daemon's names and variables (docs/contracts.md, "Relay configuration"),
// so an operator runs the commands in the relay's own environment (kubectl
// exec, the same .env file).
type options struct {
	databaseURL  string
	amqpURL      string
	slot         string
	publication  string
	table        config.Table
	exchange     string
	json         bool
	slotFailover string

	// slot drop
	force bool
	wait  time.Duration
	// slot advance
	to string
	// role create
	role, passwordFile string
	// replay
	sinceText, untilText string
	since, until         time.Time
	batchSize            int
	maxInFlight          int
	dryRun               bool
}

// shared describes one shared option: its variable, flag and default.
type shared struct {
	use   uses
	env   string
	flag  string
	def   string
	usage string
}

var sharedOptions = []shared{
	{useDB, "CDC_RELAY_DATABASE_URL", "database-url", "", "Postgres URL of the relay's database (required)"},
	{useAMQP, "CDC_RELAY_AMQP_URL", "amqp-url", "", "RabbitMQ URL, amqp:// or amqps:// (required)"},
	{useSlot, "CDC_RELAY_SLOT", "slot", config.DefaultSlot, "logical replication slot"},
	{usePublication, "CDC_RELAY_PUBLICATION", "publication", config.DefaultPublication, "publication that holds the outbox table"},
	{useTable, "CDC_RELAY_TABLE", "table", config.DefaultTable, "outbox table, schema-qualified"},
	{useExchange, "CDC_RELAY_EXCHANGE", "exchange", config.DefaultExchange, "topic exchange messages are published to"},
	{useFailover, "CDC_RELAY_SLOT_FAILOVER", "slot-failover", config.DefaultSlotFailover, "failover slot on Postgres 17+: auto, on or off"},
	{useAMQP, "CDC_RELAY_MAX_IN_FLIGHT", "max-in-flight", strconv.Itoa(config.DefaultMaxInFlight), "unconfirmed messages at most"},
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// parse reads the shared options from getenv, then args (flags override the
// environment, as for the daemon), and validates them. Every error is a
// UsageError naming the variable and flag.
func parse(cmd command, args []string, getenv func(string) string, usage io.Writer, now func() time.Time) (options, error) {
	var o options
	fs := flag.NewFlagSet("cdc-relay "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(usage)
	vals := map[string]*string{}
	fileErrs := map[string]error{} // by flag
	for _, s := range sharedOptions {
		if cmd.uses&s.use == 0 {
			continue
		}
		v, err := config.Lookup(getenv, s.env, s.flag)
		if err != nil {
			fileErrs[s.flag] = err
		}
		if v == "" {
			v = s.def
		}
		vals[s.env] = fs.String(s.flag, v, config.Usage(s.env, s.usage))
	}
	if cmd.uses&useJSON != 0 {
		fs.BoolVar(&o.json, "json", false, "print JSON instead of text")
	}
	if cmd.extra != nil {
		cmd.extra(fs, &o)
	}
	if err := fs.Parse(args); err != nil {
		return options{}, UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return options{}, usageErr("%s: unexpected argument %q", cmd.name, fs.Arg(0))
	}
	get := func(env string) string {
		if v, ok := vals[env]; ok {
			return strings.TrimSpace(*v)
		}
		return ""
	}

	var errs []error
	// A flag that replaces the variable makes its file's error moot.
	fs.Visit(func(f *flag.Flag) { delete(fileErrs, f.Name) })
	for _, s := range sharedOptions {
		if err, ok := fileErrs[s.flag]; ok {
			errs = append(errs, err)
		}
	}
	bad := func(env, problem string) {
		for _, s := range sharedOptions {
			if s.env == env {
				errs = append(errs, &config.Error{Env: env, Flag: s.flag, Problem: problem})
				return
			}
		}
	}
	o.databaseURL = get("CDC_RELAY_DATABASE_URL")
	o.amqpURL = get("CDC_RELAY_AMQP_URL")
	o.slot = get("CDC_RELAY_SLOT")
	o.publication = get("CDC_RELAY_PUBLICATION")
	o.exchange = get("CDC_RELAY_EXCHANGE")
	if cmd.uses&useDB != 0 {
		if _, failed := fileErrs["database-url"]; failed {
			// the file's error says it
		} else if o.databaseURL == "" {
			bad("CDC_RELAY_DATABASE_URL", "is required: a Postgres URL such as postgres://relay@db:5432/orders")
		} else if _, err := pgconn.ParseConfig(o.databaseURL); err != nil {
			bad("CDC_RELAY_DATABASE_URL", "is not a valid Postgres URL")
		}
	}
	if cmd.uses&useAMQP != 0 {
		if _, failed := fileErrs["amqp-url"]; failed {
			// the file's error says it
		} else if o.amqpURL == "" {
			bad("CDC_RELAY_AMQP_URL", "is required: a RabbitMQ URL such as amqp://user:pass@rabbitmq:5672/")
		} else if _, err := amqp.ParseURI(o.amqpURL); err != nil {
			bad("CDC_RELAY_AMQP_URL", "is not a valid amqp:// or amqps:// URL")
		}
		n, err := strconv.Atoi(get("CDC_RELAY_MAX_IN_FLIGHT"))
		if err != nil || n < 1 || n > 100_000 {
			bad("CDC_RELAY_MAX_IN_FLIGHT", fmt.Sprintf("%q is not a whole number in 1..100000", get("CDC_RELAY_MAX_IN_FLIGHT")))
		}
		o.maxInFlight = n
	}
	if cmd.uses&useSlot != 0 && !identRE.MatchString(o.slot) {
		bad("CDC_RELAY_SLOT", fmt.Sprintf("%q is not a slot name: lower-case letters, digits and _, at most 63", o.slot))
	}
	if cmd.uses&usePublication != 0 && !identRE.MatchString(o.publication) {
		bad("CDC_RELAY_PUBLICATION", fmt.Sprintf("%q is not a publication name: lower-case letters, digits and _, at most 63", o.publication))
	}
	if cmd.uses&useTable != 0 {
		t, err := config.ParseTable(get("CDC_RELAY_TABLE"))
		if err != nil {
			bad("CDC_RELAY_TABLE", err.Error())
		}
		o.table = t
	}
	if cmd.uses&useFailover != 0 {
		o.slotFailover = get("CDC_RELAY_SLOT_FAILOVER")
		if o.slotFailover != config.FailoverAuto && o.slotFailover != config.FailoverOn && o.slotFailover != config.FailoverOff {
			bad("CDC_RELAY_SLOT_FAILOVER", fmt.Sprintf("%q is not auto, on or off", o.slotFailover))
		}
	}
	if cmd.uses&useExchange != 0 && (o.exchange == "" || len(o.exchange) > 255) {
		bad("CDC_RELAY_EXCHANGE", "must be 1 to 255 characters")
	}
	if err := errors.Join(errs...); err != nil {
		return options{}, UsageError{Err: err}
	}
	if cmd.check != nil {
		if err := cmd.check(&o, now); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

func checkAdvance(o *options, _ func() time.Time) error {
	if o.to == "" {
		return usageErr("slot advance: --to is required: an LSN such as 0/16B3748, or now")
	}
	if o.to != "now" {
		if _, err := ParseLSN(o.to); err != nil {
			return UsageError{Err: fmt.Errorf("slot advance: --to: %w", err)}
		}
	}
	return nil
}

func checkRoleCreate(o *options, _ func() time.Time) error {
	if !identRE.MatchString(o.role) {
		return usageErr("role create: --role %q is not a lower-case identifier (a-z, 0-9, _; up to 63 characters)", o.role)
	}
	return nil
}

func checkReplay(o *options, now func() time.Time) error {
	if o.sinceText == "" {
		return usageErr("replay: --since is required: RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01) or a duration ago (2h, 3d)")
	}
	t := now()
	var err error
	if o.since, err = ParseTime(o.sinceText, t); err != nil {
		return UsageError{Err: fmt.Errorf("replay: --since: %w", err)}
	}
	if o.until, err = ParseTime(o.untilText, t); err != nil {
		return UsageError{Err: fmt.Errorf("replay: --until: %w", err)}
	}
	if !o.since.Before(o.until) {
		return usageErr("replay: --since %s is not before --until %s", o.since.Format(time.RFC3339Nano), o.until.Format(time.RFC3339Nano))
	}
	if o.batchSize < 1 || o.batchSize > 100_000 {
		return usageErr("replay: --batch-size %d is out of range 1..100000", o.batchSize)
	}
	return nil
}

var daysRE = regexp.MustCompile(`^(\d+)d(.*)$`)

// ParseTime reads a point in time as an operator writes it: "now"; RFC 3339
// (2024-05-01T10:00:00Z, fractions and offsets allowed); a date (2024-05-01,
// midnight UTC); or a duration before now, in Go's syntax plus whole days
// (90m, 2h, 3d, 1d12h).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := parseAgo(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01) or a duration ago (2h, 3d)", s)
	}
	return now.Add(-d), nil
}

func parseAgo(s string) (time.Duration, error) {
	var d time.Duration
	if m := daysRE.FindStringSubmatch(s); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100_000 {
			return 0, errors.New("too many days")
		}
		d = time.Duration(days) * 24 * time.Hour
		s = m[2]
		if s == "" {
			return d, nil
		}
	}
	rest, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if rest < 0 {
		return 0, errors.New("negative duration")
	}
	return d + rest, nil
}
