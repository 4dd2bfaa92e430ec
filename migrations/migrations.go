// Package migrations holds the SQL schema of every service database as plain
// SQL files embedded in the binary, and a small runner that applies them in
// order, once, under an advisory lock. Services, tests and the local runner
// share it, so there is one way a database gets its schema.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed outbox/*.sql order/*.sql stock/*.sql payment/*.sql
var files embed.FS

// Migration is one SQL file. Version is its path below this package
// ("outbox/0001_outbox.sql"); it is recorded in schema_migrations once applied.
type Migration struct {
	Version string
	SQL     string
}

// Set is an ordered list of migrations for one database.
type Set []Migration

// Outbox is the outbox table and its publication (docs/contracts.md, "The
// outbox table"): the part every service database shares, and all cdc-relay
// needs.
func Outbox() Set { return mustLoad(files, "outbox") }

// Order is the order service's database: the outbox, then its inbox and
// orders tables.
func Order() Set { return append(Outbox(), mustLoad(files, "order")...) }

// Stock is the stock service's database: the outbox, then its inbox, stock
// and reservation tables, and the initial products "1" and "2".
func Stock() Set { return append(Outbox(), mustLoad(files, "stock")...) }

// Payment is the payment service's database: the outbox, then its inbox and
// payment tables.
func Payment() Set { return append(Outbox(), mustLoad(files, "payment")...) }

// Load reads every *.sql file of dir in fsys, in lexical order, as a Set.
// Services embed their own folder and append it to Outbox().
func Load(fsys fs.FS, dir string) (Set, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, fmt.Errorf("list migrations in %s: %w", dir, err)
	}
	sort.Strings(names)
	set := make(Set, 0, len(names))
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		set = append(set, Migration{Version: name, SQL: string(b)})
	}
	return set, nil
}

func mustLoad(fsys fs.FS, dir string) Set {
	set, err := Load(fsys, dir)
	if err != nil || len(set) == 0 {
		panic(fmt.Sprintf("embedded migrations %s: %v", dir, err))
	}
	return set
}

// lockKey is the pg_advisory_xact_lock key that serialises concurrent
// runners (several replicas starting at once) on one database.
const lockKey = 0x5a6a_0b0c

// Apply applies, in order, every migration of sets that the database has not
// recorded yet, each in its own transaction together with its record.
func Apply(ctx context.Context, conn *pgx.Conn, sets ...Set) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	seen := map[string]bool{}
	for _, set := range sets {
		for _, m := range set {
			if seen[m.Version] {
				return fmt.Errorf("migration %s is listed twice", m.Version)
			}
			seen[m.Version] = true
			if err := applyOne(ctx, conn, m); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyOne(ctx context.Context, conn *pgx.Conn, m Migration) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
			return fmt.Errorf("lock for migration %s: %w", m.Version, err)
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&done); err != nil {
			return fmt.Errorf("check migration %s: %w", m.Version, err)
		}
		if done {
			return nil
		}
		if strings.TrimSpace(m.SQL) != "" {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Version, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.Version); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Version, err)
		}
		return nil
	})
}
