// Package admin is cdc-relay's operator commands (docs/contracts.md,
// "Commands and exit codes"): slot list, create, drop and advance;
// publication create and show; doctor; and replay, the repair path after a
// lost slot (docs/contracts.md, "Loss repair and failover").
//
// Run is the whole contract with main: it parses args (the words after the
// program name, such as ["slot", "drop", "--force"]), reads the CDC_RELAY_*
// variables through getenv, writes results to stdout and warnings to stderr,
// and returns an error whose kind is the exit code (see ExitCode):
//
//	nil                                   0  done
//	UsageError (bad arguments, -h)        2  nothing was done
//	anything else (ErrRefused, ErrDoctor, 1  refused or failed; the message says why
//	  a database or broker error)
package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// UsageError is a command-line error: an unknown command, a bad flag or
// value, -h. Nothing was done; the exit code is 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return UsageError{Err: fmt.Errorf(format, args...)}
}

// ErrRefused marks an operation refused because it would be unsafe as asked
// (dropping an active slot without --force, moving a slot backwards). The
// message says what to do instead; the exit code is 1.
var ErrRefused = errors.New("refused")

// ErrDoctor is returned by doctor when it found at least one error (warnings
// alone are not errors); the findings are on stdout. The exit code is 1.
var ErrDoctor = errors.New("doctor found problems")

// ExitCode maps an error of Run to the process exit code: 0 for nil, 2 for a
// UsageError (including -h), 1 for everything else.
func ExitCode(err error) int {
	var usage UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		return 1
	}
}

// Usage lists the commands Run serves, for the program's own usage text.
const Usage = `  slot list [--json]                      every replication slot: lag, retained WAL, wal_status
  slot create                             the publication (when missing), then the slot
  slot drop [--force]                     refuses an active slot unless --force
  slot advance --to LSN|now               move the slot forward (never back), skipping WAL
  publication create | show [--json]      the publication of the outbox table
  role create --role NAME [--password-file F]
                                          the relay's role: LOGIN REPLICATION, SELECT on the outbox only
  doctor [--json]                         check the server and database; exit 1 on errors
  replay --since TIME [--until TIME]      re-publish outbox rows committed in [since, until), in commit order
`

// Run runs one operator command; see the package comment for its contract.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runAt(ctx, args, getenv, stdout, stderr, time.Now)
}

func runAt(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, now func() time.Time) error {
	cmd, rest, err := lookup(args)
	if err != nil {
		fmt.Fprint(stderr, "usage: cdc-relay <command> [flags]\n\ncommands:\n"+Usage)
		return err
	}
	o, err := parse(cmd, rest, getenv, stderr, now)
	if err != nil {
		return err
	}
	return cmd.run(ctx, o, stdout, stderr)
}

// command is one operator command: the options it takes and what it does.
type command struct {
	name  string // "slot drop"
	uses  uses   // shared options
	extra func(fs *flag.FlagSet, o *options)
	check func(o *options, now func() time.Time) error // extra validation; returns usage errors
	run   func(ctx context.Context, o options, stdout, stderr io.Writer) error
}

var commands = []command{
	{name: "slot list", uses: useDB | useJSON, run: runSlotList},
	{name: "slot create", uses: useDB | useSlot | usePublication | useTable | useFailover | useJSON, run: runSlotCreate},
	{name: "slot drop", uses: useDB | useSlot | useJSON, run: runSlotDrop,
		extra: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.force, "force", false, "terminate the walsender of an active slot, then drop it")
			fs.DurationVar(&o.wait, "wait", 30*time.Second, "with --force: how long to wait for the slot to become inactive")
		}},
	{name: "slot advance", uses: useDB | useSlot | useJSON, run: runSlotAdvance,
		extra: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.to, "to", "", "LSN such as 0/16B3748, or now (required)")
		},
		check: checkAdvance},
	{name: "publication create", uses: useDB | usePublication | useTable | useJSON, run: runPublicationCreate},
	{name: "publication show", uses: useDB | usePublication | useTable | useJSON, run: runPublicationShow},
	{name: "role create", uses: useDB | useTable | useJSON, run: runRoleCreate,
		extra: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.role, "role", "", "name of the relay's role, a lower-case identifier (required)")
			fs.StringVar(&o.passwordFile, "password-file", "", "file holding the role's password (none: set it yourself, or use another authentication)")
		},
		check: checkRoleCreate},
	{name: "doctor", uses: useDB | useSlot | usePublication | useTable | useFailover | useJSON, run: runDoctor},
	{name: "replay", uses: useDB | useAMQP | useTable | useExchange | useJSON, run: runReplay,
		extra: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.sinceText, "since", "", "commit time of the first transaction to replay (inclusive; created_at without track_commit_timestamp): RFC 3339, a date, or a duration ago such as 2h or 3d (required)")
			fs.StringVar(&o.untilText, "until", "now", "end of the commit times to replay (exclusive), same forms as --since")
			fs.IntVar(&o.batchSize, "batch-size", 1000, "rows read per query")
			fs.BoolVar(&o.dryRun, "dry-run", false, "count the rows, publish nothing")
		},
		check: checkReplay},
}

// Handles reports whether word names a command of Run (its first word:
// "slot", "role", "doctor", ...), so the program sends it here.
func Handles(word string) bool {
	for _, c := range commands {
		if first, _, _ := strings.Cut(c.name, " "); first == word {
			return true
		}
	}
	return false
}

// lookup finds the command named by the first one or two words of args.
func lookup(args []string) (command, []string, error) {
	if len(args) == 0 {
		return command{}, nil, usageErr("missing command")
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):], nil
		}
	}
	var subs []string
	for _, c := range commands {
		if group, sub, ok := strings.Cut(c.name, " "); ok && group == args[0] {
			subs = append(subs, sub)
		}
	}
	switch {
	case len(subs) > 0 && len(args) == 1:
		return command{}, nil, usageErr("%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))
	case len(subs) > 0:
		return command{}, nil, usageErr("unknown command %q: %s takes %s", args[0]+" "+args[1], args[0], strings.Join(subs, ", "))
	}
	return command{}, nil, usageErr("unknown command %q", args[0])
}
