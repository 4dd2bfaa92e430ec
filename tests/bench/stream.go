package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// openStream opens a replication connection and starts streaming slot from
// its confirmed position with pgoutput protocol version 1, as the relay does.
func openStream(ctx context.Context, dbURL, slot string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "saga-bench"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + Publication + "'"},
	})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("start replication on slot %q: %w", slot, err)
	}
	return conn, nil
}

// errStop ends readStream without an error.
var errStop = errors.New("stop")

// readStream decodes the stream and hands each pgoutput message to fn until
// fn returns errStop, fn fails, or ctx ends (nil). Every 100 ms, and when the
// server asks, it reports flush() as the write, flush and apply positions.
func readStream(ctx context.Context, conn *pgconn.PgConn, fn func(walStart pglogrepl.LSN, m pglogrepl.Message) error, flush func() pglogrepl.LSN) error {
	const statusEvery = 100 * time.Millisecond
	next := time.Now().Add(statusEvery)
	status := func(force bool) error {
		if !force && time.Now().Before(next) {
			return nil
		}
		next = time.Now().Add(statusEvery)
		f := flush()
		if f == 0 {
			return nil
		}
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: f, WALFlushPosition: f, WALApplyPosition: f,
		})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("send standby status: %w", err)
		}
		return nil
	}
	for ctx.Err() == nil {
		if err := status(false); err != nil {
			return err
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ReplyRequested {
					if err := status(true); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				msg, err := pglogrepl.Parse(xld.WALData)
				if err != nil {
					return fmt.Errorf("decode pgoutput message at %s: %w", xld.WALStart, err)
				}
				if err := fn(xld.WALStart, msg); err != nil {
					if errors.Is(err, errStop) {
						return nil
					}
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		default:
			return fmt.Errorf("replication stream: unexpected message %T", raw)
		}
	}
	return nil
}

// decodeLimit streams slot with a bare client that only decodes, until it
// has decoded want inserts, and returns how long that took from the start
// of replication.
func decodeLimit(ctx context.Context, dbURL, slot string, want int) (time.Duration, error) {
	began := time.Now()
	conn, err := openStream(ctx, dbURL, slot)
	if err != nil {
		return 0, fmt.Errorf("decode limit: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var inserts int
	var committed pglogrepl.LSN
	err = readStream(ctx, conn, func(_ pglogrepl.LSN, m pglogrepl.Message) error {
		switch m := m.(type) {
		case *pglogrepl.InsertMessage:
			if inserts++; inserts == want {
				return errStop
			}
		case *pglogrepl.CommitMessage:
			committed = m.TransactionEndLSN
		}
		return nil
	}, func() pglogrepl.LSN { return committed })
	elapsed := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("decode limit: %w", err)
	}
	if inserts < want {
		return 0, fmt.Errorf("decode limit: decoded %d of %d inserts: %w", inserts, want, ctx.Err())
	}
	return elapsed, nil
}

// runProbe is the bare pipeline the relay's latency is compared with: it
// decodes slot's inserts, publishes each (body = payload, persistent,
// mandatory; only the aggregate_id header consumers key on) on a
// confirm-mode channel with window unconfirmed at most, and acknowledges
// a transaction once all its messages are confirmed. It runs until ctx
// ends; started is called once it streams.
func runProbe(ctx context.Context, dbURL, amqpURL, slot, exchange string, window int, started func()) error {
	conn, err := openStream(ctx, dbURL, slot)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pub, err := newConfirmer(ctx, amqpURL, exchange, window)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer pub.close()
	started()

	var (
		confirmedTag atomic.Uint64
		published    uint64
		mu           sync.Mutex
		commits      []commitMark // commits whose messages may be unconfirmed
		flushed      pglogrepl.LSN
		cols         = map[string]int{}
	)
	confirmErr := make(chan error, 1)
	go func() { confirmErr <- pub.confirmed(ctx, func(tag uint64) { confirmedTag.Store(tag) }) }()
	flush := func() pglogrepl.LSN {
		mu.Lock()
		defer mu.Unlock()
		upto := confirmedTag.Load()
		i := 0
		for ; i < len(commits) && commits[i].lastTag <= upto; i++ {
			flushed = commits[i].end
		}
		commits = commits[i:]
		return flushed
	}
	err = readStream(ctx, conn, func(_ pglogrepl.LSN, m pglogrepl.Message) error {
		switch m := m.(type) {
		case *pglogrepl.RelationMessage:
			for i, c := range m.Columns {
				cols[c.Name] = i
			}
		case *pglogrepl.InsertMessage:
			col := func(name string) []byte { return m.Tuple.Columns[cols[name]].Data }
			err := pub.publish(ctx, amqp.Publishing{
				Headers:      amqp.Table{"aggregate_id": string(col("aggregate_id"))},
				ContentType:  "application/json",
				DeliveryMode: amqp.Persistent,
				MessageId:    string(col("id")),
				Body:         col("payload"),
			})
			if err != nil {
				return err
			}
			published++
		case *pglogrepl.CommitMessage:
			mu.Lock()
			commits = append(commits, commitMark{end: m.TransactionEndLSN, lastTag: published})
			mu.Unlock()
		}
		return nil
	}, flush)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("probe: %w", err)
	}
	select {
	case err := <-confirmErr:
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
	default:
	}
	return nil
}

// commitMark is a transaction's end LSN and the delivery tag of its last message.
type commitMark struct {
	end     pglogrepl.LSN
	lastTag uint64
}
