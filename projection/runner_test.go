package projection_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
)

// leadLog is a slog handler that signals when its manager takes a lead.
type leadLog struct {
	slog.Handler
	took chan string
}

func newLeadLog() *leadLog {
	return &leadLog{Handler: quietLog.Handler(), took: make(chan string, 64)}
}

func (h *leadLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *leadLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "cairn: projection runner took the lead" {
		h.took <- r.Message
	}
	return nil
}
func (h *leadLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *leadLog) WithGroup(string) slog.Handler      { return h }

// member is one of several processes running the same projections: its own
// pool (named, so its sessions are recognisable), store and manager.
type member struct {
	app   string
	store *postgres.Store
	mgr   *projection.Manager
	leads *leadLog
}

func newMember(t *testing.T, app, schema string, cfg projection.Config, p projection.Projector) *member {
	t.Helper()
	pool := namedPool(t, app, 10)
	store, err := postgres.New(pool, postgres.Config{Schema: schema, Logger: quietLog})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	leads := newLeadLog()
	cfg.Logger = slog.New(leads)
	mgr := pgtest.Manager(t, store, cfg)
	t.Cleanup(mgr.Close)
	require.NoError(t, mgr.Register(p))
	return &member{app: app, store: store, mgr: mgr, leads: leads}
}

// leader returns the application name of the session holding the
// projection's leader lock ("" when none does).
func leader(t tester, e env, name string) string {
	t.Helper()
	holders := lockSessions(t, e.store.Pool(), projection.LockKey("leader", e.store.Schema(), name), true)
	require.LessOrEqual(t, len(holders), 1)
	for _, app := range holders {
		return app
	}
	return ""
}

// Two runners on one database, each with its own pool and store, while
// writers append; the leader's session is killed and the runners are
// stopped and restarted under them. Every event is applied exactly once.
func TestTwoRunnersApplyEveryEventExactlyOnce(t *testing.T) {
	e := newEnv(t, projection.Config{})
	name := uniqueName(t, "pair")
	cfg := projection.Config{BatchSize: 20, LeaderRetry: 50 * time.Millisecond, Retry: fastRetry}
	a := newMember(t, "cairn-test-a-"+name, e.store.Schema(), cfg, &totals{name: name, version: 1})
	b := newMember(t, "cairn-test-b-"+name, e.store.Schema(), cfg, &totals{name: name, version: 1})
	runs := map[*member]*runner{a: startRunner(t, a.mgr), b: startRunner(t, b.mgr)}

	l := newLedger()
	const writers, perWriter = 6, 150
	// Hot streams shared by writers, and batches of several events.
	writing := l.writeConcurrently(t, e.store, writers, perWriter, 9)

	// Chaos while the writers write: kill the leader's session (a crash
	// mid-batch as far as PostgreSQL is concerned), or stop and restart a
	// runner (a deploy).
	kills, restarts := 0, 0
	ctx := context.Background()
	for round := 0; ; round++ {
		select {
		case <-writing:
		case <-time.After(40 * time.Millisecond):
			if round%3 == 2 {
				m := []*member{a, b}[rand.IntN(2)]
				require.NoError(t, runs[m].stop())
				runs[m] = startRunner(t, m.mgr)
				restarts++
				continue
			}
			for pid := range lockSessions(t, e.store.Pool(), projection.LockKey("leader", e.store.Schema(), name), true) {
				_, err := e.store.Pool().Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
				require.NoError(t, err)
				kills++
			}
			continue
		}
		break
	}
	require.False(t, t.Failed())

	want, last, n := l.snapshot()
	require.Equal(t, int64(writers*perWriter*2), n)
	waitFor(t, a.mgr, last, progressWait, name)
	require.Equal(t, want, modelRows(t, e.store, name), "per-stream sums and counts")
	st := status(t, b.mgr, name)
	require.Equal(t, n, st.EventsApplied, "events applied, counted by the checkpoint")
	require.Equal(t, projection.Running, st.State)
	require.Zero(t, st.DeadLetters)
	require.Contains(t, []string{a.app, b.app}, leader(t, e, name))
	verifyIdentical(t, a.mgr, name)
	require.NoError(t, runs[a].stop())
	require.NoError(t, runs[b].stop())
	t.Logf("%d events, %d leader sessions killed, %d runner restarts", n, kills, restarts)
	require.Positive(t, kills)
}

