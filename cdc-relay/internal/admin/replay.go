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
)

// Replayed is the result of replay.
type Replayed struct {
	// Since and Until bound created_at: since inclusive, until exclusive.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Rows is the number of rows published and confirmed (counted, with DryRun).
	Rows int `json:"rows"`
	// First and Last are the created_at of the first and last row replayed.
	First *time.Time `json:"first_created_at"`
	Last  *time.Time `json:"last_created_at"`
	// InvalidHeaders counts rows whose headers column is not a JSON object;
	// they were sent as the daemon sends them (see outbox.Message).
	InvalidHeaders int    `json:"invalid_headers"`
	Exchange       string `json:"exchange"`
	DryRun         bool   `json:"dry_run"`
}

// runReplay re-publishes the outbox rows created in [since, until) with the
// daemon's own mapping (outbox.Message, same source), so each message is the
// one the stream would have sent, message_id included, and consumers' dedup
// absorbs any overlap with what was already delivered.
//
// Order is (created_at, ctid). created_at is now() of the inserting
// transaction (its start time), so rows of one transaction share it; within
// it, ctid (the row's physical place) follows insertion order as long as the
// rows were appended to the heap, which is how an append-only outbox grows
// (id, a random uuid, would shuffle them). Transactions are ordered by
// start, not commit: close to, but not exactly, the order the stream
// delivers; consumers are idempotent by state as well as by message id.
//
// Rows are read in pages by keyset (created_at, ctid), each page its own short
// query: memory stays bounded by --batch-size plus the publish window, and no
// long transaction holds back vacuum on the service's database.
func runReplay(ctx context.Context, o options, stdout, stderr io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := Replayed{Since: o.since.UTC(), Until: o.until.UTC(), Exchange: o.exchange, DryRun: o.dryRun}
	if o.dryRun {
		err = countRows(ctx, conn, o, &r)
	} else {
		err = replayRows(ctx, conn, o, &r, stderr)
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
	if r.First != nil {
		span = fmt.Sprintf(", created from %s to %s", r.First.UTC().Format(time.RFC3339Nano), r.Last.UTC().Format(time.RFC3339Nano))
	}
	_, err = fmt.Fprintf(stdout, "%s %d row(s) of %s%s to exchange %q\n", verb, r.Rows, o.table, span, o.exchange)
	return err
}

func countRows(ctx context.Context, conn *pgx.Conn, o options, r *Replayed) error {
	q := fmt.Sprintf(`SELECT count(*), min(created_at), max(created_at) FROM %s WHERE created_at >= $1 AND created_at < $2`,
		pgx.Identifier{o.table.Schema, o.table.Name}.Sanitize())
	if err := conn.QueryRow(ctx, q, o.since, o.until).Scan(&r.Rows, &r.First, &r.Last); err != nil {
		return fmt.Errorf("replay: count rows of %s: %w", o.table, err)
	}
	return nil
}

// page holds the queries of the first page and of every page after the
// cursor (created_at, ctid) of the previous one.
type page struct {
	first, next string
}

func pageQueries(o options) page {
	// ctid is selected under another name: ORDER BY ctid would otherwise
	// sort by the output column, the text "(0,10)" before "(0,9)".
	cols := `SELECT id::text, aggregate_type, aggregate_id, event_type, routing_key, payload::text, headers::text, created_at, ctid::text AS row_ctid FROM ` +
		pgx.Identifier{o.table.Schema, o.table.Name}.Sanitize()
	return page{
		first: cols + ` WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, ctid LIMIT $3`,
		// created_at >= $4 repeats the row comparison's leading column so
		// the created_at index bounds the scan.
		next: cols + ` WHERE created_at >= $1 AND created_at < $2 AND created_at >= $4 AND (created_at, ctid) > ($4, $5::tid)
			ORDER BY created_at, ctid LIMIT $3`,
	}
}

// cursor is the keyset position after a page.
type cursor struct {
	createdAt time.Time
	ctid      string
}

func readPage(ctx context.Context, conn *pgx.Conn, q page, o options, after *cursor, buf []outbox.Row) ([]outbox.Row, cursor, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = conn.Query(ctx, q.first, o.since, o.until, o.batchSize)
	} else {
		rows, err = conn.Query(ctx, q.next, o.since, o.until, o.batchSize, after.createdAt, after.ctid)
	}
	if err != nil {
		return nil, cursor{}, err
	}
	defer rows.Close()
	buf = buf[:0]
	var last cursor
	for rows.Next() {
		var row outbox.Row
		var payload, headers string
		if err := rows.Scan(&row.ID, &row.AggregateType, &row.AggregateID, &row.EventType, &row.RoutingKey, &payload, &headers, &row.CreatedAt, &last.ctid); err != nil {
			return nil, cursor{}, err
		}
		// jsonb's text output is what pgoutput sends for the column, so the
		// body is byte for byte the streamed one.
		row.Payload, row.Headers = []byte(payload), []byte(headers)
		last.createdAt = row.CreatedAt
		buf = append(buf, row)
	}
	return buf, last, rows.Err()
}

func replayRows(ctx context.Context, conn *pgx.Conn, o options, r *Replayed, stderr io.Writer) error {
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	source := outbox.Source(db, o.table.String())

	pub, err := publisher.Dial(ctx, o.amqpURL, o.exchange, o.maxInFlight)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer pub.Close()

	t := newTally()
	g, gctx := errgroup.WithContext(ctx)
	confirmCtx, stopConfirms := context.WithCancel(gctx)
	defer stopConfirms()
	g.Go(func() error { return pub.Confirms(confirmCtx, t) })
	published := 0
	g.Go(func() error {
		defer stopConfirms()
		q := pageQueries(o)
		var buf []outbox.Row
		var after *cursor
		for {
			rows, last, err := readPage(gctx, conn, q, o, after, buf)
			if err != nil {
				return fmt.Errorf("read rows of %s: %w", o.table, err)
			}
			for _, row := range rows {
				msg, warn := outbox.Message(row, source)
				if warn != nil {
					r.InvalidHeaders++
					fmt.Fprintf(stderr, "cdc-relay: warning: %v; sent with the raw headers under %s, as the relay does\n", warn, outbox.HeaderInvalidHeaders)
				}
				if err := pub.Acquire(gctx); err != nil {
					return err
				}
				if _, err := pub.Publish(gctx, row.RoutingKey, msg, row.CreatedAt); err != nil {
					return err
				}
				published++
				if r.First == nil {
					first := row.CreatedAt
					r.First = &first
				}
				last := row.CreatedAt
				r.Last = &last
			}
			if len(rows) < o.batchSize {
				break
			}
			after, buf = &last, rows
		}
		return t.wait(gctx, published)
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("replay: %d row(s) published, %d confirmed (rerunning is safe: consumers dedup by message id): %w", published, t.count(), err)
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
