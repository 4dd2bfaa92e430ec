package admin

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// Replayed is the result of replay.
type Replayed struct {
	// Since and Until bound the commit time of the rows' transactions (their
	// created_at when the server does not track commit timestamps): since
	// inclusive, until exclusive.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Order says how rows were selected and ordered (replication.RowOrder).
	Order string `json:"order"`
	// Rows is the number of rows published and confirmed (counted, with DryRun).
	Rows int `json:"rows"`
	// FirstCommitted and LastCommitted are the commit times of the first and
	// last row replayed.
	FirstCommitted *time.Time `json:"first_committed_at"`
	LastCommitted  *time.Time `json:"last_committed_at"`
	// First and Last are the created_at of the first and last row replayed.
	First *time.Time `json:"first_created_at"`
	Last  *time.Time `json:"last_created_at"`
	// InvalidHeaders counts rows whose headers column is not a JSON object;
	// they were sent as the daemon sends them (see outbox.Message).
	InvalidHeaders int    `json:"invalid_headers"`
	Exchange       string `json:"exchange"`
	DryRun         bool   `json:"dry_run"`
}

// runReplay re-publishes the outbox rows whose transaction committed in
// [since, until) with the daemon's own mapping (outbox.Message, same source),
// so each message is the one the stream would have sent, message_id
// included, and consumers' dedup absorbs any overlap with what was already
// delivered.
//
// The order is the stream's as far as the table keeps it
// (replication.RowOrder): transactions by commit time when
// track_commit_timestamp is on, rows of a transaction by the seq column when
// the table has it. Without track_commit_timestamp rows are selected and
// ordered by created_at, the transaction's start: a warning says how to
// widen --since. Rows are read through one cursor in a read-only REPEATABLE
// READ transaction, --batch-size at a time: memory stays bounded by the
// batch and the publish window, and every row is of one snapshot.
func runReplay(ctx context.Context, o options, stdout, stderr io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := replication.Target{Schema: o.table.Schema, Table: o.table.Name}
	order, err := replayOrder(ctx, conn, t, stderr)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	r := Replayed{Since: o.since.UTC(), Until: o.until.UTC(), Order: order.Describe(), Exchange: o.exchange, DryRun: o.dryRun}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if o.dryRun {
		err = countRows(ctx, tx, t, order, o, &r)
	} else {
		err = replayRows(ctx, tx, t, order, o, &r, stderr)
	}
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, r)
	}
	verb := "replayed"
	if r.DryRun {
		verb = "would replay"
	}
	span := ""
	if r.FirstCommitted != nil {
		span = fmt.Sprintf(", committed from %s to %s", r.FirstCommitted.UTC().Format(time.RFC3339Nano), r.LastCommitted.UTC().Format(time.RFC3339Nano))
	}
	_, err = fmt.Fprintf(stdout, "%s %d row(s) of %s%s to exchange %q\n", verb, r.Rows, o.table, span, o.exchange)
	return err
}

// replayOrder is the best order the table and server allow, with a warning
// for each thing that makes it worse than the stream's.
func replayOrder(ctx context.Context, conn *pgx.Conn, t replication.Target, stderr io.Writer) (replication.RowOrder, error) {
	tab, err := replication.CheckTable(ctx, conn, t)
	if err != nil {
		return replication.RowOrder{}, err
	}
	var commitTS string
	if err := conn.QueryRow(ctx, `SELECT current_setting('track_commit_timestamp')`).Scan(&commitTS); err != nil {
		return replication.RowOrder{}, err
	}
	order := replication.RowOrder{CommitTimestamps: commitTS == "on", Seq: tab.HasSeq}
	if !order.CommitTimestamps {
		fmt.Fprintln(stderr, "cdc-relay: warning: track_commit_timestamp is off: rows are selected and ordered by created_at, their transaction's start, "+
			"so a transaction that started before --since and committed after it is left out: pass a --since earlier by the longest a transaction runs "+
			"(consumers dedup the extra rows), and turn it on for the next time: ALTER SYSTEM SET track_commit_timestamp = on; then restart Postgres")
	}
	if !order.Seq {
		fmt.Fprintf(stderr, "cdc-relay: warning: %s has no %s column: rows of one transaction are replayed in physical order, which a table that DELETEs and VACUUM reuse can break: "+
			"ALTER TABLE %s ADD COLUMN %s bigint GENERATED ALWAYS AS IDENTITY;\n", t, replication.SeqColumn, pgx.Identifier{t.Schema, t.Table}.Sanitize(), replication.SeqColumn)
	}
	return order, nil
}

