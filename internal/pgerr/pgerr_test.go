package pgerr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgerr"
	"github.com/cairn-es/cairn/internal/pgerr/pgerrtest"
	"github.com/cairn-es/cairn/internal/pgserver"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// Errors the server raises with a given SQLSTATE, wrapped as the store
// wraps them, then the same through errors.Join.
func TestServerErrorsByCode(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	ctx := context.Background()
	for code, want := range map[string]bool{
		"08000": true, "08006": true, "08001": true, // connection exception
		"53000": true, "53100": true, "53200": true, "53300": true, // insufficient resources
		"57P01": true, "57P02": true, "57P03": true, // shutdown, cannot connect now
		"40001": true, "40P01": true, // serialization failure, deadlock
		"23505": false, "42P01": false, "22P02": false, "28P01": false,
		"3D000": false, "57014": false, "P0001": false, "42501": false,
	} {
		_, err := pool.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '%s'; END $$`, code))
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, code)
		require.Equal(t, code, pe.Code)
		require.Equal(t, want, pgerr.Transient(err), "SQLSTATE %s", code)
		wrapped := fmt.Errorf("postgres: looking up command %q: %w", "c-1", err)
		require.Equal(t, want, pgerr.Transient(wrapped), "SQLSTATE %s, wrapped", code)
		require.Equal(t, want, pgerr.Transient(errors.Join(errors.New("other"), wrapped)), "SQLSTATE %s, joined", code)
		require.Equal(t, want, pgerr.TransientCode(code))
	}
}

// Errors of a healthy database answering a bad statement are final.
func TestDefinitiveErrors(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `SELEC 1`)
	require.Error(t, err)
	require.False(t, pgerr.Transient(err), "syntax error: %v", err)
	_, err = pool.Exec(ctx, `SELECT 1 FROM no_such_table_for_pgerr`)
	require.False(t, pgerr.Transient(err), "undefined table: %v", err)
	err = pool.QueryRow(ctx, `SELECT 1 WHERE false`).Scan(new(int))
	require.ErrorIs(t, err, pgx.ErrNoRows)
	require.False(t, pgerr.Transient(err))

	// The caller's own context is not the database's health, though pgx
	// calls a query that never started safe to retry.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = pool.Exec(cctx, `SELECT 1`)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, pgconn.SafeToRetry(err) || errors.Is(err, context.Canceled))
	require.False(t, pgerr.Transient(err), "%v", err)
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = pool.Exec(dctx, `SELECT pg_sleep(5)`)
	require.Error(t, err)
	require.False(t, pgerr.Transient(err), "%v", err)

	require.False(t, pgerr.Transient(nil))
	require.False(t, pgerr.Transient(io.EOF), "a bare io.EOF is not pgx's")
	require.False(t, pgerr.Transient(errors.New("unexpected EOF")), "only wrapping is seen through, not text")
}

// A backend terminated mid-query from another session (what an
// administrator, a failover or an immediate restart does): the query fails,
// and so does the next use of the dead connection.
func TestTerminatedBackend(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	ctx := context.Background()
	conn := connect(t, pgtest.URL())
	err := whileRunning(t, conn, "SELECT pg_sleep(30)", func() {
		var pid uint32 = conn.PgConn().PID()
		_, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
		require.NoError(t, err)
	})
	t.Logf("terminated mid-query: %v", err)
	require.True(t, pgerr.Transient(err), "%v", err)
	require.True(t, pgerr.Transient(fmt.Errorf("query: getting order %q: %w", "o-1", err)))

	_, err = conn.Exec(ctx, `SELECT 1`)
	t.Logf("next use: %v", err)
	require.Error(t, err)
	require.True(t, pgerr.Transient(err), "%v", err)
}

// A connection cut under a query (the client reads EOF or a reset), or
// while idle, so that the next statement finds it gone: what a dropped
// network, a killed server or a proxy's restart looks like.
func TestCutConnection(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("mid-query, reset=%v", reset), func(t *testing.T) {
			p := pgerrtest.NewProxy(t, pgtest.URL())
			conn := connect(t, p.URL())
			err := whileRunning(t, conn, "SELECT pg_sleep(30)", func() { p.Cut(reset) })
			t.Logf("cut mid-query: %v", err)
			require.True(t, pgerr.Transient(err), "%v", err)
		})
	}
	t.Run("idle, then a transaction", func(t *testing.T) {
		ctx := context.Background()
		p := pgerrtest.NewProxy(t, pgtest.URL())
		conn := connect(t, p.URL())
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		p.Cut(false)
		err = tx.QueryRow(ctx, "SELECT $1::int", 1).Scan(new(int))
		t.Logf("query after the cut: %v", err)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.True(t, pgerr.Transient(fmt.Errorf("postgres: looking up command %q: %w", "c-1", err)))
		err = tx.Commit(ctx)
		t.Logf("commit after the cut: %v", err)
		require.Error(t, err)
		require.True(t, pgerr.Transient(err), "%v", err)
	})
}

// Connecting to a port nothing listens on; to a database that does not
// exist (final); as a role that may open no more connections (SQLSTATE
// 53300, what "too many clients" says).
func TestConnectErrors(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	free := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = pgx.Connect(ctx, "postgres://postgres@"+free+"/postgres?sslmode=disable&connect_timeout=5")
	t.Logf("free port: %v", err)
	var ce *pgconn.ConnectError
	require.ErrorAs(t, err, &ce)
	require.True(t, pgerr.Transient(err), "%v", err)

	cfg, err := pgx.ParseConfig(pgtest.URL())
	require.NoError(t, err)
	cfg.Database = fmt.Sprintf("no_such_db_%x", pgtest.Suffix())
	_, err = pgx.ConnectConfig(ctx, cfg)
	t.Logf("no such database: %v", err)
	require.ErrorAs(t, err, &ce)
	require.False(t, pgerr.Transient(err), "a missing database is not transient: %v", err)

	pool := pgtest.Pool(t, 2)
	role := fmt.Sprintf("pgerr_full_%x", pgtest.Suffix())
	_, err = pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 0")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	cfg, err = pgx.ParseConfig(pgtest.URL())
	require.NoError(t, err)
	cfg.User = role
	_, err = pgx.ConnectConfig(ctx, cfg)
	t.Logf("connection limit: %v", err)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe, "the server must trust local connections for this test: %v", err)
	require.Equal(t, "53300", pe.Code)
	require.True(t, pgerr.Transient(err), "%v", err)
}

// A closed pool: the process is shutting down.
func TestClosedPool(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	pool.Close()
	_, err := pool.Exec(context.Background(), `SELECT 1`)
	t.Logf("closed pool: %v", err)
	require.True(t, pgerr.Transient(err), "%v", err)
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err, "connecting to %s", url)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// whileRunning runs sql on conn, calls interrupt once the server runs it,
// and returns the query's error (failing the test if it succeeded).
func whileRunning(t *testing.T, conn *pgx.Conn, sql string, interrupt func()) error {
	t.Helper()
	return whileRunningOn(t, pgtest.URL(), conn, sql, interrupt)
}

// whileRunningOn is whileRunning on the server at url.
func whileRunningOn(t *testing.T, url string, conn *pgx.Conn, sql string, interrupt func()) error {
	t.Helper()
	pid := conn.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), sql)
		done <- err
	}()
	waitActive(t, url, pid)
	interrupt()
	select {
	case err := <-done:
		require.Error(t, err, "the interrupted query succeeded")
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the interrupted query did not return")
		return nil
	}
}

// waitActive waits until backend pid of the server at url runs a
// statement.
func waitActive(t *testing.T, url string, pid uint32) {
	t.Helper()
	watcher := connect(t, url)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var active bool
		err := watcher.QueryRow(context.Background(),
			`SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'`, pid).Scan(&active)
		require.NoError(c, err)
		assert.True(c, active, "backend %d never ran its statement", pid)
	}, 10*time.Second, 10*time.Millisecond)
}