// When the leader stops, the standby takes over within a few LeaderRetry
// periods.
func TestStandbyTakesOverWhenTheLeaderStops(t *testing.T) {
	e := newEnv(t, projection.Config{})
	name := uniqueName(t, "standby")
	cfg := projection.Config{LeaderRetry: 100 * time.Millisecond}
	a := newMember(t, "cairn-test-a-"+name, e.store.Schema(), cfg, &totals{name: name, version: 1})
	b := newMember(t, "cairn-test-b-"+name, e.store.Schema(), cfg, &totals{name: name, version: 1})
	l := newLedger()
	ctx := context.Background()

	runA := startRunner(t, a.mgr)
	l.add(ctx, t, e.store, "acct-1", 1)
	_, last, _ := l.snapshot()
	waitFor(t, a.mgr, last, progressWait, name)
	require.Equal(t, a.app, leader(t, e, name))

	runB := startRunner(t, b.mgr)
	// b is standing by: it keeps asking for the lock and does not get it.
	for range 3 {
		l.add(ctx, t, e.store, "acct-2", 2)
		_, last, _ = l.snapshot()
		waitFor(t, b.mgr, last, progressWait, name)
		require.Equal(t, a.app, leader(t, e, name))
	}
	require.Empty(t, b.leads.took)

	require.NoError(t, runA.stop())
	stopped := time.Now()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, b.app, leader(c, e, name), "leader")
	}, 5*time.Second, pollEvery)
	takeover := time.Since(stopped)
	l.add(ctx, t, e.store, "acct-3", 3)
	want, last, _ := l.snapshot()
	waitFor(t, b.mgr, last, progressWait, name)
	require.Len(t, b.leads.took, 1)
	require.Equal(t, want, modelRows(t, e.store, name))
	t.Logf("takeover in %s (LeaderRetry %s)", takeover, cfg.LeaderRetry)
	require.NoError(t, runB.stop())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Empty(c, leader(c, e, name), "a leader lock is still held after both runners stopped")
	}, 5*time.Second, pollEvery)
}

