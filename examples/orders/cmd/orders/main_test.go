package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// runMainEnv makes the test binary run the orders command instead of the
// tests, so that a test runs the command as a process of its own, as a
// user does, without building it.
const runMainEnv = "CAIRN_TEST_RUN_ORDERS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main() // exits with the command's status
		return
	}
	os.Exit(m.Run())
}

// result is one run of the orders command.
type result struct {
	out, err string
	code     int
	elapsed  time.Duration
}

// runOrders runs `orders args...` as a process with DATABASE_URL set to
// databaseURL.
func runOrders(t *testing.T, databaseURL string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "DATABASE_URL="+databaseURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{out: stdout.String(), err: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running orders %v: %v", args, err)
	}
	t.Logf("orders %s: exit %d after %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.elapsed.Round(time.Millisecond), r.out, r.err)
	return r
}

// freshDatabase creates an empty database for one test, dropped when it
// ends, and returns its URL and a pool on it.
func freshDatabase(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	admin := pgtest.Pool(t, 2)
	ctx := context.Background()
	name := fmt.Sprintf("t_orders_cmd_%x", pgtest.Suffix())
	_, err := admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	u, err := url.Parse(pgtest.URL())
	require.NoError(t, err, "DATABASE_URL must be a URL for this test")
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return u.String(), pool
}

// contents sums up what a database holds: its schemas and the number of
// its relations, functions and types.
func contents(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(context.Background(), `SELECT
		(SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace) || ' / ' ||
		(SELECT count(*) FROM pg_class) || ' relations / ' ||
		(SELECT count(*) FROM pg_proc) || ' functions / ' ||
		(SELECT count(*) FROM pg_type) || ' types'`).Scan(&s)
	require.NoError(t, err)
	return s
}

// foreign is another process's HTTP server, ready and answering 200 to
// everything, that counts the requests it receives.
func foreign(t *testing.T) (addr string, requests *atomic.Int64) {
	requests = new(atomic.Int64)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), requests
}

// On a port another server holds, demo and serve exit non-zero at once,
// naming the address and --addr, having sent that server nothing and
// changed nothing in the database. "At once" is checked loosely (5 s, a
// race-detector binary starting on a loaded 2-core machine took 1.3 s):
// the bound catches a wait for something, such as a connect timeout.
func TestBusyPortFailsAtOnceAndTouchesNothing(t *testing.T) {
	for _, args := range [][]string{{"demo", "--exit"}, {"serve"}} {
		t.Run(args[0], func(t *testing.T) {
			dbURL, pool := freshDatabase(t)
			before := contents(t, pool)
			addr, requests := foreign(t)

			r := runOrders(t, dbURL, append(args, "--addr", addr, "--database-url", dbURL)...)
			require.Equal(t, 1, r.code, "exit status")
			require.Less(t, r.elapsed, 5*time.Second)
			require.Contains(t, r.err, "cannot listen on "+addr+": another process is already listening there")
			require.Contains(t, r.err, "--addr HOST:PORT")
			require.NotContains(t, r.err+r.out, "serving")
			require.Zero(t, requests.Load(), "requests the foreign server received")
			require.Equal(t, before, contents(t, pool), "the database changed")
		})
	}
}

// The demo drives the server on the listener it bound, whose port the
// flag does not name, and nothing else.
func TestDemoDrivesTheListenerItBound(t *testing.T) {
	dbURL, pool := freshDatabase(t)
	_, requests := foreign(t)
	r := runOrders(t, dbURL, "demo", "--exit", "--addr", "127.0.0.1:0", "--database-url", dbURL,
		"--orders", "20", "--skus", "2", "--stock", "10", "--concurrency", "4")
	require.Equal(t, 0, r.code, "exit status")
	require.Regexp(t, `serving on http://127\.0\.0\.1:[1-9][0-9]* `, r.out)
	require.Contains(t, r.out, "All 20 orders reached a final state")
	require.Zero(t, requests.Load())
	var orders int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM cairn.events WHERE type = 'OrderPlaced'`).Scan(&orders))
	require.Equal(t, 20, orders, "the orders went into this database")
}

// execute runs the command line in this process.
func execute(args ...string) (stdout, stderr string, err error) {
	root := cli.New(config())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// The help states each command's payment timeout, the one it uses.
func TestPaymentTimeoutDefaults(t *testing.T) {
	for cmd, want := range map[string]string{"demo": "10s", "serve": "30s"} {
		out, _, err := execute(cmd, "--help")
		require.NoError(t, err)
		line := flagLine(out, "--payment-timeout")
		require.Contains(t, line, "(default "+want+")", cmd)
		require.Equal(t, 1, strings.Count(line, "default"), "one default, the one used: %s", line)
		c, _, err := cli.New(config()).Find([]string{cmd})
		require.NoError(t, err)
		require.Equal(t, want, c.Flags().Lookup("payment-timeout").DefValue, cmd)
	}
	_, _, err := execute("serve", "--payment-timeout", "0s", "--addr", "127.0.0.1:0")
	require.ErrorContains(t, err, "--payment-timeout must be positive")
}

func flagLine(help, flag string) string {
	for line := range strings.SplitSeq(help, "\n") {
		if strings.Contains(line, flag+" ") {
			return line
		}
	}
	return ""
}

// serve and the operations commands say what is wrong with the database
// URL and where it came from; a failed start frees the address it bound.
func TestDatabaseProblemsAreNamed(t *testing.T) {
	_, stderr, err := execute("migrate", "status", "--database-url", "mysql://root:hunter22@127.0.0.1/shop")
	require.ErrorIs(t, err, cli.ErrUnreachable)
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, stderr, "its scheme is mysql://")
	require.Contains(t, stderr, "mysql://root:xxxxx@127.0.0.1/shop (from --database-url)")
	require.NotContains(t, stderr, "hunter22")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	refused := "postgres://postgres@" + addr + "/postgres?sslmode=disable"
	serveAddr := freeAddr(t)
	_, stderr, err = execute("serve", "--addr", serveAddr, "--database-url", refused)
	require.ErrorIs(t, err, cli.ErrUnreachable)
	require.Contains(t, stderr, "PostgreSQL is not reachable at "+addr+": nothing is listening there (connection refused)")
	require.Contains(t, stderr, "(from --database-url)")
	again, err := net.Listen("tcp", serveAddr)
	require.NoError(t, err, "serve left its address bound after failing to start")
	require.NoError(t, again.Close())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// serve's authentication flags are read, and a bad one fails the start
// before the database is touched (this URL has no server behind it).
func TestServeSecurityFlags(t *testing.T) {
	out, _, err := execute("serve", "--help")
	require.NoError(t, err)
	for _, flag := range []string{"--api-keys-file", "--jwt-secret-file", "--jwks-file", "--jwt-public-key-file", "--metrics-scope", "--cursor-key-file", "--cursor-key-previous-file"} {
		require.Contains(t, out, flag)
	}
	dir := t.TempDir()
	keys := dir + "/keys"
	require.NoError(t, os.WriteFile(keys, []byte("no scopes here\n"), 0o600))
	unused := "postgres://postgres@127.0.0.1:1/none?sslmode=disable"
	_, _, err = execute("serve", "--addr", freeAddr(t), "--database-url", unused, "--api-keys-file", keys)
	require.ErrorContains(t, err, "CAIRN_API_KEYS")
	_, _, err = execute("serve", "--addr", freeAddr(t), "--database-url", unused, "--api-keys-file", dir+"/absent")
	require.ErrorContains(t, err, "CAIRN_API_KEYS_FILE")
}
