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

// sharedOptions are the daemon's variables each kind of use reads; their
// flags, defaults and checks are config's (Bind), so a command reads a
// setting exactly as `cdc-relay run` does.
var sharedOptions = []struct {
	use uses
	env string
}{
	{useDB, "CDC_RELAY_DATABASE_URL"},
	{useAMQP, "CDC_RELAY_AMQP_URL"},
	{useAMQP, "CDC_RELAY_MAX_IN_FLIGHT"},
	{useSlot, "CDC_RELAY_SLOT"},
	{usePublication, "CDC_RELAY_PUBLICATION"},
	{useTable, "CDC_RELAY_TABLE"},
	{useExchange, "CDC_RELAY_EXCHANGE"},
	{useFailover, "CDC_RELAY_SLOT_FAILOVER"},
}

// parse reads the shared options from getenv, then args (flags override the
// environment, as for the daemon), and validates them. Every error is a
// UsageError naming the variable and flag.
func parse(cmd command, args []string, getenv func(string) string, usage io.Writer, now func() time.Time) (options, error) {
	var o options
	fs := flag.NewFlagSet("cdc-relay "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(usage)
	var envs []string
	for _, s := range sharedOptions {
		if cmd.uses&s.use != 0 {
			envs = append(envs, s.env)
		}
	}
	bound := config.Bind(fs, envs, getenv)
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
	c, err := bound.Config()
	if err != nil {
		return options{}, UsageError{Err: err}
	}
	o.databaseURL, o.amqpURL, o.maxInFlight = c.DatabaseURL, c.AMQPURL, c.MaxInFlight
	o.slot, o.publication, o.table = c.Slot, c.Publication, c.Table
	o.exchange, o.slotFailover = c.Exchange, c.SlotFailover
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
	if !config.IsIdentifier(o.role) {
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
