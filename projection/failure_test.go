package projection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

// fastRetry keeps failure tests quick: three attempts, a millisecond apart.
var fastRetry = retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}

// poison makes a totals projector fail on every event of stream "bad"
// while broken is set, counting the attempts.
type poison struct {
	broken atomic.Bool
	calls  atomic.Int64
	panics bool
}

func newPoison(panics bool) *poison {
	p := &poison{panics: panics}
	p.broken.Store(true)
	return p
}

func (p *poison) hook(e eventstore.RecordedEvent) error {
	if e.StreamID != "bad" || !p.broken.Load() {
		return nil
	}
	p.calls.Add(1)
	if p.panics {
		panic(fmt.Sprintf("kaboom at %s@%d", e.StreamID, e.Version))
	}
	return errors.New("boom: cannot apply this one")
}

// poisonedLog appends 7 events to acct-a, the poison event to "bad" and 6
// events to acct-b, returning the ledger, the last good position before the
// poison, and the poison's append result.
func poisonedLog(t *testing.T, e env) (*ledger, eventstore.Position, eventstore.AppendResult) {
	t.Helper()
	ctx := context.Background()
	l := newLedger()
	var before eventstore.Position
	for i := range 7 {
		before = l.add(ctx, t, e.store, "acct-a", i+1).Position
	}
	bad := l.add(ctx, t, e.store, "bad", 100)
	for i := range 6 {
		l.add(ctx, t, e.store, "acct-b", 10*(i+1))
	}
	return l, before, bad
}

func without(rows map[string][2]int64, stream string) map[string][2]int64 {
	out := map[string][2]int64{}
	for k, v := range rows {
		if k != stream {
			out[k] = v
		}
	}
	return out
}

func TestPolicyStopHaltsBeforeThePoisonAndResumeAppliesIt(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 5, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
	hook := newPoison(false)
	p := &totals{name: uniqueName(t, "stop"), version: 1, fail: hook.hook}
	require.NoError(t, e.mgr.Register(p)) // PolicyStop is the default
	l, before, bad := poisonedLog(t, e)
	want, last, _ := l.snapshot()

	run := startRunner(t, e.mgr)
	st := waitState(t, e.mgr, p.Name(), projection.Failed, progressWait)

	require.Equal(t, "stop", st.Policy)
	require.Equal(t, before, st.Checkpoint, "the checkpoint stays just before the poison event")
	require.NotNil(t, st.FailedPosition)
	require.Equal(t, bad.Position, *st.FailedPosition)
	require.NotNil(t, st.FailedEventID)
	badEvents, err := e.store.ReadStream(context.Background(), "bad", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Equal(t, badEvents[0].ID, *st.FailedEventID)
	require.Contains(t, st.Error, "boom: cannot apply this one")
	require.Contains(t, st.Error, "bad@1")
	require.Contains(t, st.Error, fmt.Sprintf("after %d attempt(s)", fastRetry.MaxAttempts))
	require.Equal(t, int64(7), waitLag(t, e.mgr, p.Name(), 7).Lag, "the poison and the six events after it are pending")
	require.Equal(t, int64(7), st.EventsApplied)
	require.Equal(t, without(without(want, "bad"), "acct-b"), modelRows(t, e.store, p.Name()))

	// Later events are not applied while it stays failed.
	notReached(t, e.mgr, last, 400*time.Millisecond, p.Name())
	require.Equal(t, before, status(t, e.mgr, p.Name()).Checkpoint)

	// Fixed and resumed: it applies the poison event, then the rest.
	hook.broken.Store(false)
	require.NoError(t, e.mgr.Resume(context.Background(), p.Name()))
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	st = status(t, e.mgr, p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Empty(t, st.Error)
	require.Nil(t, st.FailedPosition)
	require.Nil(t, st.FailedEventID)
	require.Equal(t, int64(14), st.EventsApplied)
	require.NoError(t, run.stop())
}

// A failing event is attempted exactly Retry.MaxAttempts times before its
// policy applies: the batch it came in is not retried on top.
func TestFailingEventIsAttemptedMaxAttemptsTimes(t *testing.T) {
	for _, batch := range []int{1, 50} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			e := newEnv(t, projection.Config{BatchSize: batch, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
			hook := newPoison(false)
			p := &totals{name: uniqueName(t, "attempts"), version: 1, fail: hook.hook}
			require.NoError(t, e.mgr.Register(p, projection.WithPolicy(projection.PolicyDeadLetter)))
			l, _, _ := poisonedLog(t, e)
			want, last, _ := l.snapshot()
			startRunner(t, e.mgr)
			waitFor(t, e.mgr, last, progressWait, p.Name())
			require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()))
			dl, err := e.mgr.DeadLetters(context.Background(), p.Name())
			require.NoError(t, err)
			require.Len(t, dl, 1)
			require.Equal(t, fastRetry.MaxAttempts, dl[0].Attempts)
			// Alone in its batch the event is tried MaxAttempts times; in a
			// batch with others, the one failed batch attempt adds one.
			maxCalls := int64(fastRetry.MaxAttempts)
			if batch > 1 {
				maxCalls++
			}
			require.Equal(t, maxCalls, hook.calls.Load(), "attempts at the poison event")
		})
	}
}

