package admin

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/saga-cdc/saga/internal/envfile"
)

// RoleCreated is what role create did.
type RoleCreated struct {
	Role    string `json:"role"`
	Created bool   `json:"created"` // false: it existed, and now has LOGIN REPLICATION
	Schema  string `json:"schema"`
	Table   string `json:"table"`
	// Password reports whether a password was set (never the password).
	Password bool `json:"password_set"`
}

// runRoleCreate makes the relay's least-privileged role: LOGIN REPLICATION,
// USAGE on the outbox's schema and SELECT on the outbox table, nothing
// else. It runs as a role that may create roles with REPLICATION (a
// superuser; on Postgres 16+ a CREATEROLE role that has REPLICATION
// itself), once per database; run again, it grants what is missing and
// changes nothing else. On a role that has LOGIN REPLICATION already and
// with no password, it only grants, so the outbox's owner may run it. The
// password, when one is given, comes from the file --password-file names,
// never from the command line, and is sent as its SCRAM-SHA-256 verifier.
func runRoleCreate(ctx context.Context, o options, stdout, _ io.Writer) error {
	password := ""
	if o.passwordFile != "" {
		var err error
		if password, err = envfile.Read(o.passwordFile); err != nil {
			return UsageError{Err: fmt.Errorf("role create: --password-file: %w", err)}
		}
	}
	// The server gets the SCRAM-SHA-256 verifier, never the password: a
	// statement log (log_statement, or the statement of an error) would
	// show whatever the statement holds.
	verifier := ""
	if password != "" {
		var err error
		if verifier, err = scramVerifier(password); err != nil {
			return fmt.Errorf("role create %s: %w", o.role, err)
		}
	}
	conn, err := connect(ctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("role create %s: %w", o.role, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := RoleCreated{Role: o.role, Schema: o.table.Schema, Table: o.table.String(), Password: password != ""}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// One at a time per server: the init containers of several pods run
		// this at once, and concurrent GRANTs on one table can fail
		// ("tuple concurrently updated").
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('cdc-relay role create'))`); err != nil {
			return err
		}
		var ready bool // the role exists with LOGIN REPLICATION already
		if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
			EXISTS (SELECT FROM pg_roles WHERE rolname = $1 AND rolcanlogin AND rolreplication)`, o.role).Scan(&r.Created, &ready); err != nil {
			return err
		}
		verb := "ALTER"
		if r.Created {
			verb = "CREATE"
		}
		// format() quotes the name and the password on the server.
		var stmts []string
		var sql string
		switch {
		case verifier != "":
			err = tx.QueryRow(ctx, `SELECT format('`+verb+` ROLE %I WITH LOGIN REPLICATION PASSWORD %L', $1::text, $2::text)`, o.role, verifier).Scan(&sql)
		case !ready:
			err = tx.QueryRow(ctx, `SELECT format('`+verb+` ROLE %I WITH LOGIN REPLICATION', $1::text)`, o.role).Scan(&sql)
		}
		// A role that has LOGIN REPLICATION already, with no new password,
		// is left as it is: then only the grants run, which the outbox's
		// owner may give, so a role made when the database was initialised
		// needs no superuser afterwards.
		if err != nil {
			return err
		}
		if sql != "" {
			stmts = append(stmts, sql)
		}
		stmts = append(stmts,
			fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", pgx.Identifier{o.table.Schema}.Sanitize(), pgx.Identifier{o.role}.Sanitize()),
			fmt.Sprintf("GRANT SELECT ON TABLE %s TO %s", pgx.Identifier{o.table.Schema, o.table.Name}.Sanitize(), pgx.Identifier{o.role}.Sanitize()))
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "42501":
				return fmt.Errorf("role create %s: %w: the connecting role may not create a role with REPLICATION or grant on %s (%s): run it as a superuser, or on Postgres 16+ as a CREATEROLE role that has REPLICATION and owns the table",
					o.role, ErrRefused, o.table, pgErr.Message)
			case "42P01", "3F000":
				return fmt.Errorf("role create %s: %w: %s: create the outbox with the outbox migration first", o.role, ErrRefused, pgErr.Message)
			}
		}
		return fmt.Errorf("role create %s: %w", o.role, err)
	}
	if o.json {
		return writeJSON(stdout, r)
	}
	what := "created role %s (LOGIN REPLICATION)"
	if !r.Created {
		what = "role %s exists: now LOGIN REPLICATION"
	}
	if r.Password {
		what += ", password set from the file"
	}
	_, err = fmt.Fprintf(stdout, what+"; granted USAGE on schema %s and SELECT on %s, nothing else\n", r.Role, r.Schema, r.Table)
	return err
}
