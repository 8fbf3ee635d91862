package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// ledger is what a totals model must contain: per stream, the sum of the
// appended amounts and the number of events. It is kept by the writers, so
// it is the absolute truth the model is checked against.
type ledger struct {
	mu   sync.Mutex
	rows map[string][2]int64
	last eventstore.Position
	n    int64
}

func newLedger() *ledger { return &ledger{rows: map[string][2]int64{}} }

// add appends one Added event to stream and records it.
func (l *ledger) add(ctx context.Context, t testing.TB, store *postgres.Store, stream string, amount int) eventstore.AppendResult {
	t.Helper()
	res, err := store.Append(ctx, stream, eventstore.Any, []eventstore.Event{added(amount)})
	require.NoError(t, err)
	l.record(stream, int64(amount), res.Position)
	return res
}

func (l *ledger) record(stream string, amount int64, pos eventstore.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rows[stream]
	l.rows[stream] = [2]int64{r[0] + amount, r[1] + 1}
	l.n++
	if l.last.Before(pos) {
		l.last = pos
	}
}

func (l *ledger) snapshot() (map[string][2]int64, eventstore.Position, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][2]int64, len(l.rows))
	for k, v := range l.rows {
		out[k] = v
	}
	return out, l.last, l.n
}

// scaled is the ledger as a totals projector with the given scale sees it.
func scaled(rows map[string][2]int64, scale int64) map[string][2]int64 {
	out := make(map[string][2]int64, len(rows))
	for k, v := range rows {
		out[k] = [2]int64{v[0] * scale, v[1]}
	}
	return out
}

// runner runs mgr.Run in the background until stop, which checks that Run
// returned nil. Stopping twice is harmless; the test's end stops it.
type runner struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startRunner(t *testing.T, mgr *projection.Manager) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- mgr.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func (r *runner) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(20 * time.Second):
			r.err = errors.New("Run did not return within 20s of its context ending")
		}
	})
	return r.err
}

// pollEvery is how often a test waiting with require.Eventually (or
// EventuallyWithT) checks its condition.
const pollEvery = 10 * time.Millisecond

// tester is what the helpers that query the database need of a test: a
// *testing.T, or the *assert.CollectT of one attempt inside
// require.EventuallyWithT, where a failure only fails that attempt.
type tester interface {
	require.TestingT
	Helper()
}

// waitFor is WaitFor with a deadline, failing the test on timeout.
func waitFor(t testing.TB, mgr *projection.Manager, pos eventstore.Position, timeout time.Duration, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	require.NoError(t, mgr.WaitFor(ctx, pos, names...))
}

// notReached asserts that the projection does not reach pos within d: the
// only way to observe that something does not happen.
func notReached(t testing.TB, mgr *projection.Manager, pos eventstore.Position, d time.Duration, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	require.ErrorIs(t, mgr.WaitFor(ctx, pos, name), projection.ErrWaitTimeout)
}

func status(t tester, mgr *projection.Manager, name string) projection.Status {
	t.Helper()
	st, err := mgr.Status(context.Background(), name)
	require.NoError(t, err)
	return st
}

func waitState(t testing.TB, mgr *projection.Manager, name string, want projection.State, timeout time.Duration) projection.Status {
	t.Helper()
	var st projection.Status
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st = status(c, mgr, name)
		assert.Equal(c, want, st.State, "state (error %q)", st.Error)
	}, timeout, pollEvery)
	return st
}

func schemaExists(t testing.TB, pool *pgxpool.Pool, schema string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok))
	return ok
}

// namedPool is a pool whose connections carry application_name, so a test
// can tell one manager's sessions from another's in pg_stat_activity.
func namedPool(t testing.TB, app string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL())
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// lockSessions lists the sessions holding (granted) or waiting for (not
// granted) one of the projection package's advisory locks, with their
// application_name.
func lockSessions(t tester, pool *pgxpool.Pool, key string, granted bool) map[int32]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT l.pid, coalesce(a.application_name, '')
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted = $2
		  AND l.classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid
		  AND l.objid = (hashtextextended($1, 0) & 4294967295)::oid`, key, granted)
	require.NoError(t, err)
	out := map[int32]string{}
	for rows.Next() {
		var pid int32
		var app string
		require.NoError(t, rows.Scan(&pid, &app))
		out[pid] = app
	}
	require.NoError(t, rows.Err())
	return out
}

// checkpointRow reads a model's checkpoint row directly.
func checkpointRow(t testing.TB, pool *pgxpool.Pool, schema string) (eventstore.Position, int64) {
	t.Helper()
	var p eventstore.Position
	var seq, n int64
	err := pool.QueryRow(context.Background(), "SELECT pos_tx, pos_seq, events_applied FROM "+pgx.Identifier{schema, "cairn_checkpoint"}.Sanitize()).Scan(&p.Tx, &seq, &n)
	require.NoError(t, err)
	p.Seq = uint64(seq)
	return p, n
}

// verifyIdentical rebuilds a copy of the model up to its checkpoint and
// compares it with the live one row by row.
func verifyIdentical(t testing.TB, mgr *projection.Manager, name string) projection.RebuildReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := mgr.Rebuild(ctx, name, projection.RebuildOptions{Verify: true})
	require.NoError(t, err)
	require.Equal(t, "verify", rep.Mode)
	require.False(t, rep.Swapped)
	require.True(t, rep.Identical(), "live model differs from a rebuild: %+v", rep.Differences)
	return rep
}

// gate blocks a projector's Apply until opened. Tests defer open, which
// runs before any cleanup even when the test fails, so a failing test never
// leaves a runner stuck inside a transaction (holding locks the cleanup's
// DROP SCHEMA would wait for).
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

// progress bounds every wait for a runner to get somewhere. It is generous
// because the read horizon is cluster-wide: a transaction of another test
// package on the same server can hold every reader back for a while.
const progressWait = 30 * time.Second

// waitLag waits until Status reports want pending events. The lag counts
// the events a reader could be given now, so it can trail the appends
// while another session's transaction holds the horizon back; it never
// overshoots.
func waitLag(t testing.TB, mgr *projection.Manager, name string, want int64) projection.Status {
	t.Helper()
	var st projection.Status
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st = status(c, mgr, name)
		assert.Equal(c, want, st.Lag, "lag")
	}, progressWait, pollEvery)
	return st
}

// writeConcurrently starts writers that each append perWriter batches of
// one to three Added events to streams acct-0 … acct-(streams-1), shared
// between writers, recording every event in l. The channel closes when all
// have written.
func (l *ledger) writeConcurrently(t testing.TB, store eventstore.Appender, writers, perWriter, streams int) <-chan struct{} {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range perWriter {
				stream := fmt.Sprintf("acct-%d", (w+i)%streams)
				n := 1 + i%3
				events := make([]eventstore.Event, n)
				amounts := make([]int64, n)
				for j := range events {
					amounts[j] = int64(rand.IntN(1000))
					events[j] = added(int(amounts[j]))
				}
				res, err := store.Append(ctx, stream, eventstore.Any, events)
				if err != nil {
					t.Error(err)
					return
				}
				for _, amt := range amounts {
					l.record(stream, amt, res.Position)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}
