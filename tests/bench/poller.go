package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
)

// pollerDB is an outbox database for the polling relay: the outbox of
// docs/contracts.md, "The outbox table", plus the sent_at column a polling
// relay marks, and the partial index its query needs.
func pollerDB(tb testing.TB) string {
	tb.Helper()
	dbURL := testenv.NewOutboxDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := execSQL(ctx, dbURL,
		`ALTER TABLE outbox ADD COLUMN sent_at timestamptz`,
		`CREATE INDEX outbox_unsent_idx ON outbox (created_at) WHERE sent_at IS NULL`)
	if err != nil {
		tb.Fatalf("prepare the polling relay's outbox: %v", err)
	}
	return dbURL
}

// poller is the baseline: the original system's polling outbox relay. Each
// poll, in one transaction, selects up to batch unsent rows FOR UPDATE SKIP
// LOCKED (so several pollers could share the table), publishes them with
// confirms, marks them sent and commits. It polls again at once after a full
// batch and waits interval after a short one.
type poller struct {
	dbURL, amqpURL, exchange string
	batch                    int
	interval                 time.Duration

	statements atomic.Int64 // statements sent to Postgres
	sent       atomic.Int64
}

const pollSQL = `SELECT id::text, aggregate_type, aggregate_id, event_type, routing_key, payload::text, headers::text, created_at
	FROM outbox WHERE sent_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`

// run polls until ctx ends; started is called once it is connected.
func (p *poller) run(ctx context.Context, started func()) error {
	conn, err := pgx.Connect(ctx, p.dbURL)
	if err != nil {
		return fmt.Errorf("poller: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pub, err := newConfirmer(ctx, p.amqpURL, p.exchange, p.batch)
	if err != nil {
		return fmt.Errorf("poller: %w", err)
	}
	defer pub.close()
	started()
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
		n, err := p.once(ctx, conn, pub)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("poller: %w", err)
		}
		if n == p.batch {
			wait.Reset(0)
		} else {
			wait.Reset(p.interval)
		}
	}
}

// once runs one poll and returns the number of rows it sent.
func (p *poller) once(ctx context.Context, conn *pgx.Conn, pub *confirmer) (int, error) {
	tx, err := conn.Begin(ctx)
	p.statements.Add(1)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, pollSQL, p.batch)
	p.statements.Add(1)
	if err != nil {
		return 0, fmt.Errorf("select unsent rows: %w", err)
	}
	var (
		ids  []string
		msgs []amqp.Publishing
	)
	for rows.Next() {
		var (
			id, aggType, aggID, evType, key, payload, headers string
			created                                           time.Time
		)
		if err := rows.Scan(&id, &aggType, &aggID, &evType, &key, &payload, &headers, &created); err != nil {
			return 0, fmt.Errorf("read unsent row: %w", err)
		}
		msg, err := pollMessage(id, aggType, aggID, evType, payload, headers, created)
		if err != nil {
			return 0, err
		}
		ids = append(ids, id)
		msgs = append(msgs, msg)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("select unsent rows: %w", err)
	}
	for _, m := range msgs {
		if err := pub.publish(ctx, m); err != nil {
			return 0, err
		}
	}
	for range msgs {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case c, ok := <-pub.confirms:
			if !ok {
				return 0, fmt.Errorf("confirms: channel closed")
			}
			<-pub.slots
			if !c.Ack {
				return 0, fmt.Errorf("message %d nacked", c.DeliveryTag)
			}
		}
	}
	if len(ids) > 0 {
		_, err := tx.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE id = ANY($1::uuid[])`, ids)
		p.statements.Add(1)
		if err != nil {
			return 0, fmt.Errorf("mark %d rows sent: %w", len(ids), err)
		}
	}
	err = tx.Commit(ctx)
	p.statements.Add(1)
	if err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	p.sent.Add(int64(len(ids)))
	return len(ids), nil
}

// pollMessage maps a row as the relay does (docs/contracts.md, "Message mapping"), headers included,
// so both relays do the same work per message.
func pollMessage(id, aggType, aggID, evType, payload, headers string, created time.Time) (amqp.Publishing, error) {
	var h map[string]any
	if err := json.Unmarshal([]byte(headers), &h); err != nil {
		return amqp.Publishing{}, fmt.Errorf("row %s: headers: %w", id, err)
	}
	t := amqp.Table{}
	for k, v := range h {
		if s, ok := v.(string); ok {
			t[k] = s
		}
	}
	created = created.UTC()
	t["aggregate_type"] = aggType
	t["aggregate_id"] = aggID
	t["cloudEvents_specversion"] = "1.0"
	t["cloudEvents_id"] = id
	t["cloudEvents_source"] = "/saga-bench/poller"
	t["cloudEvents_type"] = evType
	t["cloudEvents_time"] = created.Format(time.RFC3339Nano)
	t["cloudEvents_subject"] = aggID
	return amqp.Publishing{
		Headers:      t,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         evType,
		Timestamp:    created,
		Body:         []byte(payload),
	}, nil
}