func TestPolicyDeadLetterRecordsMovesOnAndRetryReapplies(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 4, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Policy: projection.PolicyDeadLetter})
	hook := newPoison(false)
	p := &totals{name: uniqueName(t, "dead"), version: 1, fail: hook.hook}
	require.NoError(t, e.mgr.Register(p))
	startedAt := time.Now()
	l, _, bad := poisonedLog(t, e)
	want, last, _ := l.snapshot()

	startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()), "later events are applied, the poison is not")

	st := status(t, e.mgr, p.Name())
	require.Equal(t, projection.Running, st.State)
	require.Equal(t, "dead-letter", st.Policy)
	require.Equal(t, int64(1), st.DeadLetters)
	require.Equal(t, int64(0), st.Lag)
	require.Empty(t, st.Error)

	ctx := context.Background()
	dl, err := e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Len(t, dl, 1)
	d := dl[0]
	badEvents, err := e.store.ReadStream(ctx, "bad", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Equal(t, p.Name(), d.Projection)
	require.Equal(t, badEvents[0].ID, d.EventID)
	require.Equal(t, "bad", d.StreamID)
	require.Equal(t, int64(1), d.StreamVersion)
	require.Equal(t, bad.Position, d.Position)
	require.Equal(t, "Added", d.EventType)
	require.Contains(t, d.Error, "boom: cannot apply this one")
	require.Equal(t, fastRetry.MaxAttempts, d.Attempts)
	require.False(t, d.FirstFailedAt.IsZero())
	require.False(t, d.LastFailedAt.Before(d.FirstFailedAt))
	require.WithinDuration(t, startedAt, d.FirstFailedAt, time.Minute)

	// Retrying while still broken fails, is recorded, and leaves it there.
	n, err := e.mgr.Retry(ctx, p.Name())
	require.Error(t, err)
	require.Equal(t, 0, n)
	var ae *projection.ApplyError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, badEvents[0].ID, ae.Event.ID)
	dl, err = e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Len(t, dl, 1)
	require.Equal(t, fastRetry.MaxAttempts+1, dl[0].Attempts)
	require.False(t, dl[0].LastFailedAt.Before(d.LastFailedAt))
	require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()))

	// Fixed: Retry applies it once; the model is complete and exact.
	hook.broken.Store(false)
	n, err = e.mgr.Retry(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	dl, err = e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Empty(t, dl)
	require.Equal(t, int64(0), status(t, e.mgr, p.Name()).DeadLetters)
	n, err = e.mgr.Retry(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, 0, n)
	_, err = e.mgr.Retry(ctx, p.Name(), d.ID)
	require.ErrorIs(t, err, projection.ErrNotDeadLettered)
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	verifyIdentical(t, e.mgr, p.Name())
}

// Two retries of the same dead letter at once apply it once.
func TestConcurrentRetriesApplyADeadLetterOnce(t *testing.T) {
	e := newEnv(t, projection.Config{Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Policy: projection.PolicyDeadLetter})
	hook := newPoison(false)
	var blocker atomic.Pointer[gate] // when set, applying "bad" blocks on it
	entered := make(chan struct{}, 4)
	p := &totals{name: uniqueName(t, "retry2"), version: 1, fail: func(ev eventstore.RecordedEvent) error {
		if err := hook.hook(ev); err != nil {
			return err
		}
		if g := blocker.Load(); g != nil && ev.StreamID == "bad" {
			entered <- struct{}{}
			g.wait()
		}
		return nil
	}}
	require.NoError(t, e.mgr.Register(p))
	l, _, _ := poisonedLog(t, e)
	want, last, _ := l.snapshot()
	run := startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, p.Name())
	require.NoError(t, run.stop())

	hook.broken.Store(false)
	release := newGate()
	defer release.open()
	blocker.Store(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		n   int
		err error
	}
	first := make(chan result, 1)
	go func() { n, err := e.mgr.Retry(ctx, p.Name()); first <- result{n, err} }()
	<-entered // the first retry is applying the event, holding the write lock
	second := make(chan result, 1)
	go func() { n, err := e.mgr.Retry(ctx, p.Name()); second <- result{n, err} }()
	// The second retry has listed the dead letter and now waits for the
	// write lock.
	key := projection.LockKey("write", e.store.Schema(), p.Name())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, lockSessions(c, e.store.Pool(), key, false), 1, "second retry not waiting for the write lock")
	}, 10*time.Second, pollEvery)
	release.open()
	r1, r2 := <-first, <-second
	require.NoError(t, r1.err)
	require.NoError(t, r2.err)
	require.Equal(t, 1, r1.n+r2.n, "exactly one retry applied it")
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
	dl, err := e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Empty(t, dl)
}

