// Package pgdb is the small handle through which a subsystem keeps its own
// state in PostgreSQL: a pool and a schema. The projection daemon keeps
// checkpoints' control rows and dead letters there, sagas their instances,
// outbox and timeouts, the app its cursor keys. The handle may name the
// database the event log lives in or another one: the read side reaches
// the log only through eventstore's interfaces.
//
// Each owner of tables exports its migrations (a migrations.Set) and
// applies them to its handle's schema; app and `migrate up` apply all of
// them together.
package pgdb

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/migrations"
)

// ErrNoPool reports a handle without a pool.
var ErrNoPool = errors.New("pgdb: no pool")

// DB is a pool and the schema that holds a subsystem's tables. The caller
// that opened the pool closes it.
type DB struct {
	// Pool is the connection pool; required.
	Pool *pgxpool.Pool
	// Schema holds the tables (default migrations.DefaultSchema).
	Schema string
}

// WithDefaults returns db with the documented defaults filled in and
// checked: a pool, and a schema name that may be spliced into SQL text.
func (db DB) WithDefaults() (DB, error) {
	if db.Pool == nil {
		return db, ErrNoPool
	}
	if db.Schema == "" {
		db.Schema = migrations.DefaultSchema
	}
	if err := migrations.ValidateSchema(db.Schema); err != nil {
		return db, err
	}
	return db, nil
}

// Ident is the schema's name quoted as an SQL identifier.
func (db DB) Ident() string { return pgx.Identifier{db.Schema}.Sanitize() }

// Table is a table of the schema, quoted as an SQL identifier.
func (db DB) Table(name string) string { return pgx.Identifier{db.Schema, name}.Sanitize() }

// String names the handle for errors and logs.
func (db DB) String() string { return fmt.Sprintf("schema %s", db.Schema) }
