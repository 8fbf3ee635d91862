package pgserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgserver"
)

// TestCrashAndRestart: a committed row survives an immediate restart, and a
// stopped server refuses connections until it is started again.
func TestCrashAndRestart(t *testing.T) {
	srv := pgserver.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, srv.URL())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	require.NoError(t, exec(`CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)`))

	require.NoError(t, srv.Restart(pgserver.Immediate))
	conn, err := pgx.Connect(ctx, srv.URL())
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT n FROM kept`).Scan(&n))
	require.Equal(t, 42, n, "a committed row was lost in the crash")
	require.NoError(t, conn.Close(ctx))

	require.NoError(t, srv.Stop(pgserver.Fast))
	require.Error(t, exec(`SELECT 1`), "a stopped server answered")
	require.NoError(t, srv.Start())
	require.NoError(t, exec(`SELECT 1`))
}
