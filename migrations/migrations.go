// Package migrations applies SQL migrations with tern, one Set per owner:
// the event store, the projection daemon, sagas and the app each own their
// tables and their migrations, and this package knows none of them. Every
// table lives in a schema of the caller's choosing, so several bounded
// contexts can share one database; each set's version table lives in that
// schema too (cairn_<set>_version). Applying the migrations twice is a
// no-op, and concurrent runs serialise on tern's advisory lock.
//
// Schemas migrated before the sets were split kept one version in
// cairn_schema_version over a single numbered sequence; Up adopts such a
// schema (see Set.Legacy) and leaves that table in place.
package migrations

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// DefaultSchema is the schema Cairn uses when none is configured.
const DefaultSchema = "cairn"

// LegacyVersionTable is the version table of schemas migrated before the
// sets were split, inside the schema.
const LegacyVersionTable = "cairn_schema_version"

// ErrInvalidSchema reports a schema name outside [a-z_][a-z0-9_]{0,47}.
var ErrInvalidSchema = errors.New("migrations: invalid schema name")

// ErrInvalidSet reports a Set that cannot be applied: a bad name, no
// migrations, or a Legacy list that does not match them.
var ErrInvalidSet = errors.New("migrations: invalid set")

var (
	schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)
	setPattern    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// ValidateSchema checks a schema name. Names are restricted to plain
// lower-case identifiers because they are spliced into SQL text.
func ValidateSchema(schema string) error {
	if !schemaPattern.MatchString(schema) {
		return fmt.Errorf("%w: %q (want [a-z_][a-z0-9_]{0,47})", ErrInvalidSchema, schema)
	}
	return nil
}

// Set is one owner's migrations: files named NNN_description.sql, numbered
// from 001, templated with {{.schema}} for the schema's name.
type Set struct {
	// Name identifies the set and names its version table,
	// cairn_<Name>_version ([a-z][a-z0-9_]{0,31}).
	Name string
	// Files holds the migrations at its root.
	Files fs.FS
	// Legacy maps a schema migrated the old way onto this set: Legacy[i] is
	// the number migration i+1 of this set had in the single sequence of
	// cairn_schema_version. A schema whose old version is v gets this set at
	// the count of entries ≤ v. Empty for sets that postdate the split.
	Legacy []int32
}

// Embedded is the Set of an owner's migrations embedded at dir of files
// (the owner's //go:embed dir/*.sql), with its legacy numbers. The
// directory is fixed at build time, so a wrong one is a programming error:
// it panics.
func Embedded(name string, files fs.FS, dir string, legacy ...int32) Set {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(fmt.Sprintf("migrations: set %s: %v", name, err))
	}
	return Set{Name: name, Files: sub, Legacy: legacy}
}

// VersionTable is the set's tern version table, inside the schema.
func (s Set) VersionTable() string { return "cairn_" + s.Name + "_version" }

func (s Set) validate() error {
	if !setPattern.MatchString(s.Name) || s.Files == nil {
		return fmt.Errorf("%w: %q (want a name matching [a-z][a-z0-9_]{0,31} and files)", ErrInvalidSet, s.Name)
	}
	return nil
}

// latest counts the set's migrations.
func (s Set) latest() (int32, error) {
	names, err := migrate.FindMigrations(s.Files)
	if err != nil {
		return 0, fmt.Errorf("migrations: set %s: %w", s.Name, err)
	}
	if len(s.Legacy) > len(names) {
		return 0, fmt.Errorf("%w: %s has %d legacy numbers for %d migrations", ErrInvalidSet, s.Name, len(s.Legacy), len(names))
	}
	return int32(len(names)), nil
}

// adopted is the set's version in a schema whose old single version is v.
func (s Set) adopted(v int32) int32 {
	var n int32
	for _, l := range s.Legacy {
		if l <= v {
			n++
		}
	}
	return n
}

// Status describes the migration state of a schema over the sets asked
// about. Current and Latest are summed over the sets.
type Status struct {
	Schema  string      `json:"schema"`
	Current int32       `json:"current"`
	Latest  int32       `json:"latest"`
	Sets    []SetStatus `json:"sets"`
}

// SetStatus is how far one set is applied.
type SetStatus struct {
	Name    string `json:"name"`
	Current int32  `json:"current"`
	Latest  int32  `json:"latest"`
}

