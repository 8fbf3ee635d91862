package pgconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgconnect"
	"github.com/cairn-es/cairn/internal/pgserver"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// connect opens and pings t, as a service does at start-up, and returns
// the diagnosed failure.
func connect(t *testing.T, target pgconnect.Target) *pgconnect.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgconnect.Parse(target)
	if err == nil {
		var pool interface{ Close() }
		pool, err = pgconnect.Open(ctx, target, cfg)
		if err == nil {
			pool.Close()
			t.Fatalf("connecting to %s succeeded; the test wants it to fail", target.Masked())
		}
	}
	require.ErrorIs(t, err, pgconnect.ErrUnreachable, "the sentinel callers test for")
	var e *pgconnect.Error
	require.ErrorAs(t, err, &e)
	t.Logf("%s:\n%v", e.Problem, err)
	return e
}

// withURL is the test server's URL with the parts a test changes.
func withURL(t *testing.T, edit func(u *url.URL)) string {
	t.Helper()
	u, err := url.Parse(pgtest.URL())
	require.NoError(t, err, "DATABASE_URL must be a URL for this test")
	edit(u)
	return u.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestRefused(t *testing.T) {
	addr := freePort(t)
	e := connect(t, pgconnect.Target{URL: "postgres://postgres@" + addr + "/postgres?sslmode=disable", From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.Refused, e.Problem)
	require.Equal(t, addr, e.Addr)
	msg := e.Error()
	require.Contains(t, msg, "PostgreSQL is not reachable at "+addr+": nothing is listening there (connection refused)")
	require.Contains(t, msg, "(from --database-url)")
	require.Contains(t, msg, "make test")
}

func TestMissingDatabase(t *testing.T) {
	pgtest.Pool(t, 1) // fails clearly when no server answers at all
	name := fmt.Sprintf("no_such_db_%x", pgtest.Suffix())
	e := connect(t, pgconnect.Target{URL: withURL(t, func(u *url.URL) { u.Path = "/" + name }), From: pgconnect.FromEnv})
	require.Equal(t, pgconnect.NoDatabase, e.Problem)
	msg := e.Error()
	require.Contains(t, msg, fmt.Sprintf("has no database %q", name))
	require.Contains(t, msg, "SQLSTATE 3D000")
	require.Contains(t, msg, "createdb "+name)
	require.Contains(t, msg, "(from $DATABASE_URL)")
	var pe *pgconn.PgError
	require.ErrorAs(t, e, &pe, "the server's error stays reachable")
}

// A role the server does not know is refused with 28000, whatever the
// server's pg_hba.conf says.
func TestUnknownRole(t *testing.T) {
	pgtest.Pool(t, 1)
	role := fmt.Sprintf("no_such_role_%x", pgtest.Suffix())
	e := connect(t, pgconnect.Target{URL: withURL(t, func(u *url.URL) { u.User = url.User(role) }), From: pgconnect.FromDefault})
	require.Equal(t, pgconnect.Auth, e.Problem)
	require.Contains(t, e.Error(), fmt.Sprintf("refused the login of user %q", role))
	require.Contains(t, e.Error(), "SQLSTATE 28000")
	require.Contains(t, e.Error(), "CAIRN_PRIVATE_POSTGRES=1")
}

// A role with no connection slot left is what a full server looks like
// (SQLSTATE 53300), without filling the shared server.
func TestTooManyClients(t *testing.T) {
	pool := pgtest.Pool(t, 1)
	ctx := context.Background()
	role := fmt.Sprintf("full_role_%x", pgtest.Suffix())
	_, err := pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 0")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	e := connect(t, pgconnect.Target{URL: withURL(t, func(u *url.URL) { u.User = url.User(role) }), From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.TooManyClients, e.Problem)
	require.Contains(t, e.Error(), "has no connection slot left (too many clients)")
	require.Contains(t, e.Error(), "SQLSTATE 53300")
	require.Contains(t, e.Error(), "CAIRN_PRIVATE_POSTGRES=1 make demo")

	// What the server says when max_connections itself is reached.
	full := pgconnect.Diagnose(pgconnect.Target{URL: pgconnect.DefaultURL, From: pgconnect.FromDefault},
		fmt.Errorf("ping: %w", &pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}))
	require.ErrorIs(t, full, pgconnect.ErrUnreachable)
	require.Contains(t, full.Error(), "PostgreSQL at 127.0.0.1:5432 has no connection slot left (too many clients): sorry, too many clients already (SQLSTATE 53300)")
}

// A wrong password needs a server that asks for one: a private server
// whose pg_hba.conf wants scram-sha-256 over TCP.
func TestWrongPassword(t *testing.T) {
	srv := pgserver.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, srv.URL())
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "ALTER ROLE postgres PASSWORD 'right-horse-battery'")
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "ALTER SYSTEM SET hba_file = '"+passwordHBA(t)+"'")
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))
	require.NoError(t, srv.Restart(pgserver.Fast), srv.LogTail(20))

	wrong := strings.Replace(srv.URL(), "postgres@", "postgres:wrong-staple-secret@", 1)
	e := connect(t, pgconnect.Target{URL: wrong, From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.Auth, e.Problem)
	msg := e.Error()
	require.Contains(t, msg, `refused the login of user "postgres" (authentication failed)`)
	require.Contains(t, msg, "SQLSTATE 28P01")
	require.Contains(t, msg, "postgres:xxxxx@127.0.0.1")
	require.NotContains(t, msg, "wrong-staple-secret")
}

