package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// seed appends n events spread over streams, amounts 1..n.
func seed(t *testing.T, e env, l *ledger, n, streams int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		l.add(ctx, t, e.store, fmt.Sprintf("acct-%d", i%streams), i+1)
	}
}

func requireNoLeftoverSchemas(t *testing.T, e env, name string) {
	t.Helper()
	require.False(t, schemaExists(t, e.store.Pool(), name+"__shadow"), "shadow schema left behind")
	require.False(t, schemaExists(t, e.store.Pool(), name+"__old"), "old schema left behind")
}

func TestZeroDowntimeRebuildWhileWritersAppend(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 40, LeaderRetry: 50 * time.Millisecond})
	p := &totals{name: uniqueName(t, "zdt"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	l := newLedger()
	seed(t, e, l, 300, 7)
	run := startRunner(t, e.mgr)
	_, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())

	// Writers keep appending through the whole rebuild.
	stopWriters := make(chan struct{})
	var appended atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				l.add(ctx, t, e.store, fmt.Sprintf("w%d-%d", w, i%3), w*1000+i)
				appended.Add(1)
				time.Sleep(time.Millisecond) // pacing: a steady stream, not a flood

			}
		})
	}
	// Some writes land before the rebuild starts.
	require.Eventually(t, func() bool { return appended.Load() >= 20 }, 10*time.Second, pollEvery, "writers not writing")

	var batches atomic.Int64
	var duringRebuild int64
	startCount := appended.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := e.mgr.Rebuild(ctx, p.Name(), projection.RebuildOptions{Progress: func(pr projection.Progress) {
		batches.Add(1)
		require.Equal(t, p.Name(), pr.Projection)
		require.LessOrEqual(t, pr.Done, pr.Total)
		// Zero downtime: the live model answers while the copy is built.
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		defer qcancel()
		var n int64
		require.NoError(t, e.store.Pool().QueryRow(qctx, "SELECT count(*) FROM "+pgx.Identifier{p.Name(), "totals"}.Sanitize()).Scan(&n))
		require.Positive(t, n)
		// Let the writers interleave with the copy.
		time.Sleep(3 * time.Millisecond)
	}})
	require.NoError(t, err)
	duringRebuild = appended.Load() - startCount
	close(stopWriters)
	wg.Wait()

	require.Equal(t, "shadow", rep.Mode)
	require.True(t, rep.Swapped)
	require.Greater(t, batches.Load(), int64(5))
	// How many of the concurrent appends the rebuild itself saw depends on timing
	// (other transactions in the cluster can hold them back); correctness is
	// checked below against the final log.
	require.GreaterOrEqual(t, rep.Events, int64(300))
	require.Positive(t, duringRebuild, "no write landed during the rebuild")
	requireNoLeftoverSchemas(t, e, p.Name())

	want, last, n := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	st := status(t, e.mgr, p.Name())
	require.Equal(t, n, st.EventsApplied, "every event applied exactly once, across the swap")
	require.Equal(t, last, st.Checkpoint)
	require.Equal(t, 1, st.Version)
	verifyIdentical(t, e.mgr, p.Name())
	require.NoError(t, run.stop())
	t.Logf("rebuild: %d events in %s, %d appends during it", rep.Events, rep.Duration, duringRebuild)
}

func TestInPlaceRebuildReplacesTheLiveModel(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 30, LeaderRetry: 50 * time.Millisecond})
	p := &totals{name: uniqueName(t, "inplace"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	l := newLedger()
	seed(t, e, l, 150, 5)
	run := startRunner(t, e.mgr)
	_, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())

	// Damage the live model: the rebuild must not build on it.
	ctx := context.Background()
	tbl := pgx.Identifier{p.Name(), "totals"}.Sanitize()
	_, err := e.store.Pool().Exec(ctx, "UPDATE "+tbl+" SET total = total + 999 WHERE stream_id = 'acct-1'")
	require.NoError(t, err)
	_, err = e.store.Pool().Exec(ctx, "INSERT INTO "+tbl+" VALUES ('bogus', 1, 1)")
	require.NoError(t, err)
	rep := verifyReport(t, e, p.Name())
	require.False(t, rep.Identical(), "verify must see the damage")
	require.Len(t, rep.Differences, 1)
	require.Equal(t, "totals", rep.Differences[0].Table)
	require.Equal(t, int64(2), rep.Differences[0].OnlyLive)
	require.Equal(t, int64(1), rep.Differences[0].OnlyRebuilt)

	var progress atomic.Int64
	rep, err = e.mgr.Rebuild(ctx, p.Name(), projection.RebuildOptions{InPlace: true, Progress: func(projection.Progress) { progress.Add(1) }})
	require.NoError(t, err)
	require.Equal(t, "in-place", rep.Mode)
	require.True(t, rep.Swapped)
	require.Equal(t, int64(150), rep.Events)
	require.Equal(t, last, rep.Position)
	require.Equal(t, int64(5), progress.Load())
	want, _, _ := l.snapshot()
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	requireNoLeftoverSchemas(t, e, p.Name())

	// The runner carries on from the rebuilt checkpoint.
	l.add(ctx, t, e.store, "acct-1", 7)
	want, last, n := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	require.Equal(t, n, status(t, e.mgr, p.Name()).EventsApplied)
	verifyIdentical(t, e.mgr, p.Name())
	require.NoError(t, run.stop())
}