// UpToDate reports whether every migration has been applied.
func (s Status) UpToDate() bool { return s.Current == s.Latest }

// Up applies every pending migration of each set, in the order given, to
// schema, creating the schema if needed.
func Up(ctx context.Context, conn *pgx.Conn, schema string, sets ...Set) error {
	if err := ValidateSchema(schema); err != nil {
		return err
	}
	for _, s := range sets {
		if err := s.validate(); err != nil {
			return err
		}
		if _, err := s.latest(); err != nil {
			return err
		}
	}
	if err := prepare(ctx, conn, schema, sets); err != nil {
		return err
	}
	for _, s := range sets {
		m, err := migrate.NewMigrator(ctx, conn, schema+"."+s.VersionTable())
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		m.Data["schema"] = schema
		if err := m.LoadMigrations(s.Files); err != nil {
			return fmt.Errorf("migrations: loading set %s: %w", s.Name, err)
		}
		if err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("migrations: applying set %s to schema %s: %w", s.Name, schema, err)
		}
	}
	return nil
}

// UpPool is Up on a connection borrowed from pool for the duration.
func UpPool(ctx context.Context, pool *pgxpool.Pool, schema string, sets ...Set) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrations: acquiring a connection: %w", err)
	}
	defer conn.Release()
	return Up(ctx, conn.Conn(), schema, sets...)
}

// prepare creates the schema and gives each set without a version table of
// its own the version the old single sequence implies (so that tern then
// applies only what the old sequence lacked), in one transaction under a
// lock: concurrent Ups would otherwise race to create the same schema.
func prepare(ctx context.Context, conn *pgx.Conn, schema string, sets []Set) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "cairn-migrations:"+schema); err != nil {
			return fmt.Errorf("migrations: locking schema %s: %w", schema, err)
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			return fmt.Errorf("migrations: creating schema %s: %w", schema, err)
		}
		legacy, ok, err := readVersion(ctx, tx, schema, LegacyVersionTable)
		if err != nil || !ok {
			return err
		}
		for _, s := range sets {
			table := pgx.Identifier{schema, s.VersionTable()}.Sanitize()
			// The same shape as tern's own version table.
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (version int4 NOT NULL);
				INSERT INTO `+table+` (version) SELECT `+fmt.Sprint(s.adopted(legacy))+` WHERE NOT EXISTS (SELECT 1 FROM `+table+`)`)
			if err != nil {
				return fmt.Errorf("migrations: adopting set %s in schema %s: %w", s.Name, schema, err)
			}
		}
		return nil
	})
}

// CurrentStatus reports how far schema has been migrated over sets,
// without creating anything. A schema migrated the old way and not yet
// adopted reports the versions adoption would give it.
func CurrentStatus(ctx context.Context, conn *pgx.Conn, schema string, sets ...Set) (Status, error) {
	if err := ValidateSchema(schema); err != nil {
		return Status{}, err
	}
	st := Status{Schema: schema}
	legacy, hasLegacy, err := readVersion(ctx, conn, schema, LegacyVersionTable)
	if err != nil {
		return Status{}, err
	}
	for _, s := range sets {
		if err := s.validate(); err != nil {
			return Status{}, err
		}
		latest, err := s.latest()
		if err != nil {
			return Status{}, err
		}
		cur, ok, err := readVersion(ctx, conn, schema, s.VersionTable())
		if err != nil {
			return Status{}, err
		}
		if !ok && hasLegacy {
			cur = s.adopted(legacy)
		}
		st.Sets = append(st.Sets, SetStatus{Name: s.Name, Current: cur, Latest: latest})
		st.Current += cur
		st.Latest += latest
	}
	return st, nil
}

// querier is what readVersion needs of a connection or transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion reads a version table; ok is false when it does not exist.
func readVersion(ctx context.Context, q querier, schema, table string) (v int32, ok bool, err error) {
	name := pgx.Identifier{schema, table}.Sanitize()
	var found *string
	if err := q.QueryRow(ctx, "SELECT to_regclass($1)::text", name).Scan(&found); err != nil {
		return 0, false, fmt.Errorf("migrations: reading version of schema %s: %w", schema, err)
	}
	if found == nil {
		return 0, false, nil
	}
	if err := q.QueryRow(ctx, "SELECT version FROM "+name).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("migrations: reading version of schema %s: %w", schema, err)
	}
	return v, true, nil
}
