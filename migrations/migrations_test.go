package migrations_test

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
)

// freshSchema names a schema that does not exist yet and drops it when the
// test ends.
func freshSchema(t *testing.T, pool *pgxpool.Pool) string {
	schema := fmt.Sprintf("t_mig_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, schema)
	return schema
}

func status(t *testing.T, pool *pgxpool.Pool, schema string) migrations.Status {
	t.Helper()
	conn, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	st, err := migrations.CurrentStatus(context.Background(), conn.Conn(), schema, app.Migrations()...)
	require.NoError(t, err)
	return st
}

func TestUpIsIdempotentAndSchemasAreIndependent(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 2)
	schema := freshSchema(t, pool)

	st := status(t, pool, schema)
	require.Equal(t, int32(0), st.Current)
	require.False(t, st.UpToDate())
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
	require.False(t, exists, "status must not create the schema")

	require.NoError(t, migrations.UpPool(ctx, pool, schema, app.Migrations()...))
	require.NoError(t, migrations.UpPool(ctx, pool, schema, app.Migrations()...), "applying twice is a no-op")
	st = status(t, pool, schema)
	require.True(t, st.UpToDate())
	require.Positive(t, st.Latest)
	require.Len(t, st.Sets, len(app.Migrations()))
	for _, s := range st.Sets {
		require.Equal(t, s.Latest, s.Current, s.Name)
	}

	other := pgtest.Schema(t, pool)
	var tables int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", other).Scan(&tables))
	require.GreaterOrEqual(t, tables, 3)
}

// A schema migrated before the sets were split has one version table over
// one sequence (001 event store … 005 cursor keys). Up adopts it: nothing
// is applied twice, and what the old version lacked is applied.
func TestUpAdoptsASchemaMigratedTheOldWay(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 2)
	for _, tc := range []struct {
		name   string
		legacy int32
		drop   string // what the old version had not created yet
	}{
		{"all five applied", 5, ""},
		{"cursor keys missing", 4, "cursor_keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			schema := freshSchema(t, pool)
			require.NoError(t, migrations.UpPool(ctx, pool, schema, app.Migrations()...))
			for _, s := range app.Migrations() {
				_, err := pool.Exec(ctx, "DROP TABLE "+schema+"."+s.VersionTable())
				require.NoError(t, err)
			}
			if tc.drop != "" {
				_, err := pool.Exec(ctx, "DROP TABLE "+schema+"."+tc.drop)
				require.NoError(t, err)
			}
			_, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (version int4 NOT NULL); INSERT INTO %[1]s.%[2]s VALUES (%d)",
				schema, migrations.LegacyVersionTable, tc.legacy))
			require.NoError(t, err)

			st := status(t, pool, schema)
			require.Equal(t, tc.legacy, st.Current, "status reads the adopted versions without changing anything")
			require.NoError(t, migrations.UpPool(ctx, pool, schema, app.Migrations()...))
			require.True(t, status(t, pool, schema).UpToDate())
			var keys int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".cursor_keys").Scan(&keys))
			require.Equal(t, 1, keys, "the cursor key is created once")
		})
	}
}

func TestConcurrentUpsSerialise(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := pgtest.Pool(t, 8)
	schema := freshSchema(t, pool)
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- migrations.UpPool(ctx, pool, schema, app.Migrations()...) }()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	require.True(t, status(t, pool, schema).UpToDate())
}

func TestInvalidSchemaName(t *testing.T) {
	for _, name := range []string{"", "Orders", "1orders", "orders;drop", "a-b", "ünï"} {
		require.ErrorIs(t, migrations.ValidateSchema(name), migrations.ErrInvalidSchema, name)
	}
	require.NoError(t, migrations.ValidateSchema("orders_v2"))
}

func TestInvalidSetIsRefusedBeforeAnythingIsWritten(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 2)
	schema := freshSchema(t, pool)
	files := fstest.MapFS{"001_a.sql": {Data: []byte("CREATE TABLE {{.schema}}.a (id int)")}}
	for _, bad := range []migrations.Set{
		{Name: "Bad-Name", Files: files},
		{Name: "nofiles"},
		{Name: "toomany", Files: files, Legacy: []int32{1, 2}},
	} {
		require.ErrorIs(t, migrations.UpPool(ctx, pool, schema, bad), migrations.ErrInvalidSet, bad.Name)
	}
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
	require.False(t, exists, "a refused set creates nothing")
}