func TestPanickingProjectorIsAFailure(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 3, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
	stopHook, deadHook := newPoison(true), newPoison(true)
	stopP := &totals{name: uniqueName(t, "panic_stop"), version: 1, fail: stopHook.hook}
	deadP := &totals{name: uniqueName(t, "panic_dead"), version: 1, fail: deadHook.hook}
	require.NoError(t, e.mgr.Register(stopP))
	require.NoError(t, e.mgr.Register(deadP, projection.WithPolicy(projection.PolicyDeadLetter)))
	l, before, _ := poisonedLog(t, e)
	want, last, _ := l.snapshot()

	run := startRunner(t, e.mgr)
	// Dead-letter: the runner records the panic and carries on.
	waitFor(t, e.mgr, last, progressWait, deadP.Name())
	require.Equal(t, without(want, "bad"), modelRows(t, e.store, deadP.Name()))
	dl, err := e.mgr.DeadLetters(context.Background(), deadP.Name())
	require.NoError(t, err)
	require.Len(t, dl, 1)
	require.Contains(t, dl[0].Error, "projector panicked")
	require.Contains(t, dl[0].Error, "kaboom at bad@1")

	// Stop: the projection fails with the panic as its error, and the
	// runner (this process) is still alive.
	st := waitState(t, e.mgr, stopP.Name(), projection.Failed, progressWait)
	require.Contains(t, st.Error, "projector panicked")
	require.Contains(t, st.Error, "kaboom at bad@1")
	require.Equal(t, before, st.Checkpoint)
	select {
	case err := <-run.done:
		t.Fatalf("Run returned after a panic: %v", err)
	default:
	}
	stopHook.broken.Store(false)
	require.NoError(t, e.mgr.Resume(context.Background(), stopP.Name()))
	waitFor(t, e.mgr, last, progressWait, stopP.Name())
	require.Equal(t, want, modelRows(t, e.store, stopP.Name()))
	require.NoError(t, run.stop())
}

// typedTotals is a totals model built from projection.Handlers; it lists
// "Renamed" among its types but has no handler for it.
type typedTotals struct {
	*projection.Handlers
	name string
}

type addedEvent struct {
	Amount int64 `json:"amount"`
}
type renamedEvent struct {
	Name string `json:"name"`
}

func (p *typedTotals) Name() string         { return p.name }
func (p *typedTotals) Version() int         { return 1 }
func (p *typedTotals) EventTypes() []string { return []string{"Added", "Renamed"} }
func (p *typedTotals) Setup(ctx context.Context, tx pgx.Tx) error {
	return (&totals{}).Setup(ctx, tx)
}