func verifyReport(t *testing.T, e env, name string) projection.RebuildReport {
	t.Helper()
	rep, err := e.mgr.Rebuild(context.Background(), name, projection.RebuildOptions{Verify: true})
	require.NoError(t, err)
	return rep
}

// An interrupted rebuild leaves the live model as it was, no shadow schema
// behind, and no lock held: a rerun succeeds.
func TestInterruptedRebuildLeavesTheLiveModelAlone(t *testing.T) {
	var cancelAt atomic.Int64 // cancel the rebuild at this Apply call
	var calls atomic.Int64
	var cancelRebuild atomic.Pointer[context.CancelFunc]
	p := &totals{name: uniqueName(t, "interrupt"), version: 1, fail: func(eventstore.RecordedEvent) error {
		if at := cancelAt.Load(); at > 0 && calls.Add(1) == at {
			(*cancelRebuild.Load())()
		}
		return nil
	}}
	e := newEnv(t, projection.Config{BatchSize: 20, LeaderRetry: 50 * time.Millisecond})
	require.NoError(t, e.mgr.Register(p))
	l := newLedger()
	seed(t, e, l, 200, 6)
	run := startRunner(t, e.mgr)
	want, last, n := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.NoError(t, run.stop())
	cp, applied := checkpointRow(t, e.store.Pool(), p.Name())
	require.Equal(t, last, cp)
	require.Equal(t, n, applied)

	untouched := func(t *testing.T, what string) {
		t.Helper()
		require.Equal(t, want, modelRows(t, e.store, p.Name()), what)
		gotCP, gotN := checkpointRow(t, e.store.Pool(), p.Name())
		require.Equal(t, cp, gotCP, what)
		require.Equal(t, applied, gotN, what)
		requireNoLeftoverSchemas(t, e, p.Name())
	}

	t.Run("between batches", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var seen int
		_, err := e.mgr.Rebuild(ctx, p.Name(), projection.RebuildOptions{Progress: func(pr projection.Progress) {
			seen++
			require.True(t, schemaExists(t, e.store.Pool(), p.Name()+"__shadow"))
			if seen == 3 {
				cancel()
			}
		}})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 3, seen)
		untouched(t, "after a rebuild cancelled between batches")
	})

	t.Run("mid-batch", func(t *testing.T) {
		// The context ends while a batch transaction is open on the
		// rebuild's connection, which pgx then closes.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cancelRebuild.Store(&cancel)
		calls.Store(0)
		cancelAt.Store(55)
		_, err := e.mgr.Rebuild(ctx, p.Name(), projection.RebuildOptions{})
		cancelAt.Store(0)
		require.ErrorIs(t, err, context.Canceled)
		untouched(t, "after a rebuild cancelled mid-batch")
	})

	// The mid-batch cancel closed the rebuild's connection; the server
	// ends that session, and frees its rebuild lock, a moment later.
	var rep projection.RebuildReport
	var err error
	require.Eventually(t, func() bool {
		rep, err = e.mgr.Rebuild(context.Background(), p.Name(), projection.RebuildOptions{})
		return !errors.Is(err, projection.ErrRebuildInProgress)
	}, 10*time.Second, 20*time.Millisecond, "the cancelled rebuild's lock was never freed")
	require.NoError(t, err, "a rerun succeeds")
	require.True(t, rep.Swapped)
	require.Equal(t, n, rep.Events)
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	requireNoLeftoverSchemas(t, e, p.Name())
	verifyIdentical(t, e.mgr, p.Name())
}

