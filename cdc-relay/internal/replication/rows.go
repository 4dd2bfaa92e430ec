package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/cdc-relay/internal/outbox"
)

// RowOrder is how outbox rows are read back from the table, as close to the
// stream's order as the table allows: transactions in commit order, rows of
// one transaction in insertion order.
type RowOrder struct {
	// CommitTimestamps (track_commit_timestamp = on) orders transactions by
	// their commit time. Without it, by created_at: now() of the inserting
	// transaction, its start, which a transaction that started earlier and
	// committed later gets wrong.
	CommitTimestamps bool
	// Seq orders rows of a transaction by the insertion-order column;
	// without it by xmin and ctid, which follows insertion order only while
	// the heap is appended to (a heap that DELETEs and VACUUM let reuse space
	// breaks it).
	Seq bool
}

// OrderOf is the best order the table and server allow.
func OrderOf(p Prepared) RowOrder {
	return RowOrder{CommitTimestamps: p.CommitTimestamps, Seq: p.Table.HasSeq}
}

// Committed is the SQL expression of a row's transaction commit time (its
// start, created_at, where Postgres does not know it).
func (o RowOrder) Committed() string {
	if o.CommitTimestamps {
		// NULL for transactions that committed before
		// track_commit_timestamp was turned on.
		return "COALESCE(pg_xact_commit_timestamp(xmin), created_at)"
	}
	return "created_at"
}

func (o RowOrder) orderBy() string {
	if o.Seq {
		return o.Committed() + ", " + SeqColumn
	}
	return o.Committed() + ", xmin::text::bigint, ctid"
}

// Describe says in words what the order is, for operators.
func (o RowOrder) Describe() string {
	by := "commit time"
	if !o.CommitTimestamps {
		by = "created_at (transaction start: track_commit_timestamp is off)"
	}
	within := "insertion order (" + SeqColumn + ")"
	if !o.Seq {
		within = "physical order (ctid: no " + SeqColumn + " column)"
	}
	return "transactions by " + by + ", rows of a transaction by " + within
}

// StoredRow is an outbox row read from the table, with the commit time of
// its transaction (RowOrder.Committed).
type StoredRow struct {
	outbox.Row
	Committed time.Time
}

// Window bounds the rows read by RowOrder.Committed: from Since (inclusive)
// to Until (exclusive). Zero times do not bound.
type Window struct {
	Since, Until time.Time
}

// ReadRows reads the outbox rows of tx in order through a cursor, batch at a
// time, and calls fn for each: memory stays bounded by the batch however
// many rows there are. tx should be REPEATABLE READ, so the rows are those of
// one snapshot.
func ReadRows(ctx context.Context, tx pgx.Tx, t Target, o RowOrder, w Window, batch int, fn func(StoredRow) error) error {
	q := fmt.Sprintf(`DECLARE cdc_relay_rows NO SCROLL CURSOR FOR
		SELECT id::text, aggregate_type, aggregate_id, event_type, routing_key, payload::text, headers::text, created_at, %[1]s
		FROM %[2]s
		WHERE ($1::timestamptz IS NULL OR %[1]s >= $1) AND ($2::timestamptz IS NULL OR %[1]s < $2)
		ORDER BY %[3]s`, o.Committed(), t.qualified(), o.orderBy())
	if _, err := tx.Exec(ctx, q, optTime(w.Since), optTime(w.Until)); err != nil {
		return fmt.Errorf("read rows of %s: %w", t, err)
	}
	fetch := fmt.Sprintf(`FETCH FORWARD %d FROM cdc_relay_rows`, batch)
	buf := make([]StoredRow, 0, batch)
	for {
		rows, err := tx.Query(ctx, fetch)
		if err != nil {
			return fmt.Errorf("read rows of %s: %w", t, err)
		}
		buf = buf[:0]
		for rows.Next() {
			var r StoredRow
			var payload, headers string
			if err := rows.Scan(&r.ID, &r.AggregateType, &r.AggregateID, &r.EventType, &r.RoutingKey, &payload, &headers, &r.CreatedAt, &r.Committed); err != nil {
				rows.Close()
				return fmt.Errorf("read rows of %s: %w", t, err)
			}
			// jsonb's text output is what pgoutput sends for the column, so
			// the body is byte for byte the streamed one.
			r.Payload, r.Headers = []byte(payload), []byte(headers)
			buf = append(buf, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read rows of %s: %w", t, err)
		}
		for _, r := range buf {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(buf) < batch {
			_, err := tx.Exec(ctx, `CLOSE cdc_relay_rows`)
			return err
		}
	}
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Snapshot is an imported exported snapshot: a read-only REPEATABLE READ
// transaction that sees the database exactly as the slot's consistent
// point left it.
type Snapshot struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

// ImportSnapshot opens a connection and a transaction on the exported
// snapshot name. It must run before the exporting replication connection
// runs its next command; the transaction keeps the snapshot after that.
func ImportSnapshot(ctx context.Context, dbURL, name string) (*Snapshot, error) {
	conn, err := Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		_, err = tx.Exec(ctx, `SET TRANSACTION SNAPSHOT `+quoteLiteral(name))
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("import the slot's snapshot %s: %w", name, err)
	}
	return &Snapshot{conn: conn, tx: tx}, nil
}

// Rows reads the outbox rows visible in the snapshot, in order (ReadRows).
func (s *Snapshot) Rows(ctx context.Context, t Target, o RowOrder, batch int, fn func(StoredRow) error) error {
	return ReadRows(ctx, s.tx, t, o, Window{}, batch, fn)
}

// Close ends the transaction and the connection.
func (s *Snapshot) Close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_ = s.tx.Rollback(ctx)
	_ = s.conn.Close(ctx)
}
