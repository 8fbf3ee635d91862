package pgtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dropTimeout bounds a clean-up's statements: a session left holding a
// lock on a schema would otherwise hang the test binary at its end.
const dropTimeout = 30 * time.Second

// DropSchemas drops the named schemas, with everything in them, when the
// test ends; a name that no schema has is skipped. Clean-ups run last
// first: register it before whatever still uses the schemas at the end.
func DropSchemas(t testing.TB, pool *pgxpool.Pool, schemas ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		if err := drop(ctx, pool, schemas); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
}

// DropModels drops, when the test ends, the read models of the named
// projections: each one's schema and the __shadow and __old schemas a
// rebuild makes beside it. They live outside the store's schema, so the
// clean-up of Schema does not reach them.
func DropModels(t testing.TB, pool *pgxpool.Pool, names ...string) {
	t.Helper()
	DropSchemas(t, pool, modelSchemas(names)...)
}

// DropStoreModels drops, when the test ends, the read models of every
// projection the store in schema has recorded by then: DropModels for the
// projections a test does not name up front. Register it after Schema, so
// that it runs while the store's tables still exist.
func DropStoreModels(t testing.TB, pool *pgxpool.Pool, schema string) {
	t.Helper()
	DropListed(t, pool, "SELECT s FROM "+pgx.Identifier{schema, "projections"}.Sanitize()+
		", unnest(ARRAY[name, name || '__shadow', name || '__old']) AS s")
}

// DropListed drops, when the test ends, the schemas the query sql (with
// args) names then, one per row: for schemas a test makes but cannot name
// up front.
func DropListed(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		if err := dropListed(ctx, pool, sql, args); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
}

func dropListed(ctx context.Context, pool *pgxpool.Pool, sql string, args []any) error {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("listing the schemas to drop: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("listing the schemas to drop: %w", err)
	}
	return drop(ctx, pool, schemas)
}

// modelSchemas lists the schemas the read models of names can occupy.
func modelSchemas(names []string) []string {
	out := make([]string, 0, 3*len(names))
	for _, n := range names {
		out = append(out, n, n+"__shadow", n+"__old")
	}
	return out
}

// drop drops each schema that exists, going on past a failure.
func drop(ctx context.Context, pool *pgxpool.Pool, schemas []string) error {
	var errs []error
	for _, s := range schemas {
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			errs = append(errs, fmt.Errorf("dropping schema %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}
