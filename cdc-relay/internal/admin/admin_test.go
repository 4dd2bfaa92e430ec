package admin

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
)

var testNow = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

const dbURL = "postgres://relay@db:5432/orders"

func parseArgs(args []string, getenv func(string) string) (command, options, error) {
	cmd, rest, err := lookup(args)
	if err != nil {
		return command{}, options{}, err
	}
	o, err := parse(cmd, rest, getenv, io.Discard, func() time.Time { return testNow })
	return cmd, o, err
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	dbFile := filepath.Join(dir, "db-url")
	require.NoError(t, os.WriteFile(dbFile, []byte(dbURL+"\n"), 0o600))
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		cmd     string
		check   func(t *testing.T, o options)
		wantErr string // substring of a UsageError; "" for success
	}{
		{name: "slot list json from env", args: []string{"slot", "list", "--json"},
			env: env("CDC_RELAY_DATABASE_URL", dbURL), cmd: "slot list",
			check: func(t *testing.T, o options) {
				assert.True(t, o.json)
				assert.Equal(t, dbURL, o.databaseURL)
			}},
		{name: "defaults from config", args: []string{"doctor"},
			env: env("CDC_RELAY_DATABASE_URL", dbURL), cmd: "doctor",
			check: func(t *testing.T, o options) {
				assert.Equal(t, config.DefaultSlot, o.slot)
				assert.Equal(t, config.DefaultPublication, o.publication)
				assert.Equal(t, config.Table{Schema: "public", Name: "outbox"}, o.table)
				assert.False(t, o.json)
			}},
		{name: "flag overrides env", args: []string{"slot", "drop", "--slot", "b", "--force"},
			env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_SLOT", "a"), cmd: "slot drop",
			check: func(t *testing.T, o options) {
				assert.Equal(t, "b", o.slot)
				assert.True(t, o.force)
				assert.Equal(t, 30*time.Second, o.wait)
			}},
		{name: "advance now", args: []string{"slot", "advance", "--to", "now", "--database-url", dbURL}, env: env(), cmd: "slot advance",
			check: func(t *testing.T, o options) { assert.Equal(t, "now", o.to) }},
		{name: "advance lsn", args: []string{"slot", "advance", "--to=16/B374D848", "--database-url", dbURL}, env: env(), cmd: "slot advance",
			check: func(t *testing.T, o options) { assert.Equal(t, "16/B374D848", o.to) }},
		{name: "replay", args: []string{"replay", "--since", "2h", "--until", "2025-03-10T11:30:00Z", "--batch-size", "10"},
			env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://guest:guest@mq:5672/", "CDC_RELAY_EXCHANGE", "ex"), cmd: "replay",
			check: func(t *testing.T, o options) {
				assert.Equal(t, testNow.Add(-2*time.Hour), o.since)
				assert.Equal(t, time.Date(2025, 3, 10, 11, 30, 0, 0, time.UTC), o.until)
				assert.Equal(t, 10, o.batchSize)
				assert.Equal(t, config.DefaultMaxInFlight, o.maxInFlight)
				assert.Equal(t, "ex", o.exchange)
			}},
		{name: "replay until defaults to now", args: []string{"replay", "--since", "2025-03-10"},
			env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/"), cmd: "replay",
			check: func(t *testing.T, o options) {
				assert.Equal(t, testNow, o.until)
				assert.Equal(t, time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC), o.since)
			}},
		{name: "database url from a file", args: []string{"slot", "list"},
			env: env("CDC_RELAY_DATABASE_URL_FILE", dbFile), cmd: "slot list",
			check: func(t *testing.T, o options) { assert.Equal(t, dbURL, o.databaseURL) }},
		{name: "a flag beats the file", args: []string{"slot", "list", "--database-url", dbURL},
			env: env("CDC_RELAY_DATABASE_URL_FILE", filepath.Join(dir, "nope")), cmd: "slot list",
			check: func(t *testing.T, o options) { assert.Equal(t, dbURL, o.databaseURL) }},
		{name: "database url file missing", args: []string{"slot", "list"}, env: env("CDC_RELAY_DATABASE_URL_FILE", filepath.Join(dir, "nope")),
			wantErr: "CDC_RELAY_DATABASE_URL_FILE (--database-url): read " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "amqp url and its file", args: []string{"replay", "--since", "1h"},
			env:     env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/", "CDC_RELAY_AMQP_URL_FILE", dbFile),
			wantErr: "CDC_RELAY_AMQP_URL_FILE (--amqp-url): set either CDC_RELAY_AMQP_URL or CDC_RELAY_AMQP_URL_FILE, not both"},
		{name: "no command", args: nil, env: env(), wantErr: "missing command"},
		{name: "unknown command", args: []string{"slot", "rename"}, env: env(), wantErr: `unknown command "slot rename": slot takes list, create, drop, advance`},
		{name: "group alone", args: []string{"publication"}, env: env(), wantErr: "publication needs a subcommand: create, show"},
		{name: "unknown single", args: []string{"frobnicate"}, env: env(), wantErr: `unknown command "frobnicate"`},
		{name: "missing database url", args: []string{"slot", "list"}, env: env(), wantErr: "CDC_RELAY_DATABASE_URL (--database-url): is required"},
		{name: "bad slot name", args: []string{"slot", "drop", "--slot", "Bad-Name"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: "CDC_RELAY_SLOT (--slot)"},
		{name: "bad table", args: []string{"doctor", "--table", "a.b.c"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: "CDC_RELAY_TABLE (--table)"},
		{name: "flag of another command", args: []string{"slot", "list", "--force"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: "flag provided but not defined: -force"},
		{name: "positional argument", args: []string{"slot", "list", "extra"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: `unexpected argument "extra"`},
		{name: "advance without --to", args: []string{"slot", "advance"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: "--to is required"},
		{name: "advance bad lsn", args: []string{"slot", "advance", "--to", "16/XYZ"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: `"16/XYZ" is not an LSN`},
		{name: "replay without since", args: []string{"replay"}, env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/"), wantErr: "--since is required"},
		{name: "replay without amqp", args: []string{"replay", "--since", "1h"}, env: env("CDC_RELAY_DATABASE_URL", dbURL), wantErr: "CDC_RELAY_AMQP_URL (--amqp-url): is required"},
		{name: "replay bad since", args: []string{"replay", "--since", "yesterday"}, env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/"), wantErr: `--since: "yesterday" is not a time`},
		{name: "replay since after until", args: []string{"replay", "--since", "1h", "--until", "2h"}, env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/"), wantErr: "is not before --until"},
		{name: "replay bad window", args: []string{"replay", "--since", "1h", "--max-in-flight", "0"}, env: env("CDC_RELAY_DATABASE_URL", dbURL, "CDC_RELAY_AMQP_URL", "amqp://mq/"), wantErr: "CDC_RELAY_MAX_IN_FLIGHT"},
		{name: "help", args: []string{"slot", "list", "-h"}, env: env(), wantErr: flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, o, err := parseArgs(tt.args, tt.env)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, 2, ExitCode(err), "usage errors exit 2")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.cmd, cmd.name)
			tt.check(t, o)
		})
	}
}

func TestRunUsageGoesToStderr(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), []string{"nope"}, env(), &stdout, &stderr)
	require.Error(t, err)
	assert.Equal(t, 2, ExitCode(err))
	assert.Empty(t, stdout.String())
	assert.Contains(t, stderr.String(), "slot advance --to LSN|now")
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{UsageError{Err: errors.New("x")}, 2},
		{fmt.Errorf("wrapped: %w", UsageError{Err: errors.New("x")}), 2},
		{flag.ErrHelp, 2},
		{fmt.Errorf("drop slot %q: %w: active", "s", ErrRefused), 1},
		{fmt.Errorf("%w: 2 error(s)", ErrDoctor), 1},
		{errors.New("connect: refused"), 1},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ExitCode(tt.err), "%v", tt.err)
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "now", want: testNow},
		{in: "2h", want: testNow.Add(-2 * time.Hour)},
		{in: "90m", want: testNow.Add(-90 * time.Minute)},
		{in: "3d", want: testNow.Add(-72 * time.Hour)},
		{in: "1d12h", want: testNow.Add(-36 * time.Hour)},
		{in: "0s", want: testNow},
		{in: "2024-05-01T10:00:00Z", want: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{in: "2024-05-01T10:00:00.123456+02:00", want: time.Date(2024, 5, 1, 8, 0, 0, 123456000, time.UTC)},
		{in: "2024-05-01", want: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{in: " 2h ", want: testNow.Add(-2 * time.Hour)},
		{in: "-2h", wantErr: true},
		{in: "1d-2h", wantErr: true},
		{in: "2024-05-01T10:00:00", wantErr: true}, // no zone: ambiguous
		{in: "yesterday", wantErr: true},
		{in: "", wantErr: true},
		{in: "2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in, testNow)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tt.want.Equal(got), "got %s want %s", got, tt.want)
		})
	}
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    LSN
		wantErr bool
	}{
		{in: "0/0", want: 0},
		{in: "0/16B3748", want: 0x16B3748},
		{in: "16/b374d848", want: 0x16_B374D848},
		{in: "FFFFFFFF/FFFFFFFF", want: 0xFFFFFFFF_FFFFFFFF},
		{in: "16/B374D848x", wantErr: true},
		{in: "16B374D848", wantErr: true},
		{in: "1/2/3", wantErr: true},
		{in: "123456789/0", wantErr: true},
		{in: "now", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLSN(tt.in)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := map[int64]string{
		0:             "0 B",
		1023:          "1023 B",
		1024:          "1.0 KiB",
		1536:          "1.5 KiB",
		16 << 20:      "16.0 MiB",
		5 << 30:       "5.0 GiB",
		-2048:         "-2.0 KiB",
		3 << 40:       "3.0 TiB",
		1<<62 + 1<<61: "6.0 EiB",
	}
	for in, want := range tests {
		assert.Equal(t, want, FormatBytes(in), "%d", in)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRenderSlots(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderSlots(&b, []SlotInfo{
		{Name: "cdc_relay", Type: "logical", Plugin: ptr("pgoutput"), Database: ptr("orders"), Active: true, ActivePID: ptr[int32](4242),
			ConfirmedFlushLSN: ptr("0/16B3748"), RestartLSN: ptr("0/16B3700"), LagBytes: ptr[int64](2048), RetainedWALBytes: ptr[int64](16 << 20),
			WALStatus: ptr("reserved"), SafeWALSize: ptr[int64](1 << 30), Failover: ptr(true), Synced: ptr(false)},
		{Name: "standby_1", Type: "physical", RestartLSN: ptr("0/1000000"), RetainedWALBytes: ptr[int64](100), WALStatus: ptr("reserved")},
	}))
	want := "" +
		"SLOT       PLUGIN      DATABASE  ACTIVE  PID   CONFIRMED_FLUSH  LAG      RETAINED  WAL_STATUS  SAFE_WAL_SIZE  FAILOVER  SYNCED\n" +
		"cdc_relay  pgoutput    orders    true    4242  0/16B3748        2.0 KiB  16.0 MiB  reserved    1.0 GiB        true      false\n" +
		"standby_1  (physical)  -         false   -     -                -        100 B     reserved    -              -         -\n"
	assert.Equal(t, want, b.String())

	b.Reset()
	require.NoError(t, renderSlots(&b, nil))
	assert.Equal(t, "no replication slots\n", b.String())
}

func TestRenderReport(t *testing.T) {
	var b bytes.Buffer
	r := NewReport([]Finding{
		{Level: LevelOK, Check: "wal_level", What: "wal_level is logical"},
		{Level: LevelError, Check: "publication", What: "publication p does not exist", Fix: "CREATE PUBLICATION p;"},
		{Level: LevelWarn, Check: "max_slot_wal_keep_size", What: "unlimited", Fix: "ALTER SYSTEM ..."},
	})
	require.NoError(t, r.Render(&b))
	want := "" +
		"OK     wal_level               wal_level is logical\n" +
		"ERROR  publication             publication p does not exist\n" +
		"                               fix: CREATE PUBLICATION p;\n" +
		"WARN   max_slot_wal_keep_size  unlimited\n" +
		"                               fix: ALTER SYSTEM ...\n" +
		"1 error(s), 1 warning(s)\n"
	assert.Equal(t, want, b.String())
	assert.Equal(t, 1, r.Errors)
	assert.Equal(t, 1, r.Warnings)
}

func TestRenderPublication(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderPublication(&b, PublicationInfo{Name: "p", Owner: "postgres", Operations: []string{"update"},
		Tables: []string{"public.other"}, OutboxTable: "public.outbox"}))
	out := b.String()
	assert.Contains(t, out, "operations    update (inserts NOT published: ALTER PUBLICATION \"p\" SET (publish = 'insert');)\n")
	assert.Contains(t, out, "outbox table  public.outbox: NOT included: ALTER PUBLICATION \"p\" ADD TABLE public.outbox;\n")
}

// healthy is a database on which doctor finds nothing to fix.
func healthy() Facts {
	return Facts{
		Database: "orders", WALLevel: "logical",
		MaxReplicationSlots: 10, MaxWALSenders: 10, WALSendersInUse: 1, MaxSlotWALKeepSizeMB: 10240,
		Role: "relay", Replication: true,
		CommitTimestamps: true,
		Table:            config.Table{Schema: "public", Name: "outbox"}, TableExists: true, TableKind: "r", HasSeq: true, CanSelect: true,
		Publication: "cdc_relay_outbox", PublicationExists: true, PublicationPublishesInsert: true, PublicationHoldsTable: true,
		Slot: "cdc_relay",
		Slots: []SlotInfo{{Name: "cdc_relay", Type: "logical", Plugin: ptr("pgoutput"), Database: ptr("orders"), Active: true,
			ActivePID: ptr[int32](7), LagBytes: ptr[int64](0), RetainedWALBytes: ptr[int64](1024), WALStatus: ptr("reserved"), SafeWALSize: ptr[int64](10 << 30)}},
	}
}

func TestEvaluate(t *testing.T) {
	type want struct {
		level Level
		check string
		what  string // substring
		fix   string // substring
	}
	tests := []struct {
		name  string
		edit  func(f *Facts)
		wants []want // findings that must be present; with none, every finding must be ok
	}{
		{name: "healthy", edit: func(*Facts) {}},
		{name: "wal_level replica", edit: func(f *Facts) { f.WALLevel = "replica" },
			wants: []want{{LevelError, "wal_level", "wal_level is replica", "ALTER SYSTEM SET wal_level = logical"}}},
		{name: "no slots at all", edit: func(f *Facts) { f.MaxReplicationSlots = 0 },
			wants: []want{{LevelError, "max_replication_slots", "cannot be created", "max_replication_slots"}}},
		{name: "slots full without ours", edit: func(f *Facts) {
			f.Slot = "other"
			f.MaxReplicationSlots = 1
		}, wants: []want{{LevelError, "max_replication_slots", "1 are in use", ""}, {LevelWarn, "slot", "slot other does not exist", ""}}},
		{name: "slots full with ours", edit: func(f *Facts) { f.MaxReplicationSlots = 1 },
			wants: []want{{LevelWarn, "max_replication_slots", "all 1 replication slots are in use", ""}}},
		{name: "wal senders full, ours streaming", edit: func(f *Facts) { f.MaxWALSenders = 1 },
			wants: []want{{LevelWarn, "max_wal_senders", "all 1 WAL senders", "max_wal_senders"}}},
		{name: "wal senders full, ours not streaming", edit: func(f *Facts) {
			f.MaxWALSenders = 1
			f.Slots[0].Active = false
		}, wants: []want{{LevelError, "max_wal_senders", "cannot open its replication connection", ""}, {LevelWarn, "slot cdc_relay", "inactive", ""}}},
		{name: "unlimited keep size", edit: func(f *Facts) { f.MaxSlotWALKeepSizeMB = -1 },
			wants: []want{{LevelWarn, "max_slot_wal_keep_size", "unlimited", "ALTER SYSTEM SET max_slot_wal_keep_size"}}},
		{name: "superuser is fine", edit: func(f *Facts) { f.Replication, f.Superuser = false, true }},
		{name: "no replication privilege", edit: func(f *Facts) { f.Replication = false },
			wants: []want{{LevelError, "role", "neither REPLICATION nor superuser", `ALTER ROLE "relay" WITH REPLICATION;`}}},
		{name: "no select", edit: func(f *Facts) { f.CanSelect = false },
			wants: []want{{LevelError, "privileges", "cannot SELECT", `GRANT SELECT ON "public"."outbox" TO "relay";`}}},
		{name: "no table", edit: func(f *Facts) { f.TableExists = false },
			wants: []want{{LevelError, "table", "does not exist", "outbox migration"}}},
		{name: "missing columns", edit: func(f *Facts) { f.MissingColumns = []string{"headers", "created_at"} },
			wants: []want{{LevelError, "table", "lacks outbox column(s) headers, created_at", ""}}},
		{name: "no commit timestamps", edit: func(f *Facts) { f.CommitTimestamps = false },
			wants: []want{{LevelWarn, "track_commit_timestamp", "replay can select and order rows only by created_at", "ALTER SYSTEM SET track_commit_timestamp = on"}}},
		{name: "no seq column", edit: func(f *Facts) { f.HasSeq = false },
			wants: []want{{LevelWarn, "table", "has no seq column", `ALTER TABLE "public"."outbox" ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY`}}},
		{name: "a view", edit: func(f *Facts) { f.TableKind = "v" },
			wants: []want{{LevelError, "table", "is not a table (relkind v)", "CDC_RELAY_TABLE"}}},
		{name: "partitioned, published via the root", edit: func(f *Facts) { f.TableKind, f.PublicationViaRoot = "p", true }},
		{name: "partitioned, published by partition", edit: func(f *Facts) { f.TableKind = "p" },
			wants: []want{{LevelError, "publication", "publishes the partitions of public.outbox under their own names", `ALTER PUBLICATION "cdc_relay_outbox" SET (publish_via_partition_root = true);`}}},
		{name: "partitioned, no publication", edit: func(f *Facts) { f.TableKind, f.PublicationExists = "p", false },
			wants: []want{{LevelError, "publication", "does not exist", `WITH (publish = 'insert', publish_via_partition_root = true);`}}},
		{name: "no publication", edit: func(f *Facts) { f.PublicationExists = false },
			wants: []want{{LevelError, "publication", "does not exist", `CREATE PUBLICATION "cdc_relay_outbox" FOR TABLE "public"."outbox" WITH (publish = 'insert');`}}},
		{name: "publication without table", edit: func(f *Facts) { f.PublicationHoldsTable = false },
			wants: []want{{LevelError, "publication", "does not include table public.outbox", `ALTER PUBLICATION "cdc_relay_outbox" ADD TABLE "public"."outbox";`}}},
		{name: "publication without inserts", edit: func(f *Facts) { f.PublicationPublishesInsert = false },
			wants: []want{{LevelError, "publication", "does not publish inserts", "SET (publish = 'insert')"}}},
		{name: "our slot missing, outbox empty", edit: func(f *Facts) { f.Slots = nil },
			wants: []want{{LevelWarn, "slot", "does not exist: the relay creates it", "cdc-relay slot create --slot cdc_relay"}}},
		{name: "our slot missing, outbox has rows", edit: func(f *Facts) { f.Slots, f.OutboxHasRows = nil, true },
			wants: []want{{LevelError, "slot", "it was lost", "cdc-relay slot create --slot cdc_relay; cdc-relay replay --since"}}},
		{name: "our slot inactive", edit: func(f *Facts) { f.Slots[0].Active = false },
			wants: []want{{LevelWarn, "slot cdc_relay", "inactive and retains 1.0 KiB", "start the relay"}}},
		{name: "our slot lost", edit: func(f *Facts) { f.Slots[0].WALStatus = ptr("lost") },
			wants: []want{{LevelError, "slot cdc_relay", "is lost", "cdc-relay replay --since"}}},
		{name: "our slot unreserved", edit: func(f *Facts) { f.Slots[0].WALStatus = ptr("unreserved") },
			wants: []want{{LevelError, "slot cdc_relay", "will be lost at the next checkpoint", "max_slot_wal_keep_size"}}},
		{name: "our slot extended", edit: func(f *Facts) { f.Slots[0].WALStatus = ptr("extended") },
			wants: []want{{LevelWarn, "slot cdc_relay", "more than max_wal_size", ""}}},
		{name: "our slot near invalidation", edit: func(f *Facts) { f.Slots[0].SafeWALSize = ptr[int64](1 << 30) },
			wants: []want{{LevelWarn, "slot cdc_relay", "near invalidation: 1.0 GiB", ""}}},
		{name: "our slot wrong plugin", edit: func(f *Facts) { f.Slots[0].Plugin = ptr("wal2json") },
			wants: []want{{LevelError, "slot", "not a pgoutput logical slot", "pg_drop_replication_slot('cdc_relay')"}}},
		{name: "our slot in another database", edit: func(f *Facts) { f.Slots[0].Database = ptr("stock") },
			wants: []want{{LevelError, "slot", "belongs to database stock", ""}}},
		{name: "other database's lost slot is a warning", edit: func(f *Facts) {
			f.Slots = append(f.Slots, SlotInfo{Name: "theirs", Type: "logical", Plugin: ptr("pgoutput"), Database: ptr("stock"), Active: true, WALStatus: ptr("lost")})
		}, wants: []want{{LevelWarn, "slot theirs", "theirs (database stock) is lost", "pg_drop_replication_slot('theirs')"}}},
		{name: "same database's other lost slot is an error", edit: func(f *Facts) {
			f.Slots = append(f.Slots, SlotInfo{Name: "mine2", Type: "logical", Plugin: ptr("pgoutput"), Database: ptr("orders"), Active: true, WALStatus: ptr("lost")})
		}, wants: []want{{LevelError, "slot mine2", "is lost", "pg_drop_replication_slot('mine2')"}}},
		{name: "forgotten slot elsewhere", edit: func(f *Facts) {
			f.Slots = append(f.Slots, SlotInfo{Name: "old", Type: "logical", Plugin: ptr("pgoutput"), Database: ptr("stock"), RetainedWALBytes: ptr[int64](5 << 30), WALStatus: ptr("reserved")})
		}, wants: []want{{LevelWarn, "slot old", "old (database stock) is inactive and retains 5.0 GiB", "a forgotten slot holds WAL forever"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := healthy()
			tt.edit(&f)
			got := Evaluate(f)
			if len(tt.wants) == 0 {
				for _, g := range got {
					assert.Equal(t, LevelOK, g.Level, "%+v", g)
				}
				return
			}
			for _, w := range tt.wants {
				found := false
				for _, g := range got {
					if g.Level == w.level && g.Check == w.check && strings.Contains(g.What, w.what) && strings.Contains(g.Fix, w.fix) {
						found = true
					}
				}
				assert.True(t, found, "want %+v in\n%s", w, dump(got))
			}
			// A rule fires alone: nothing else of the healthy facts degrades.
			for _, g := range got {
				if g.Level == LevelOK {
					continue
				}
				matched := false
				for _, w := range tt.wants {
					if g.Check == w.check || strings.HasPrefix(g.Check, "slot") && strings.HasPrefix(w.check, "slot") {
						matched = true
					}
				}
				assert.True(t, matched, "unexpected finding %+v", g)
			}
		})
	}
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s %s: %s | %s\n", f.Level, f.Check, f.What, f.Fix)
	}
	return b.String()
}

func TestEvaluateFailover(t *testing.T) {
	// ready is a Postgres 17 primary whose standby keeps the relay's slot.
	ready := func() Facts {
		f := healthy()
		f.Version = 170004
		f.Slots[0].Failover = ptr(true)
		f.Failover = FailoverFacts{Want: "auto", StreamingStandbys: 1, SynchronizedStandbySlots: "standby1", HostsInURL: 2,
			Standbys: []StandbyFacts{{Host: "db2:5432", SyncReplicationSlots: true, HotStandbyFeedback: true, PrimarySlotName: "standby1",
				ConninfoHasDBName: true, SlotFound: true, SlotSynced: true}}}
		return f
	}
	tests := []struct {
		name  string
		facts func() Facts
		level Level
		check string
		what  string // substring of a finding of that level and check
		fix   string
	}{
		{"ready", ready, LevelOK, "standby db2:5432", "ready for a promotion", ""},
		{"Postgres 15 with a standby", func() Facts { f := ready(); f.Version = 150010; return f },
			LevelWarn, "failover", "Postgres 15 has no failover slots", "4. Repair after a lost slot"},
		{"Postgres 15 without a standby", func() Facts { f := ready(); f.Version, f.Failover.StreamingStandbys = 150010, 0; return f },
			LevelOK, "failover", "no standby streams", ""},
		{"off", func() Facts { f := ready(); f.Failover.Want = "off"; return f }, LevelOK, "failover", "CDC_RELAY_SLOT_FAILOVER=off", ""},
		{"slot not a failover slot", func() Facts { f := ready(); f.Slots[0].Failover = ptr(false); return f },
			LevelError, "failover", "is not a failover slot", "CDC_RELAY_SLOT_FAILOVER=auto"},
		{"no synchronized_standby_slots", func() Facts { f := ready(); f.Failover.SynchronizedStandbySlots = ""; return f },
			LevelWarn, "failover", "synchronized_standby_slots is empty", "ALTER SYSTEM SET synchronized_standby_slots"},
		{"synchronized_standby_slots names a missing slot", func() Facts { f := ready(); f.Failover.MissingStandbySlots = []string{"gone"}; return f },
			LevelError, "failover", "names gone, which is not an active physical slot", ""},
		{"one host in the URL", func() Facts { f := ready(); f.Failover.Standbys, f.Failover.HostsInURL = nil, 1; return f },
			LevelWarn, "failover", "the database URL names one host", "postgres://primary,standby/db?target_session_attrs=primary"},
		{"sync off", func() Facts { f := ready(); f.Failover.Standbys[0].SyncReplicationSlots = false; return f },
			LevelError, "standby db2:5432", "sync_replication_slots is off", "on db2:5432: ALTER SYSTEM SET sync_replication_slots = on"},
		{"no feedback", func() Facts { f := ready(); f.Failover.Standbys[0].HotStandbyFeedback = false; return f },
			LevelError, "standby db2:5432", "hot_standby_feedback is off", "hot_standby_feedback = on"},
		{"no primary slot", func() Facts { f := ready(); f.Failover.Standbys[0].PrimarySlotName = ""; return f },
			LevelError, "standby db2:5432", "primary_slot_name is empty", "pg_create_physical_replication_slot"},
		{"no dbname", func() Facts { f := ready(); f.Failover.Standbys[0].ConninfoHasDBName = false; return f },
			LevelError, "standby db2:5432", "primary_conninfo names no database", "dbname=orders"},
		{"slot missing on the standby", func() Facts { f := ready(); f.Failover.Standbys[0].SlotFound = false; return f },
			LevelError, "standby db2:5432", "is not on the standby", ""},
		{"slot still temporary", func() Facts { f := ready(); f.Failover.Standbys[0].SlotTemporary = true; return f },
			LevelWarn, "standby db2:5432", "still temporary", ""},
		{"standby unreachable", func() Facts {
			f := ready()
			f.Failover.Standbys[0] = StandbyFacts{Host: "db2:5432", Err: "refused"}
			return f
		},
			LevelWarn, "standby db2:5432", "could not read the standby: refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.facts())
			found := false
			for _, g := range got {
				if g.Level == tt.level && g.Check == tt.check && strings.Contains(g.What, tt.what) && strings.Contains(g.Fix, tt.fix) {
					found = true
				}
			}
			assert.True(t, found, "want %s %s %q in\n%s", tt.level, tt.check, tt.what, dump(got))
		})
	}
}