// Registering a new version rebuilds the model blue/green on Run: the old
// model serves reads until the new one is swapped in.
func TestVersionBumpRebuildsBlueGreen(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 25, LeaderRetry: 50 * time.Millisecond})
	name := uniqueName(t, "bump")
	v1 := &totals{name: name, version: 1}
	require.NoError(t, e.mgr.Register(v1))
	l := newLedger()
	seed(t, e, l, 200, 5)
	run1 := startRunner(t, e.mgr)
	want, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, name)
	require.Equal(t, want, modelRows(t, e.store, name))
	require.NoError(t, run1.stop())
	require.Equal(t, 1, status(t, e.mgr, name).Version)

	// Version 2 multiplies amounts by ten. Its rebuild blocks on its 60th
	// event until released, so the test can look at the world mid-rebuild.
	entered := make(chan struct{})
	release := newGate()
	defer release.open()
	var calls atomic.Int64
	v2 := &totals{name: name, version: 2, scale: 10, fail: func(eventstore.RecordedEvent) error {
		if calls.Add(1) == 60 {
			close(entered)
			release.wait()
		}
		return nil
	}}
	mgr2 := pgtest.Manager(t, e.store, projection.Config{BatchSize: 25, LeaderRetry: 50 * time.Millisecond, Logger: quietLog})
	t.Cleanup(mgr2.Close)
	require.NoError(t, mgr2.Register(v2))
	run2 := startRunner(t, mgr2)

	select {
	case <-entered:
	case <-time.After(progressWait):
		t.Fatal("the version-2 rebuild never started")
	}
	// Mid-rebuild: the v1 model is live and answers at once.
	qctx, qcancel := context.WithTimeout(context.Background(), 2*time.Second)
	var rows int
	require.NoError(t, e.store.Pool().QueryRow(qctx, "SELECT count(*) FROM "+pgx.Identifier{name, "totals"}.Sanitize()).Scan(&rows))
	qcancel()
	require.Equal(t, 5, rows)
	require.Equal(t, want, modelRows(t, e.store, name))
	st := status(t, mgr2, name)
	require.Equal(t, 1, st.Version)
	require.Equal(t, last, st.Checkpoint)
	require.True(t, schemaExists(t, e.store.Pool(), name+"__shadow"))
	// Read-your-writes waits are answered by the old model meanwhile.
	waitFor(t, mgr2, last, 2*time.Second, name)
	// Writes during the rebuild end up in the new model.
	l.add(context.Background(), t, e.store, "acct-new", 3)
	release.open()

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 2, status(c, mgr2, name).Version, "version")
	}, progressWait, pollEvery)
	want, last, n := l.snapshot()
	waitFor(t, mgr2, last, progressWait, name)
	require.Equal(t, scaled(want, 10), modelRows(t, e.store, name), "the model reflects version 2's logic")
	require.Equal(t, n, status(t, mgr2, name).EventsApplied, "the version 2 model applied every event once")
	requireNoLeftoverSchemas(t, e, name)

	// It keeps following the log as version 2.
	l.add(context.Background(), t, e.store, "acct-0", 1)
	want, last, n = l.snapshot()
	waitFor(t, mgr2, last, progressWait, name)
	require.Equal(t, scaled(want, 10), modelRows(t, e.store, name))
	st = status(t, mgr2, name)
	require.Equal(t, 2, st.Version)
	require.Equal(t, n, st.EventsApplied)
	verifyIdentical(t, mgr2, name)
	require.NoError(t, run2.stop())
}

// A successful rebuild applied every event, dead-lettered ones included, so
// their dead letters are moot: retrying them would apply them twice.
func TestRebuildClearsMootDeadLetters(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprintf("inPlace=%v", inPlace), func(t *testing.T) {
			e := newEnv(t, projection.Config{BatchSize: 5, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Policy: projection.PolicyDeadLetter})
			hook := newPoison(false)
			p := &totals{name: uniqueName(t, "moot"), version: 1, fail: hook.hook}
			require.NoError(t, e.mgr.Register(p))
			l, _, _ := poisonedLog(t, e)
			want, last, _ := l.snapshot()
			run := startRunner(t, e.mgr)
			waitFor(t, e.mgr, last, progressWait, p.Name())
			require.Equal(t, int64(1), status(t, e.mgr, p.Name()).DeadLetters)

			hook.broken.Store(false)
			_, err := e.mgr.Rebuild(context.Background(), p.Name(), projection.RebuildOptions{InPlace: inPlace})
			require.NoError(t, err)
			require.Equal(t, want, modelRows(t, e.store, p.Name()))
			dl, err := e.mgr.DeadLetters(context.Background(), p.Name())
			require.NoError(t, err)
			require.Empty(t, dl, "dead letters of events the rebuild applied")
			n, err := e.mgr.Retry(context.Background(), p.Name())
			require.NoError(t, err)
			require.Zero(t, n)
			require.Equal(t, want, modelRows(t, e.store, p.Name()))
			require.NoError(t, run.stop())
		})
	}
}
