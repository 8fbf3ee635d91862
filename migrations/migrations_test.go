package migrations_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
)

func TestUpIsIdempotentAndSchemasAreIndependent(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 2)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	schema := fmt.Sprintf("t_mig_%d", time.Now().UnixNano()%1_000_000_000)
	_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })

	st, err := migrations.CurrentStatus(ctx, conn.Conn(), schema)
	require.NoError(t, err)
	require.Equal(t, int32(0), st.Current)
	require.False(t, st.UpToDate())
	var exists bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
	require.False(t, exists, "status must not create the schema")

	require.NoError(t, migrations.Up(ctx, conn.Conn(), schema))
	require.NoError(t, migrations.Up(ctx, conn.Conn(), schema), "applying twice is a no-op")
	st, err = migrations.CurrentStatus(ctx, conn.Conn(), schema)
	require.NoError(t, err)
	require.True(t, st.UpToDate())
	require.Positive(t, st.Latest)

	other := pgtest.Schema(t, pool)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", other).Scan(&tables))
	require.GreaterOrEqual(t, tables, 3)
}

func TestInvalidSchemaName(t *testing.T) {
	for _, name := range []string{"", "Orders", "1orders", "orders;drop", "a-b", "ünï"} {
		require.ErrorIs(t, migrations.ValidateSchema(name), migrations.ErrInvalidSchema, name)
	}
	require.NoError(t, migrations.ValidateSchema("orders_v2"))
}