// passwordHBA writes a pg_hba.conf that trusts the local socket (pg_ctl
// checks readiness there) and wants a password over TCP, readable by the
// server's owner.
func passwordHBA(t *testing.T) string {
	dir, err := os.MkdirTemp("", "cairn-hba-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	path := filepath.Join(dir, "pg_hba.conf")
	require.NoError(t, os.WriteFile(path, []byte("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o644))
	return path
}

func TestForeignScheme(t *testing.T) {
	e := connect(t, pgconnect.Target{URL: "mysql://root:hunter22@127.0.0.1:3306/shop", From: pgconnect.FromEnv})
	require.Equal(t, pgconnect.BadURL, e.Problem)
	msg := e.Error()
	require.Contains(t, msg, "its scheme is mysql://, not postgres:// or postgresql://")
	require.Contains(t, msg, "mysql://root:xxxxx@127.0.0.1:3306/shop (from $DATABASE_URL)")
	require.NotContains(t, msg, "hunter22")
}

func TestURLThatDoesNotParse(t *testing.T) {
	e := connect(t, pgconnect.Target{URL: "postgres://app:hunter22@127.0.0.1:notaport/shop", From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.BadURL, e.Problem)
	require.Contains(t, e.Error(), "not a usable PostgreSQL URL")
	require.NotContains(t, e.Error(), "hunter22")
	var pe *pgconn.ParseConfigError
	require.ErrorAs(t, e, &pe)
}

// The shared server offers TLS with a self-signed certificate, which
// sslmode=verify-full rejects.
func TestTLSVerification(t *testing.T) {
	pgtest.Pool(t, 1)
	e := connect(t, pgconnect.Target{URL: withURL(t, func(u *url.URL) { u.RawQuery = "sslmode=verify-full&sslrootcert=system" }), From: pgconnect.FromFlag})
	if e.Problem == pgconnect.Refused || e.Problem == pgconnect.Other && strings.Contains(e.Err.Error(), "refused TLS") {
		t.Fatalf("this test needs a server with ssl=on: %v", e)
	}
	require.Equal(t, pgconnect.TLS, e.Problem)
	require.Contains(t, e.Error(), "the TLS handshake failed")
	require.Contains(t, e.Error(), "sslmode")
}

// A listener that answers the TLS request with "no" is a server without
// TLS, for a URL that requires it.
func TestTLSRefused(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) {
		buf := make([]byte, 8)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte("N"))
		}
	})
	e := connect(t, pgconnect.Target{URL: "postgres://postgres@" + addr + "/postgres?sslmode=require", From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.TLS, e.Problem)
	require.Contains(t, e.Error(), "sslmode=disable")
}

// A listener that accepts and never answers: a firewall that drops, a
// stuck server.
func TestTimeout(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) { time.Sleep(5 * time.Second) })
	start := time.Now()
	e := connect(t, pgconnect.Target{URL: "postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=1", From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.Timeout, e.Problem)
	require.Less(t, time.Since(start), 4*time.Second)
	require.Contains(t, e.Error(), "no answer in time (timeout)")
}

// serveRaw accepts TCP connections on a free port and hands each to serve.
func serveRaw(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUnknownHost(t *testing.T) {
	e := connect(t, pgconnect.Target{URL: "postgres://postgres@no-such-host.invalid:5432/postgres?sslmode=disable&connect_timeout=5", From: pgconnect.FromFlag})
	require.Equal(t, pgconnect.UnknownHost, e.Problem)
	require.Contains(t, e.Error(), "no-such-host.invalid:5432: the host name does not resolve")
}

func TestMaskedPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:s3cr%40t@db:5432/shop?sslmode=disable":   "postgres://app:xxxxx@db:5432/shop?sslmode=disable",
		"postgres://app@db/shop?password=s3cret&sslmode=require": "postgres://app@db/shop?password=xxxxx&sslmode=require",
		"postgres://app@db/shop":                                 "postgres://app@db/shop",
		"host=db user=app password=s3cret dbname=shop":           "host=db user=app password=xxxxx dbname=shop",
		"host=db password='a secret' dbname=shop":                "host=db password=xxxxx dbname=shop",
		"postgres://app:s3cret@db:port/shop":                     "postgres://app:xxxxx@db:port/shop",
	} {
		require.Equal(t, want, pgconnect.Target{URL: in}.Masked(), in)
	}
	// The driver's own words, when they quote the URL, are masked too.
	err := pgconnect.Diagnose(pgconnect.Target{URL: "postgres://app:s3cret@db/shop", From: pgconnect.FromFlag},
		errors.New("something about postgres://app:s3cret@db/shop"))
	require.NotContains(t, err.Error(), "s3cret")
	require.Contains(t, err.Error(), "something about postgres://app:xxxxx@db/shop")
}

func TestResolve(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://env@db/env")
	flag := pgconnect.Target{URL: "postgres://flag@db/flag", From: pgconnect.FromFlag}
	require.Equal(t, flag, pgconnect.Resolve(flag, pgconnect.Env()))
	require.Equal(t, pgconnect.Target{URL: "postgres://env@db/env", From: pgconnect.FromEnv},
		pgconnect.Resolve(pgconnect.Target{From: pgconnect.FromFlag}, pgconnect.Env()))
	t.Setenv("DATABASE_URL", "")
	require.Equal(t, pgconnect.Target{URL: pgconnect.DefaultURL, From: pgconnect.FromDefault},
		pgconnect.Resolve(pgconnect.Target{From: pgconnect.FromFlag}, pgconnect.Env()))
}

// A caller that gives up is told so, not handed a diagnosis of the
// database.
func TestCallerCancels(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) { time.Sleep(5 * time.Second) })
	target := pgconnect.Target{URL: "postgres://postgres@" + addr + "/postgres?sslmode=disable", From: pgconnect.FromFlag}
	cfg, err := pgconnect.Parse(target)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = pgconnect.Open(ctx, target, cfg)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, pgconnect.ErrUnreachable)
}