func TestHandlersUnknownTypeAndUndecodableDataAreFailures(t *testing.T) {
	reg := eventstore.NewRegistry()
	require.NoError(t, eventstore.Register[addedEvent](reg, "Added"))
	require.NoError(t, eventstore.Register[renamedEvent](reg, "Renamed"))
	h := projection.NewHandlers(reg)
	projection.On(h, func(ctx context.Context, tx pgx.Tx, ev addedEvent, rec eventstore.RecordedEvent) error {
		_, err := tx.Exec(ctx, `INSERT INTO totals (stream_id, total, events) VALUES ($1, $2, 1)
			ON CONFLICT (stream_id) DO UPDATE SET total = totals.total + excluded.total, events = totals.events + 1`, rec.StreamID, ev.Amount)
		return err
	})
	require.Equal(t, []string{"Added"}, h.EventTypes())

	e := newEnv(t, projection.Config{BatchSize: 10, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
	p := &typedTotals{Handlers: h, name: uniqueName(t, "typed")}
	require.NoError(t, e.mgr.Register(p, projection.WithPolicy(projection.PolicyDeadLetter)))

	ctx := context.Background()
	appendOne := func(stream string, ev eventstore.Event) eventstore.AppendResult {
		res, err := e.store.Append(ctx, stream, eventstore.Any, []eventstore.Event{ev})
		require.NoError(t, err)
		return res
	}
	appendOne("s1", added(1))
	renamed := appendOne("s2", eventstore.Event{Type: "Renamed", Data: []byte(`{"name":"x"}`)})
	garbled := appendOne("s3", eventstore.Event{Type: "Added", Data: []byte(`{"amount":"not a number"}`)})
	last := appendOne("s1", added(2))

	startRunner(t, e.mgr)
	waitFor(t, e.mgr, last.Position, progressWait, p.Name())
	require.Equal(t, map[string][2]int64{"s1": {3, 2}}, modelRows(t, e.store, p.Name()))

	dl, err := e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Len(t, dl, 2)
	require.Equal(t, renamed.Position, dl[0].Position)
	require.Equal(t, "Renamed", dl[0].EventType)
	require.Contains(t, dl[0].Error, "no handler for event type: Renamed")
	require.Equal(t, garbled.Position, dl[1].Position)
	require.Contains(t, dl[1].Error, "undecodable event")
	require.Contains(t, dl[1].Error, "s3")

	// A retry meets the same typed errors.
	_, err = e.mgr.Retry(ctx, p.Name(), dl[0].ID)
	require.ErrorIs(t, err, projection.ErrUnhandledEvent)
	_, err = e.mgr.Retry(ctx, p.Name(), dl[1].ID)
	require.ErrorIs(t, err, eventstore.ErrUndecodableEvent)
	require.True(t, strings.Contains(err.Error(), "s3"), err.Error())
}

// A process without the projection's code (the command line, another
// service) asks for a retry; the process leading the projection does it,
// and clears the request whether the retry succeeded or not.
func TestRetryRequestedElsewhereIsDoneByTheLeader(t *testing.T) {
	e := newEnv(t, projection.Config{Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Policy: projection.PolicyDeadLetter})
	hook := newPoison(false)
	p := &totals{name: uniqueName(t, "asked"), version: 1, fail: hook.hook}
	require.NoError(t, e.mgr.Register(p))
	l, _, _ := poisonedLog(t, e)
	want, last, _ := l.snapshot()
	startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, p.Name())

	ctx := context.Background()
	dl, err := e.mgr.DeadLetters(ctx, p.Name())
	require.NoError(t, err)
	require.Len(t, dl, 1)
	d := dl[0]

	// The other process: a manager with nothing registered.
	other := pgtest.Manager(t, e.store, projection.Config{Logger: quietLog})
	t.Cleanup(other.Close)
	_, err = other.Retry(ctx, p.Name(), d.ID)
	require.ErrorIs(t, err, projection.ErrUnknownProjection, "it cannot retry by itself")
	_, err = other.RequestRetry(ctx, p.Name(), d.ID, d.ID+1000)
	require.ErrorIs(t, err, projection.ErrNotDeadLettered)
	pending, err := other.PendingRetries(ctx, p.Name(), []int64{d.ID})
	require.NoError(t, err)
	require.Zero(t, pending, "a refused request marks nothing")

	taken := func(ids []int64) func() bool {
		return func() bool {
			n, err := other.PendingRetries(ctx, p.Name(), ids)
			return err == nil && n == 0
		}
	}
	// Still broken: the leader takes the request, the retry fails and is
	// recorded, the dead letter stays.
	marked, err := other.RequestRetry(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, []int64{d.ID}, marked)
	require.Eventually(t, taken(marked), 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		dl, err := other.DeadLetters(ctx, p.Name())
		return err == nil && len(dl) == 1 && dl[0].Attempts == d.Attempts+1
	}, 10*time.Second, 20*time.Millisecond, "the failed retry is recorded, the dead letter stays")
	require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()))

	// Fixed: asked again, the leader applies it once.
	hook.broken.Store(false)
	marked, err = other.RequestRetry(ctx, p.Name(), d.ID)
	require.NoError(t, err)
	require.Eventually(t, taken(marked), 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		dl, err := other.DeadLetters(ctx, p.Name())
		return err == nil && len(dl) == 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, want, modelRows(t, e.store, p.Name()))
}
