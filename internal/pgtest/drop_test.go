package pgtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func exists(t *testing.T, pool *pgxpool.Pool, schema string) bool {
	t.Helper()
	var ok bool
	err := pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func create(t *testing.T, pool *pgxpool.Pool, schemas ...string) {
	t.Helper()
	for _, s := range schemas {
		if _, err := pool.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{s}.Sanitize()+"; CREATE TABLE "+pgx.Identifier{s, "t"}.Sanitize()+" (x int)"); err != nil {
			t.Fatal(err)
		}
	}
}

// Each helper drops its schemas when its test ends, not before, and
// leaves the others alone; names that no schema has are skipped.
func TestDropHelpers(t *testing.T) {
	pool := Pool(t, 4)
	n := fmt.Sprintf("pgtest_%x", Suffix())
	model, store, kept := n+"_model", n+"_store", n+"_Kept"
	create(t, pool, kept, model, model+"__shadow", n+"_plain", store+"_model", store+"_model__old")
	DropSchemas(t, pool, kept)

	var schema string
	t.Run("drop", func(t *testing.T) {
		schema = Schema(t, pool)
		_, err := pool.Exec(context.Background(), "INSERT INTO "+pgx.Identifier{schema, "projections"}.Sanitize()+" (name, version) VALUES ($1, 1)", store+"_model")
		if err != nil {
			t.Fatal(err)
		}
		DropModels(t, pool, model)
		DropSchemas(t, pool, n+"_plain", n+"_missing")
		DropStoreModels(t, pool, schema)
		for _, s := range []string{model, model + "__shadow", n + "_plain", store + "_model", store + "_model__old"} {
			if !exists(t, pool, s) {
				t.Errorf("%s dropped before the test ended", s)
			}
		}
	})
	for _, s := range []string{schema, model, model + "__shadow", n + "_plain", store + "_model", store + "_model__old"} {
		if exists(t, pool, s) {
			t.Errorf("%s is still there after the test ended", s)
		}
	}
	if !exists(t, pool, kept) {
		t.Errorf("%s was dropped by another test's clean-up", kept)
	}
}
