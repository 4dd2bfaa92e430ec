// Package relaytest holds what the relay's integration and fault tests share:
// writers that fill an outbox with numbered rows, a collector of what arrives
// on a queue, and the check that nothing was lost and order was kept.
package relaytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// Payload is the body of every test row.
type Payload struct {
	Writer int `json:"writer"`
	Seq    int `json:"seq"`
}

// Write inserts rows seq first..first+n-1 of writer into the outbox of dbURL,
// in transactions of 1 to maxTxn rows, each row with routing key key. Rows of
// one transaction are inserted in seq order, transactions one after another,
// so the writer's commit order is its seq order.
func Write(ctx context.Context, dbURL string, writer, first, n, maxTxn int, key string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("writer %d: connect: %w", writer, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for seq := first; seq < first+n; {
		size := min(1+rand.IntN(maxTxn), first+n-seq)
		_, err := conn.Exec(ctx, `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, routing_key, payload, headers)
			SELECT 'test', ($1::int)::text, 'test.row', $4::text,
			       jsonb_build_object('writer', $1::int, 'seq', g),
			       jsonb_build_object('writer', $1::int, 'seq_text', g::text, 'even', g % 2 = 0)
			FROM generate_series($2::int, $3::int) AS g ORDER BY g`, writer, seq, seq+size-1, key)
		if err != nil {
			return fmt.Errorf("writer %d: insert rows %d..%d: %w", writer, seq, seq+size-1, err)
		}
		seq += size
	}
	return nil
}

// WriteAll runs writers Write calls at once, each of perWriter rows starting
// at seq 1, and waits for them.
func WriteAll(ctx context.Context, dbURL string, writers, perWriter, maxTxn int, key string) error {
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = Write(ctx, dbURL, w, 1, perWriter, maxTxn, key)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WriteConcurrently is WriteAll that fails the test on an error.
func WriteConcurrently(t testing.TB, dbURL string, writers, perWriter, maxTxn int, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, WriteAll(ctx, dbURL, writers, perWriter, maxTxn, key))
}

// Message is a delivery with its decoded payload.
type Message struct {
	Payload
	amqp.Delivery
}

// Collector gathers deliveries in arrival order.
type Collector struct {
	mu   sync.Mutex
	msgs []Message
	bad  []string
}

// Collect reads deliveries until the channel closes.
func Collect(deliveries <-chan amqp.Delivery) *Collector {
	c := &Collector{}
	go func() {
		for d := range deliveries {
			var p Payload
			c.mu.Lock()
			if err := json.Unmarshal(d.Body, &p); err != nil {
				c.bad = append(c.bad, fmt.Sprintf("%s: %v", d.Body, err))
			} else {
				c.msgs = append(c.msgs, Message{Payload: p, Delivery: d})
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// Len is the number of messages received.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// Messages is a copy of what was received, in order.
func (c *Collector) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

// Distinct is the number of distinct message ids received.
func (c *Collector) Distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range c.msgs {
		seen[m.MessageId] = true
	}
	return len(seen)
}

// WaitDistinct waits until want distinct messages arrived.
func (c *Collector) WaitDistinct(t testing.TB, want int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return c.Distinct() >= want }, within, 20*time.Millisecond,
		"want %d distinct messages, have %d", want, c.Distinct())
}

// Check verifies that every row 1..perWriter of every writer arrived, that
// each writer's rows arrived in its commit order once duplicates are set
// aside, and that duplicates repeat an earlier message exactly (same id, same
// body). It returns the number of duplicates.
func (c *Collector) Check(t testing.TB, writers, perWriter int) (duplicates int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.bad, "messages that are not test rows")
	byID := map[string]Message{}
	next := make([]int, writers) // last seq seen in order, per writer
	for i, m := range c.msgs {
		if prev, ok := byID[m.MessageId]; ok {
			require.Equal(t, prev.Payload, m.Payload, "duplicate %s carries another row", m.MessageId)
			duplicates++
			continue
		}
		byID[m.MessageId] = m
		require.True(t, m.Writer >= 0 && m.Writer < writers, "message %d from unknown writer %d", i, m.Writer)
		if m.Seq <= next[m.Writer] {
			// A row seen before under another id would be a lost-order bug.
			require.Fail(t, "order broken", "writer %d: seq %d arrived after seq %d (message %d)", m.Writer, m.Seq, next[m.Writer], i)
		}
		require.Equal(t, next[m.Writer]+1, m.Seq, "writer %d: seq %d arrived before seq %d: a row was lost or reordered", m.Writer, m.Seq, next[m.Writer]+1)
		next[m.Writer] = m.Seq
	}
	for w, n := range next {
		require.Equal(t, perWriter, n, "writer %d: rows missing after seq %d", w, n)
	}
	return duplicates
}
