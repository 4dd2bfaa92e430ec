package platform

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Retention prunes old outbox and inbox rows. Outbox rows are kept for a
// window so that a lost replication slot can be repaired by replaying them
// (docs/contracts.md, "Loss repair and failover"); the publication
// publishes inserts only, so these deletes never reach the relay.
type Retention struct {
	Pool *pgxpool.Pool
	// OutboxAge and InboxAge are the windows; older rows are deleted.
	OutboxAge, InboxAge time.Duration
	// Interval is the time between two runs.
	Interval time.Duration
	// Logger gets one line per run that deleted something, and errors.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// retentionBatch bounds one DELETE, so a first run on a large backlog does
// not hold one long transaction.
const retentionBatch = 5000

// Run prunes once at start, then every Interval, until ctx is done. A failed
// run is logged and retried at the next tick: retention is never urgent.
func (r Retention) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		outbox, inbox, err := r.Prune(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.Logger.Error("outbox retention", LogError, err)
		case outbox+inbox > 0:
			r.Logger.Info("outbox retention", "outbox_deleted", outbox, "inbox_deleted", inbox)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Prune deletes outbox rows older than OutboxAge and inbox rows older than
// InboxAge, and returns how many of each it deleted.
func (r Retention) Prune(ctx context.Context) (outbox, inbox int64, err error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	t := now()
	outbox, err = r.deleteOlder(ctx, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE created_at < $1 LIMIT $2)`, t.Add(-r.OutboxAge))
	if err != nil {
		return outbox, 0, fmt.Errorf("prune outbox: %w", err)
	}
	inbox, err = r.deleteOlder(ctx, `DELETE FROM inbox WHERE message_id IN (
		SELECT message_id FROM inbox WHERE received_at < $1 LIMIT $2)`, t.Add(-r.InboxAge))
	if err != nil {
		return outbox, inbox, fmt.Errorf("prune inbox: %w", err)
	}
	return outbox, inbox, nil
}

func (r Retention) deleteOlder(ctx context.Context, sql string, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := r.Pool.Exec(ctx, sql, before, retentionBatch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < retentionBatch {
			return total, nil
		}
	}
}
