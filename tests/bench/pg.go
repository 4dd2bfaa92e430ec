package bench

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// RoutingKey is the routing key of every benchmark row.
const RoutingKey = "bench.v1"

// Publication is the publication the outbox migration creates.
const Publication = "cdc_relay_outbox"

// bodyPad makes a row's payload about 300 bytes as jsonb prints it:
// {"pad": "xxx…", "seq": 1, "writer": 0}.
const bodyPad = 260

// rowSQL is the values of one outbox row numbered by the SQL expression
// %[1]s. The row's number is its aggregate_id, which the relay sends as the
// aggregate_id header: consumers read it there without parsing the body.
var rowSQL = `'bench', (%[1]s)::text, 'bench.row', '` + RoutingKey + `',
	jsonb_build_object('writer', 0, 'seq', %[1]s, 'pad', repeat('x', ` + strconv.Itoa(bodyPad) + `)),
	jsonb_build_object('writer', '0')`

const insertColumns = `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, headers)`

// outboxDB creates a database with the outbox table and its publication and
// a pgoutput slot for each name in slots, created before any row is written:
// the relay refuses to create its slot on an outbox that already holds rows
// (it would skip them). Slots and database are dropped at cleanup.
func outboxDB(tb testing.TB, slots ...string) string {
	tb.Helper()
	dbURL := testenv.NewOutboxDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("create slots: connect: %v", err)
	}
	defer conn.Close(context.Background())
	for _, slot := range slots {
		if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
			tb.Fatalf("create slot %q: %v", slot, err)
		}
		slotsMu.Lock()
		slotsMade = append(slotsMade, slot)
		slotsMu.Unlock()
		tb.Cleanup(func() { testenv.DropSlot(tb, dbURL, slot) })
	}
	return dbURL
}

// The slots outboxDB made, to check that none is left behind.
var (
	slotsMu   sync.Mutex
	slotsMade []string
)

func madeSlots() []string {
	slotsMu.Lock()
	defer slotsMu.Unlock()
	return append([]string(nil), slotsMade...)
}

// dbName is the database a URL names.
func dbName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// execSQL runs statements on a new connection.
func execSQL(ctx context.Context, dbURL string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("run %.60q: %w", s, err)
		}
	}
	return nil
}

// writeBulk writes rows first..first+n-1 with INSERT … SELECT
// generate_series, in transactions of txn rows. synchronous_commit is off:
// it changes when the commit returns, not what the WAL holds.
func writeBulk(ctx context.Context, dbURL string, first, n, txn int) error {
	stmts := []string{"SET synchronous_commit = off"}
	for lo := first; lo < first+n; lo += txn {
		hi := min(lo+txn, first+n) - 1
		stmts = append(stmts, fmt.Sprintf("%s SELECT %s FROM generate_series(%d, %d) AS g ORDER BY g", insertColumns, fmt.Sprintf(rowSQL, "g"), lo, hi))
	}
	if err := execSQL(ctx, dbURL, stmts...); err != nil {
		return fmt.Errorf("write %d rows in transactions of %d: %w", n, txn, err)
	}
	return nil
}

// writeSingle writes rows first..first+n-1, one transaction per row, from a
// DO block that commits after each insert (Postgres 11+): the server runs
// the loop, so no round trip per row slows the writer.
func writeSingle(ctx context.Context, dbURL string, first, n int) error {
	do := fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP %s VALUES (%s); COMMIT; END LOOP; END $$`,
		first, first+n-1, insertColumns, fmt.Sprintf(rowSQL, "i"))
	if err := execSQL(ctx, dbURL, "SET synchronous_commit = off", do); err != nil {
		return fmt.Errorf("write %d single-row transactions: %w", n, err)
	}
	return nil
}

// pacedConns is the paced writer's connections.
const pacedConns = 4

// paced is the outcome of a paced writer: when each row's transaction
// returned from COMMIT, by row number (1-based; index 0 unused).
type paced struct {
	committed []time.Time
	began     time.Time
	ended     time.Time
}

// rate is the rate the writer achieved.
func (p *paced) rate() float64 {
	return float64(len(p.committed)-1) / p.ended.Sub(p.began).Seconds()
}

// writePaced writes rate single-row transactions per second for d, with
// synchronous_commit on (the walsender sends only flushed WAL, so an
// asynchronous commit would add up to wal_writer_delay to every latency).
// Row i is due at start + i/rate; a ticker releases due rows to a pool of
// connections, so a slow commit does not delay the rows after it.
func writePaced(ctx context.Context, dbURL string, rate int, d time.Duration) (*paced, error) {
	const conns = pacedConns
	n := int(float64(rate) * d.Seconds())
	p := &paced{committed: make([]time.Time, n+1)}
	due := make(chan int, n)
	errs := make(chan error, conns)
	insert := insertColumns + " VALUES (" + fmt.Sprintf(rowSQL, "$1::int") + ")"
	var wg sync.WaitGroup
	for range conns {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			close(due)
			wg.Wait()
			return nil, fmt.Errorf("paced writer: connect: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.WithoutCancel(ctx))
			for i := range due {
				if _, err := conn.Exec(ctx, insert, i); err != nil {
					errs <- fmt.Errorf("paced writer: insert row %d: %w", i, err)
					return
				}
				p.committed[i] = time.Now()
			}
		}()
	}
	p.began = time.Now()
	tick := time.NewTicker(time.Millisecond)
	next := 1
loop:
	for next <= n {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			close(due)
			wg.Wait()
			return nil, err
		case now := <-tick.C:
			for upto := min(n, int(now.Sub(p.began).Seconds()*float64(rate))); next <= upto; next++ {
				due <- next
			}
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	p.ended = time.Now()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("paced writer: %w", err)
	}
	return p, nil
}

// xactCommits is pg_stat_database.xact_commit of database name, read on the
// server's maintenance connection so the reading is not counted.
func xactCommits(ctx context.Context, serverURL, name string) (int64, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return 0, fmt.Errorf("read xact_commit of %q: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	if err := conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = $1`, name).Scan(&n); err != nil {
		return 0, fmt.Errorf("read xact_commit of %q: %w", name, err)
	}
	return n, nil
}

// leftoverSlots returns those of slots that still exist.
func leftoverSlots(ctx context.Context, serverURL string, slots []string) ([]string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("list slots: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name = ANY($1)`, slots)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	return left, nil
}
