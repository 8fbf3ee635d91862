// Package pgconnect opens a service's PostgreSQL pool and, when that fails,
// says why in words a newcomer can act on. "PostgreSQL is not reachable"
// alone leaves a wrong password, a missing database, a full server, a
// mysql:// URL and a stopped server looking the same, and each needs a
// different fix. An *Error names the problem, the URL that was used and
// where it came from (--database-url, $DATABASE_URL or a default; its
// password masked), and what to do.
//
// Both the app package (a service's serve) and the cli package (the
// operations commands) connect through it, so both report alike.
package pgconnect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the database used when nothing names one: the local
// PostgreSQL as its superuser, without TLS.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ErrUnreachable matches every *Error (errors.Is): PostgreSQL could not be
// used. The *Error says which problem it was; cli.ErrUnreachable is this
// value.
var ErrUnreachable = errors.New("PostgreSQL is not reachable")

// PingTimeout bounds the first connection, so that a server that accepts
// TCP connections but never answers is reported rather than waited on.
const PingTimeout = 15 * time.Second

// Where a URL came from, as Target.From names it.
const (
	FromFlag    = "--database-url"
	FromEnv     = "$DATABASE_URL"
	FromDefault = "the default"
)

// Target is a database URL and where it came from.
type Target struct {
	URL  string
	From string
}

// Env is $DATABASE_URL (empty when unset).
func Env() Target { return Target{URL: os.Getenv("DATABASE_URL"), From: FromEnv} }

// Resolve returns the first candidate with a URL, or DefaultURL.
func Resolve(candidates ...Target) Target {
	for _, c := range candidates {
		if c.URL != "" {
			return c
		}
	}
	return Target{URL: DefaultURL, From: FromDefault}
}

// Masked is the URL with its password replaced by xxxxx.
func (t Target) Masked() string { return Mask(t.URL) }

// Parse parses the target's URL into a pool configuration. A URL of
// another database (mysql://, say) or one that does not parse is an
// *Error with Problem BadURL.
func Parse(t Target) (*pgxpool.Config, error) {
	if scheme, ok := foreignScheme(t.URL); ok {
		return nil, &Error{Problem: BadURL, Target: t, Err: fmt.Errorf("its scheme is %s://, not postgres:// or postgresql://", scheme)}
	}
	cfg, err := pgxpool.ParseConfig(t.URL)
	if err != nil {
		return nil, &Error{Problem: BadURL, Target: t, Err: err}
	}
	return cfg, nil
}

// foreignScheme reports a URL scheme that is not PostgreSQL's. Keyword/value
// strings ("host=... dbname=...") have none and pass.
func foreignScheme(url string) (string, bool) {
	i := strings.Index(url, "://")
	if i <= 0 || strings.ContainsAny(url[:i], " =") {
		return "", false
	}
	scheme := strings.ToLower(url[:i])
	return scheme, scheme != "postgres" && scheme != "postgresql"
}

// Open opens a pool on cfg (from Parse, tuned by the caller) and pings it,
// so that a bad password or a missing database is found at start-up, not
// at the first request. Its errors are diagnosed (see Diagnose).
func Open(ctx context.Context, t Target, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, Diagnose(t, err)
	}
	if err := Ping(ctx, t, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Ping checks that the pool can connect, within PingTimeout, and diagnoses
// the failure. When ctx itself ends, it returns ctx's error: the caller
// gave up, the database did nothing wrong.
func Ping(ctx context.Context, t Target, pool *pgxpool.Pool) error {
	pingCtx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	err := pool.Ping(pingCtx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return Diagnose(t, err)
}

// Diagnose turns a failure to connect to t (an error of pgxpool.New,
// Ping or Acquire, or of pgx.Connect) into an *Error naming the problem.
// An *Error passes through unchanged; nil stays nil.
func Diagnose(t Target, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	e = &Error{Problem: Classify(err), Target: t, Err: err}
	if cfg, perr := pgxpool.ParseConfig(t.URL); perr == nil {
		c := cfg.ConnConfig
		e.Addr = net.JoinHostPort(c.Host, fmt.Sprint(c.Port))
		e.User, e.Database = c.User, c.Database
	}
	return e
}
