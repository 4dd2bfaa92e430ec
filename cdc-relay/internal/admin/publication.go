package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// PublicationInfo is the result of publication show.
type PublicationInfo struct {
	Name      string `json:"publication"`
	Owner     string `json:"owner"`
	AllTables bool   `json:"all_tables"`
	// Operations are the published operations: insert, update, delete, truncate.
	Operations []string `json:"operations"`
	ViaRoot    bool     `json:"via_root"`
	// Tables are schema.table, sorted.
	Tables []string `json:"tables"`
	// OutboxTable is the configured table (--table), and HoldsOutboxTable
	// whether the publication includes it.
	OutboxTable      string `json:"outbox_table"`
	HoldsOutboxTable bool   `json:"holds_outbox_table"`
}

// errNoPublication reports a publication that does not exist.
var errNoPublication = errors.New("no such publication")

func getPublication(ctx context.Context, conn *pgx.Conn, name string, table config.Table) (PublicationInfo, error) {
	p := PublicationInfo{Name: name, OutboxTable: table.String(), Operations: []string{}, Tables: []string{}}
	var ins, upd, del, trunc bool
	err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(pubowner)::text, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot
		FROM pg_publication WHERE pubname = $1`, name).Scan(&p.Owner, &p.AllTables, &ins, &upd, &del, &trunc, &p.ViaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		return PublicationInfo{}, errNoPublication
	}
	if err != nil {
		return PublicationInfo{}, err
	}
	for _, op := range []struct {
		on   bool
		name string
	}{{ins, "insert"}, {upd, "update"}, {del, "delete"}, {trunc, "truncate"}} {
		if op.on {
			p.Operations = append(p.Operations, op.name)
		}
	}
	rows, err := conn.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2`, name)
	if err != nil {
		return PublicationInfo{}, err
	}
	for rows.Next() {
		var schema, tbl string
		if err := rows.Scan(&schema, &tbl); err != nil {
			return PublicationInfo{}, err
		}
		p.Tables = append(p.Tables, schema+"."+tbl)
		if schema == table.Schema && tbl == table.Name {
			p.HoldsOutboxTable = true
		}
	}
	return p, rows.Err()
}

func createPublicationSQL(name string, t config.Table, partitioned bool) string {
	return replication.PublicationSQL(replication.Target{Publication: name, Schema: t.Schema, Table: t.Name}, partitioned) + ";"
}

func runPublicationShow(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("show publication %q: %w", o.publication, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p, err := getPublication(ctx, conn, o.publication, o.table)
	if errors.Is(err, errNoPublication) {
		return fmt.Errorf("show publication %q: %w: create it with cdc-relay publication create, or: %s", o.publication, err, createPublicationSQL(o.publication, o.table, false))
	}
	if err != nil {
		return fmt.Errorf("show publication %q: %w", o.publication, err)
	}
	if o.json {
		return writeJSON(stdout, p)
	}
	return renderPublication(stdout, p)
}

func renderPublication(w io.Writer, p PublicationInfo) error {
	tw := newTable(w)
	tables := strings.Join(p.Tables, ", ")
	if p.AllTables {
		tables = "all tables (" + tables + ")"
	}
	if tables == "" {
		tables = "-"
	}
	holds := "included"
	if !p.HoldsOutboxTable {
		holds = "NOT included: ALTER PUBLICATION " + pgx.Identifier{p.Name}.Sanitize() + " ADD TABLE " + p.OutboxTable + ";"
	}
	ops := strings.Join(p.Operations, ", ")
	if !slices.Contains(p.Operations, "insert") {
		ops += " (inserts NOT published: ALTER PUBLICATION " + pgx.Identifier{p.Name}.Sanitize() + " SET (publish = 'insert');)"
	}
	fmt.Fprintf(tw, "publication\t%s\n", p.Name)
	fmt.Fprintf(tw, "owner\t%s\n", p.Owner)
	fmt.Fprintf(tw, "operations\t%s\n", ops)
	fmt.Fprintf(tw, "tables\t%s\n", tables)
	fmt.Fprintf(tw, "outbox table\t%s: %s\n", p.OutboxTable, holds)
	return tw.Flush()
}

// PublicationCreated is the result of publication create.
type PublicationCreated struct {
	Publication string `json:"publication"`
	Table       string `json:"table"`
	// Created is false when a fit publication existed already.
	Created bool `json:"created"`
}

// runPublicationCreate creates the publication as the daemon does (inserts
// of the outbox table only, via the partition root for a partitioned table).
// An existing publication that holds the table and publishes inserts is
// accepted; one that does not is refused with the statement that fixes it,
// rather than altered behind the owner's back.
func runPublicationCreate(ctx context.Context, o options, stdout, _ io.Writer) error {
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("create publication %q: %w", o.publication, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := replication.Target{Publication: o.publication, Schema: o.table.Schema, Table: o.table.Name}
	tab, err := replication.CheckTable(ctx, conn, t)
	if err != nil {
		return fmt.Errorf("create publication %q: %w", o.publication, err)
	}
	r := PublicationCreated{Publication: o.publication, Table: o.table.String()}
	r.Created, err = replication.EnsurePublication(ctx, conn, t, tab.Partitioned)
	if errors.Is(err, fault.ErrFatal) {
		return fmt.Errorf("create publication %q: %w: %w", o.publication, ErrRefused, err)
	}
	if err != nil {
		return fmt.Errorf("create publication %q: %w", o.publication, err)
	}
	if o.json {
		return writeJSON(stdout, r)
	}
	if r.Created {
		_, err = fmt.Fprintf(stdout, "created publication %q for table %s (inserts)\n", r.Publication, r.Table)
	} else {
		_, err = fmt.Fprintf(stdout, "publication %q already exists and publishes inserts of %s\n", r.Publication, r.Table)
	}
	return err
}
