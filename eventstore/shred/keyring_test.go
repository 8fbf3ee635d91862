package shred_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore/shred"
	"github.com/cairn-es/cairn/eventstore/shred/shredtest"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
)

func TestMemoryKeyring(t *testing.T) {
	shredtest.RunKeyring(t, func(*testing.T) shred.Keyring { return shred.NewMemoryKeyring() })
}

func TestPostgresKeyring(t *testing.T) {
	pool := pgtest.Pool(t, 16)
	shredtest.RunKeyring(t,
		func(t *testing.T) shred.Keyring { return postgresKeyring(t, pool, newSchema(t, pool)) },
		shredtest.WithAnotherHandle(func(t *testing.T, kr shred.Keyring) shred.Keyring {
			return postgresKeyring(t, pool, kr.(*shred.PostgresKeyring).Schema())
		}))
}

// newSchema names a schema of the test's own, dropped when it ends.
func newSchema(t *testing.T, pool *pgxpool.Pool) string {
	schema := fmt.Sprintf("shred_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, schema)
	return schema
}

func postgresKeyring(t *testing.T, pool *pgxpool.Pool, schema string, opts ...shred.KeyringOption) *shred.PostgresKeyring {
	t.Helper()
	kr, err := shred.NewPostgresKeyring(context.Background(), pool, schema, opts...)
	require.NoError(t, err)
	return kr
}

func countKeys(t *testing.T, pool *pgxpool.Pool, schema string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, "subject_keys"}.Sanitize()).Scan(&n))
	return n
}

func TestPostgresKeyringTable(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 4)
	schema := newSchema(t, pool)
	kr := postgresKeyring(t, pool, schema)
	k, err := kr.GetOrCreate(ctx, "ann")
	require.NoError(t, err)
	_, err = kr.GetOrCreate(ctx, "bob")
	require.NoError(t, err)

	// The migration is idempotent, and the keys outlive the handle.
	require.NoError(t, shred.Migrate(ctx, pool, schema))
	again := postgresKeyring(t, pool, schema)
	got, err := again.Get(ctx, "ann")
	require.NoError(t, err)
	require.Equal(t, k, got)

	// Forget deletes the row, not only the cached key.
	require.NoError(t, kr.Forget(ctx, "ann"))
	require.Equal(t, 1, countKeys(t, pool, schema))
	_, err = postgresKeyring(t, pool, schema).Get(ctx, "ann")
	require.ErrorIs(t, err, shred.ErrForgotten)
}

func TestPostgresKeyringRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 2)
	schema := newSchema(t, pool)
	for _, n := range []int{0, -1} {
		_, err := shred.NewPostgresKeyring(ctx, pool, schema, shred.CacheSize(n))
		require.ErrorIs(t, err, shred.ErrInvalidOption)
	}
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
	require.False(t, exists, "a refused keyring creates nothing")

	_, err := shred.NewPostgresKeyring(ctx, pool, `Bad"Schema`)
	require.ErrorIs(t, err, migrations.ErrInvalidSchema)
}

// The cache holds at most CacheSize keys and drops the least recently used:
// with the rows deleted behind its back, only cached keys still answer.
func TestPostgresKeyringCacheBound(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 4)
	schema := newSchema(t, pool)
	kr := postgresKeyring(t, pool, schema, shred.CacheSize(2))
	keys := map[string]shred.Key{}
	for _, s := range []string{"a", "b", "c"} {
		k, err := kr.GetOrCreate(ctx, s)
		require.NoError(t, err)
		keys[s] = k
	}
	_, err := pool.Exec(ctx, "DELETE FROM "+pgx.Identifier{schema, "subject_keys"}.Sanitize())
	require.NoError(t, err)

	answers := func(s string) bool {
		k, err := kr.Get(ctx, s)
		if err != nil {
			require.ErrorIs(t, err, shred.ErrForgotten)
			return false
		}
		require.Equal(t, keys[s], k)
		return true
	}
	require.False(t, answers("a"), "a was evicted when c came")
	require.True(t, answers("c"))
	require.True(t, answers("b"), "b is now the most recently used")
	d, err := kr.GetOrCreate(ctx, "d") // evicts c, not b
	require.NoError(t, err)
	keys["d"] = d
	require.False(t, answers("c"))
	require.True(t, answers("b"))
	require.True(t, answers("d"))
}
