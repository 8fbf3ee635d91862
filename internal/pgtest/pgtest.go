// Package pgtest gives each test its own PostgreSQL schema on the server
// named by DATABASE_URL (or the default local address), so test packages run
// in parallel against one server. A test that cannot reach PostgreSQL fails
// with a message saying how to get one; it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgconnect"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
)

// DefaultURL is used when DATABASE_URL is unset.
const DefaultURL = pgconnect.DefaultURL

// URL returns DATABASE_URL, or DefaultURL when it is unset.
func URL() string { return target().URL }

func target() pgconnect.Target { return pgconnect.Resolve(pgconnect.Env()) }

// Pool connects to the test server with room for maxConns connections and
// closes the pool when the test ends.
func Pool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgconnect.Parse(target())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// Open bounds the first connection itself (pgconnect.PingTimeout) and
	// then says why it failed; a shorter deadline here would say only
	// "context deadline exceeded".
	pool, err := pgconnect.Open(context.Background(), target(), cfg)
	if err != nil {
		t.Fatalf("pgtest: %v\n"+
			"Run the tests with `make test`, which starts a private PostgreSQL when none answers, "+
			"or point DATABASE_URL at a server you may create schemas on.", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Suffix returns a random number for names that must not collide between
// concurrent tests.
func Suffix() uint64 {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(append([]byte{0, 0}, b[:]...))
}

// Schema creates an empty schema with a unique name, migrated to the latest
// version, and drops it when the test ends.
func Schema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := fmt.Sprintf("t_%x", Suffix())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := migrations.UpPool(ctx, pool, schema, app.Migrations()...); err != nil {
		t.Fatalf("pgtest: migrating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx, pool, []string{schema}); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return schema
}

// DB is the handle of store's pool and schema: where a test's projections
// and sagas keep their tables when the log is the PostgreSQL store.
func DB(store *postgres.Store) pgdb.DB { return pgdb.DB{Pool: store.Pool(), Schema: store.Schema()} }

// Manager is a projection manager over store's log, keeping its tables in
// store's schema; it fails the test when the manager cannot be made.
func Manager(t testing.TB, store *postgres.Store, cfg projection.Config) *projection.Manager {
	t.Helper()
	m, err := projection.NewManager(store, DB(store), cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return m
}
