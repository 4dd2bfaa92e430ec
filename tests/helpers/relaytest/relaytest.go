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
			c.add(d)
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

// WriteThrough is Write that carries on through a server restart: on an
// error it reconnects (until ctx ends), reads back the last row of writer
// that committed, and goes on after it. An insert whose commit was lost
// with the connection is thus neither lost nor written twice.
func WriteThrough(ctx context.Context, dbURL string, writer, n, maxTxn int, key string) error {
	next := 1
	for next <= n {
		err := Write(ctx, dbURL, writer, next, n-next+1, maxTxn, key)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		for {
			last, lerr := lastSeq(ctx, dbURL, writer, key)
			if lerr == nil {
				next = last + 1
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("writer %d: %w (last error: %v)", writer, ctx.Err(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// WriteAllThrough runs writers WriteThrough calls at once.
func WriteAllThrough(ctx context.Context, dbURL string, writers, perWriter, maxTxn int, key string) error {
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = WriteThrough(ctx, dbURL, w, perWriter, maxTxn, key)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func lastSeq(ctx context.Context, dbURL string, writer int, key string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var last int
	err = conn.QueryRow(cctx, `SELECT coalesce(max((payload->>'seq')::int), 0) FROM outbox WHERE aggregate_id = $1::int::text AND routing_key = $2`, writer, key).Scan(&last)
	return last, err
}

// CollectThrough is Collect on queue of the broker at amqpURL, consuming
// again after the broker restarts (the queue is durable and the messages
// persistent, so none is lost meanwhile). It stops at the end of the test.
func CollectThrough(t testing.TB, amqpURL, queue string) *Collector {
	t.Helper()
	c := &Collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			conn, err := amqp.Dial(amqpURL)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			c.consume(ctx, conn, queue)
			conn.Close()
		}
	}()
	return c
}

// consume reads queue with manual acks, a message acked once recorded: with
// automatic acks the broker counts what it wrote to the socket as
// delivered, and a broker restart would lose what the test had not read
// yet. A redelivery of a message already recorded is the broker's, not the
// relay's, and is not recorded again.
func (c *Collector) consume(ctx context.Context, conn *amqp.Connection, queue string) {
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if err := ch.Qos(500, 0, false); err != nil {
		return
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			if !(d.Redelivered && c.has(d.MessageId)) {
				c.add(d)
			}
			_ = d.Ack(false)
		}
	}
}

func (c *Collector) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if c.msgs[i].MessageId == id {
			return true
		}
	}
	return false
}

func (c *Collector) add(d amqp.Delivery) {
	var p Payload
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal(d.Body, &p); err != nil {
		c.bad = append(c.bad, fmt.Sprintf("%s: %v", d.Body, err))
		return
	}
	c.msgs = append(c.msgs, Message{Payload: p, Delivery: d})
}

// Figures are what a fault test measures of what arrived.
type Figures struct {
	Written         int // rows the writers committed
	Received        int // messages, duplicates included
	Lost            int // rows that never arrived
	OrderViolations int // first arrivals of a writer's row after a later row of the same writer
	Duplicates      int // messages that repeat an earlier one
}

// Measure counts, without failing the test, what Check asserts.
func (c *Collector) Measure(writers, perWriter int) Figures {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := Figures{Written: writers * perWriter, Received: len(c.msgs)}
	seen := map[string]bool{}
	rows := map[[2]int]bool{}
	high := make([]int, writers)
	for _, m := range c.msgs {
		if seen[m.MessageId] {
			f.Duplicates++
			continue
		}
		seen[m.MessageId] = true
		if m.Writer < 0 || m.Writer >= writers {
			continue
		}
		rows[[2]int{m.Writer, m.Seq}] = true
		if m.Seq < high[m.Writer] {
			f.OrderViolations++
		}
		high[m.Writer] = max(high[m.Writer], m.Seq)
	}
	for w := range writers {
		for s := 1; s <= perWriter; s++ {
			if !rows[[2]int{w, s}] {
				f.Lost++
			}
		}
	}
	return f
}
