// Package migrations holds Cairn's PostgreSQL schema as SQL migrations,
// embedded in the binary and applied with tern. Every table lives in a
// schema of the caller's choosing, so several bounded contexts can share one
// database; tern's version table lives in that schema too. Applying the
// migrations twice is a no-op, and concurrent runs serialise on tern's
// advisory lock.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed sql/*.sql
var files embed.FS

// DefaultSchema is the schema Cairn uses when none is configured.
const DefaultSchema = "cairn"

// VersionTable is tern's version table, inside the schema.
const VersionTable = "cairn_schema_version"

// ErrInvalidSchema reports a schema name outside [a-z_][a-z0-9_]{0,47}.
var ErrInvalidSchema = errors.New("migrations: invalid schema name")

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// ValidateSchema checks a schema name. Names are restricted to plain
// lower-case identifiers because they are spliced into SQL text.
func ValidateSchema(schema string) error {
	if !schemaPattern.MatchString(schema) {
		return fmt.Errorf("%w: %q (want [a-z_][a-z0-9_]{0,47})", ErrInvalidSchema, schema)
	}
	return nil
}

// Status describes the migration state of a schema.
type Status struct {
	Schema  string `json:"schema"`
	Current int32  `json:"current"`
	Latest  int32  `json:"latest"`
}

// UpToDate reports whether every migration has been applied.
func (s Status) UpToDate() bool { return s.Current == s.Latest }

func newMigrator(ctx context.Context, conn *pgx.Conn, schema string) (*migrate.Migrator, error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return nil, fmt.Errorf("migrations: creating schema %s: %w", schema, err)
	}
	m, err := migrate.NewMigrator(ctx, conn, schema+"."+VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	m.Data["schema"] = schema
	if err := m.LoadMigrations(mustSub()); err != nil {
		return nil, fmt.Errorf("migrations: loading: %w", err)
	}
	return m, nil
}

// Up applies every pending migration to schema, creating the schema if
// needed.
func Up(ctx context.Context, conn *pgx.Conn, schema string) error {
	m, err := newMigrator(ctx, conn, schema)
	if err != nil {
		return err
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrations: applying to schema %s: %w", schema, err)
	}
	return nil
}

// UpPool is Up on a connection borrowed from pool for the duration.
func UpPool(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrations: acquiring a connection: %w", err)
	}
	defer conn.Release()
	return Up(ctx, conn.Conn(), schema)
}

// CurrentStatus reports how far schema has been migrated, without creating
// anything.
func CurrentStatus(ctx context.Context, conn *pgx.Conn, schema string) (Status, error) {
	if err := ValidateSchema(schema); err != nil {
		return Status{}, err
	}
	names, err := migrate.FindMigrations(mustSub())
	if err != nil {
		return Status{}, err
	}
	st := Status{Schema: schema, Latest: int32(len(names))}
	var table *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::text", schema+"."+VersionTable).Scan(&table); err != nil {
		return Status{}, fmt.Errorf("migrations: reading version of schema %s: %w", schema, err)
	}
	if table == nil {
		return st, nil
	}
	if err := conn.QueryRow(ctx, "SELECT version FROM "+schema+"."+VersionTable).Scan(&st.Current); err != nil {
		return Status{}, fmt.Errorf("migrations: reading version of schema %s: %w", schema, err)
	}
	return st, nil
}

func mustSub() fs.FS {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}