func countRows(ctx context.Context, tx pgx.Tx, t replication.Target, order replication.RowOrder, o options, r *Replayed) error {
	c := order.Committed()
	q := fmt.Sprintf(`SELECT count(*), min(%[1]s), max(%[1]s), min(created_at), max(created_at) FROM %[2]s WHERE %[1]s >= $1 AND %[1]s < $2`,
		c, pgx.Identifier{t.Schema, t.Table}.Sanitize())
	if err := tx.QueryRow(ctx, q, o.since, o.until).Scan(&r.Rows, &r.FirstCommitted, &r.LastCommitted, &r.First, &r.Last); err != nil {
		return fmt.Errorf("replay: count rows of %s: %w", o.table, err)
	}
	return nil
}

func replayRows(ctx context.Context, tx pgx.Tx, t replication.Target, order replication.RowOrder, o options, r *Replayed, stderr io.Writer) error {
	var db string
	if err := tx.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	source := outbox.Source(db, o.table.String())

	pub, err := publisher.Dial(ctx, o.amqpURL, o.exchange, o.maxInFlight, 1)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer pub.Close()

	tl := newTally()
	g, gctx := errgroup.WithContext(ctx)
	confirmCtx, stopConfirms := context.WithCancel(gctx)
	defer stopConfirms()
	g.Go(func() error { return pub.Confirms(confirmCtx, tl) })
	published := 0
	g.Go(func() error {
		defer stopConfirms()
		err := replication.ReadRows(gctx, tx, t, order, replication.Window{Since: o.since, Until: o.until}, o.batchSize, func(row replication.StoredRow) error {
			msg, warn := outbox.Message(row.Row, source)
			if warn != nil {
				r.InvalidHeaders++
				fmt.Fprintf(stderr, "cdc-relay: warning: %v; sent with the raw headers under %s, as the relay does\n", warn, outbox.HeaderInvalidHeaders)
			}
			if err := outbox.Check(row.Row, msg, pub.FrameMax()); err != nil {
				return fmt.Errorf("%w; the relay parks such a row with CDC_RELAY_POISON=park, replay does not publish it", err)
			}
			if err := pub.Acquire(gctx); err != nil {
				return err
			}
			if _, err := pub.Publish(gctx, row.RoutingKey, msg, row.Committed); err != nil {
				return err
			}
			published++
			if r.First == nil {
				first, committed := row.CreatedAt, row.Committed
				r.First, r.FirstCommitted = &first, &committed
			}
			last, committed := row.CreatedAt, row.Committed
			r.Last, r.LastCommitted = &last, &committed
			return nil
		})
		if err != nil {
			return err
		}
		return tl.wait(gctx, published)
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("replay: %d row(s) published, %d confirmed (rerunning is safe: consumers dedup by message id): %w", published, tl.count(), err)
	}
	r.Rows = published
	return nil
}

// tally counts confirms (publisher.Handler) and tells when a number of them
// has arrived. Returns and nacks need no handling here: Confirms returns
// them as its error, which ends the replay.
type tally struct {
	mu        sync.Mutex
	confirmed int
	want      int
	done      chan struct{}
}

func newTally() *tally { return &tally{want: -1, done: make(chan struct{})} }

func (t *tally) Confirmed(uint64, time.Time, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.confirmed++
	t.check()
}

func (t *tally) Failed(*publisher.Failure) {}

// Blocked implements publisher.Handler: a blocked broker only slows a replay.
func (t *tally) Blocked(bool, string) {}

func (t *tally) check() {
	if t.want >= 0 && t.confirmed >= t.want {
		select {
		case <-t.done:
		default:
			close(t.done)
		}
	}
}

func (t *tally) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed
}

// wait returns once n messages are confirmed.
func (t *tally) wait(ctx context.Context, n int) error {
	t.mu.Lock()
	t.want = n
	t.check()
	t.mu.Unlock()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