func TestPauseStopsApplyingAndResumeCatchesUp(t *testing.T) {
	e := newEnv(t, projection.Config{LeaderRetry: 50 * time.Millisecond})
	p := &totals{name: uniqueName(t, "pause"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	l := newLedger()
	run := startRunner(t, e.mgr)
	l.add(ctx, t, e.store, "acct-1", 1)
	before, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	cp := last

	require.NoError(t, e.mgr.Pause(ctx, p.Name()))
	require.Equal(t, projection.Paused, status(t, e.mgr, p.Name()).State)
	for i := range 5 {
		l.add(ctx, t, e.store, "acct-2", i)
	}
	want, last, _ := l.snapshot()
	notReached(t, e.mgr, last, 600*time.Millisecond, p.Name())
	require.Equal(t, before, modelRows(t, e.store, p.Name()))
	st := waitLag(t, e.mgr, p.Name(), 5)
	require.Equal(t, projection.Paused, st.State)
	require.Equal(t, cp, st.Checkpoint)

	require.NoError(t, e.mgr.Resume(ctx, p.Name()))
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	require.Equal(t, projection.Running, status(t, e.mgr, p.Name()).State)
	require.NoError(t, run.stop())

	// Unknown names are errors, not silent no-ops.
	require.ErrorIs(t, e.mgr.Pause(ctx, "no_such_projection"), projection.ErrUnknownProjection)
	require.ErrorIs(t, e.mgr.Resume(ctx, "no_such_projection"), projection.ErrUnknownProjection)
}

// Pause waits for a batch in flight: once it returns, the model no longer
// changes.
func TestPauseWaitsForTheBatchInFlight(t *testing.T) {
	entered := make(chan struct{})
	release := newGate()
	defer release.open()
	var gated atomic.Bool
	p := &totals{name: uniqueName(t, "pausebarrier"), version: 1, fail: func(ev eventstore.RecordedEvent) error {
		if ev.StreamID == "slow" && gated.CompareAndSwap(false, true) {
			close(entered)
			release.wait()
		}
		return nil
	}}
	e := newEnv(t, projection.Config{LeaderRetry: 50 * time.Millisecond})
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	l := newLedger()
	run := startRunner(t, e.mgr)
	l.add(ctx, t, e.store, "slow", 5)
	<-entered // the runner is applying "slow", its transaction open

	paused := make(chan error, 1)
	go func() { paused <- e.mgr.Pause(ctx, p.Name()) }()
	select {
	case err := <-paused:
		t.Fatalf("Pause returned (%v) while a batch was being applied", err)
	case <-time.After(300 * time.Millisecond):
	}
	release.open()
	require.NoError(t, <-paused)
	// The batch in flight committed before Pause took effect, and nothing
	// moves afterwards.
	want, last, _ := l.snapshot()
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	require.Equal(t, last, status(t, e.mgr, p.Name()).Checkpoint)
	l.add(ctx, t, e.store, "slow", 1)
	_, last, _ = l.snapshot()
	notReached(t, e.mgr, last, 400*time.Millisecond, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	require.NoError(t, run.stop())
}

func TestResetRebuildsFromZeroAndClearsDeadLetters(t *testing.T) {
	hook := newPoison(false)
	p := &totals{name: uniqueName(t, "reset"), version: 1, fail: hook.hook}
	e := newEnv(t, projection.Config{BatchSize: 4, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
	require.NoError(t, e.mgr.Register(p, projection.WithPolicy(projection.PolicyDeadLetter)))
	l, _, _ := poisonedLog(t, e)
	want, last, n := l.snapshot()
	run := startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, int64(1), status(t, e.mgr, p.Name()).DeadLetters)

	// Damage the model; a reset must not keep anything of it.
	ctx := context.Background()
	_, err := e.store.Pool().Exec(ctx, "INSERT INTO "+pgx.Identifier{p.Name(), "totals"}.Sanitize()+" VALUES ('bogus', 1, 1)")
	require.NoError(t, err)
	hook.broken.Store(false)
	require.NoError(t, e.mgr.Reset(ctx, p.Name()))
	st := status(t, e.mgr, p.Name())
	require.Zero(t, st.DeadLetters)
	dl, err := e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Empty(t, dl)

	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()), "rebuilt from zero, poison included")
	st = status(t, e.mgr, p.Name())
	require.Equal(t, n, st.EventsApplied)
	require.Equal(t, projection.Running, st.State)
	verifyIdentical(t, e.mgr, p.Name())

	// A reset of a failed projection starts it again.
	hook.broken.Store(true)
	require.NoError(t, e.mgr.Pause(ctx, p.Name()))
	require.NoError(t, e.mgr.Reset(ctx, p.Name()))
	require.Equal(t, projection.Running, status(t, e.mgr, p.Name()).State)
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()))
	require.Equal(t, int64(1), status(t, e.mgr, p.Name()).DeadLetters)
	require.NoError(t, run.stop())
	require.ErrorIs(t, e.mgr.Reset(ctx, "no_such_projection"), projection.ErrUnknownProjection)
}