// An immediate shutdown of the server (`pg_ctl stop -m immediate`, the
// first half of `restart -m immediate`) under a running query, under an
// idle pooled connection and under a new connection; then its start
// again, after which the same requests work. It runs on a private server:
// the shared one is never stopped.
func TestImmediateRestart(t *testing.T) {
	srv := pgserver.New(t)
	ctx := context.Background()
	busy := connect(t, srv.URL())
	pool, err := pgxpool.New(ctx, srv.URL())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pool.Ping(ctx))

	err = whileRunningOn(t, srv.URL(), busy, "SELECT pg_sleep(30)", func() { require.NoError(t, srv.Stop(pgserver.Immediate)) })
	t.Logf("query under an immediate shutdown: %v", err)
	require.True(t, pgerr.Transient(err), "%v", err)

	err = pool.QueryRow(ctx, "SELECT $1::int", 1).Scan(new(int))
	t.Logf("pooled connection after the shutdown: %v", err)
	require.Error(t, err)
	require.True(t, pgerr.Transient(err), "%v", err)

	_, err = pgx.Connect(ctx, srv.URL())
	t.Logf("connecting while the server is down: %v", err)
	require.Error(t, err)
	require.True(t, pgerr.Transient(err), "%v", err)

	require.NoError(t, srv.Start())
	require.Eventually(t, func() bool {
		return pool.QueryRow(ctx, "SELECT $1::int", 1).Scan(new(int)) == nil
	}, 20*time.Second, 50*time.Millisecond, "the pool never recovered")
}