// With the runner stopped, Lag is the number of pending events of the
// projection's types.
func TestStatusLagCountsPendingEventsOfItsTypes(t *testing.T) {
	e := newEnv(t, projection.Config{LeaderRetry: 50 * time.Millisecond})
	p := &totals{name: uniqueName(t, "lag"), version: 1}
	require.NoError(t, e.mgr.Register(p))
	ctx := context.Background()
	other := func() {
		_, err := e.store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored", Data: []byte(`{}`)}})
		require.NoError(t, err)
	}

	// readable waits until the log's head is readable: a transaction
	// anywhere in the cluster (another test package's) can hold readers,
	// and so the lag count, back for a moment.
	readable := func() {
		t.Helper()
		other()
		res, err := e.store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored", Data: []byte(`{}`)}})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			head, err := e.store.Head(ctx)
			require.NoError(c, err)
			assert.False(c, head.Before(res.Position), "the head is held back")
		}, 20*time.Second, pollEvery)
	}

	// Never run: everything of its types is pending.
	l := newLedger()
	for i := range 4 {
		l.add(ctx, t, e.store, "acct-1", i)
		other()
	}
	readable()
	st := status(t, e.mgr, p.Name())
	require.Equal(t, projection.State("new"), st.State)
	require.Equal(t, int64(4), st.Lag)
	require.Equal(t, eventstore.Start, st.Checkpoint)

	run := startRunner(t, e.mgr)
	_, last, _ := l.snapshot()
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.NoError(t, run.stop())
	st = status(t, e.mgr, p.Name())
	require.Zero(t, st.Lag)
	require.Equal(t, int64(4), st.EventsApplied)
	require.NotNil(t, st.LastAppliedAt)
	require.GreaterOrEqual(t, st.SinceLastApplied, 0.0)

	// Stopped: its events count, other types do not.
	for i := range 7 {
		l.add(ctx, t, e.store, fmt.Sprintf("acct-%d", i%2), i)
		other()
		other()
	}
	readable()
	st = status(t, e.mgr, p.Name())
	require.Equal(t, int64(7), st.Lag)
	require.False(t, st.LagCapped)
	head, err := e.store.Head(ctx)
	require.NoError(t, err)
	require.False(t, head.Before(st.Head))
	require.False(t, st.Head.Before(last))
	require.Equal(t, last, st.Checkpoint)

	all, err := e.mgr.StatusAll(ctx)
	require.NoError(t, err)
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.Name
	}
	require.True(t, slices.Contains(names, p.Name()))
	require.ErrorIs(t, func() error { _, err := e.mgr.Status(ctx, "no_such_projection"); return err }(), projection.ErrUnknownProjection)
}

// Names are schema names: those that would name someone else's schema are
// refused, and a projection never drops a schema that is not its model.
func TestProjectionNeverDropsASchemaItDoesNotOwn(t *testing.T) {
	for _, bad := range []string{"public", "information_schema", "pg_catalog", "pg_temp", "pg_toast", "x__shadow", "x__old", "Upper", "1abc", ""} {
		require.ErrorIs(t, projection.ValidateName(bad), projection.ErrInvalidName, bad)
	}
	e := newEnv(t, projection.Config{LeaderRetry: 50 * time.Millisecond})
	// The store's own schema.
	err := e.mgr.Register(&totals{name: e.store.Schema(), version: 1})
	require.ErrorIs(t, err, projection.ErrInvalidName)

	// A schema that exists and is not a read model (no checkpoint table).
	ctx := context.Background()
	foreign := fmt.Sprintf("foreign_%x", pgtest.Suffix())
	_, err = e.store.Pool().Exec(ctx, "CREATE SCHEMA "+foreign+"; CREATE TABLE "+foreign+".precious (x int); INSERT INTO "+foreign+".precious VALUES (42)")
	require.NoError(t, err)
	pgtest.DropSchemas(t, e.store.Pool(), foreign)
	p := &totals{name: foreign, version: 1}
	require.NoError(t, e.mgr.Register(p))
	run := startRunner(t, e.mgr)
	require.ErrorContains(t, e.mgr.Reset(ctx, foreign), "not a read model")
	_, err = e.mgr.Rebuild(ctx, foreign, projection.RebuildOptions{InPlace: true})
	require.ErrorContains(t, err, "not a read model")
	_, err = e.mgr.Rebuild(ctx, foreign, projection.RebuildOptions{})
	require.ErrorContains(t, err, "not a read model")
	// The runner has had time to try preparing it (several LeaderRetry
	// periods): the table is still there.
	res, err := e.store.Append(ctx, "acct-1", eventstore.Any, []eventstore.Event{added(1)})
	require.NoError(t, err)
	notReached(t, e.mgr, res.Position, 500*time.Millisecond, foreign)
	var x int
	require.NoError(t, e.store.Pool().QueryRow(ctx, "SELECT x FROM "+foreign+".precious").Scan(&x))
	require.Equal(t, 42, x)
	require.NoError(t, run.stop())
}
