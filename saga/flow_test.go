package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
)

// holdDoSteps makes every DoStep wait until release is closed, and counts
// the DoSteps running now in running.
func holdDoSteps(release <-chan struct{}, running *atomic.Int64) command.Middleware {
	return func(next command.Handler) command.Handler {
		return func(ctx context.Context, env command.Envelope) (command.Result, error) {
			if env.Type() == "DoStep" {
				running.Add(1)
				defer running.Add(-1)
				select {
				case <-release:
				case <-ctx.Done():
					return command.Result{}, ctx.Err()
				}
			}
			return next(ctx, env)
		}
	}
}

// startProjectionsOnly applies the sagas' events (filling the outbox) with
// no relay running: a process whose relay is gone.
func (e *env) startProjectionsOnly(register func(m *saga.Manager)) {
	e.t.Helper()
	pm := pgtest.Manager(e.t, e.store, projection.Config{Logger: quietLog, LeaderRetry: 50 * time.Millisecond})
	register(saga.NewManager(pm, e.disp, e.registry, saga.Config{Logger: quietLog}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pm.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done; pm.Close() })
}

func TestSagaCommandLeasedByADeadRelayIsSentWithinALease(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	e.startProjectionsOnly(func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.dispatch(Start{JobID: "c", Steps: 1})
	// A relay claims the DoStep and dies before sending it: its lease is
	// all that is left.
	pool := e.store.Pool()
	require.Eventually(t, func() bool {
		tag, err := pool.Exec(context.Background(), `UPDATE `+e.store.Schema()+`.saga_outbox
			SET claimed_until = now() + interval '1 second', attempts = 1 WHERE saga = $1 AND status = 'pending'`, name)
		return err == nil && tag.RowsAffected() == 1
	}, 30*time.Second, 10*time.Millisecond)
	claimed := time.Now()

	e.start(saga.Config{Lease: time.Second, Poll: 100 * time.Millisecond}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	d := e.awaitEnded(name, "c")
	require.Equal(t, "done", d.Outcome)
	// The lease (1 s) plus a poll, not a minute.
	require.Less(t, time.Since(claimed), 5*time.Second)
	require.Equal(t, 1, e.maxHandled())
}

func TestSagaSendLongerThanItsLeaseIsNotSentTwice(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	release := make(chan struct{})
	var running atomic.Int64
	e.disp = e.newDispatcher(holdDoSteps(release, &running))
	// Two relays, a lease of 600 ms, and a DoStep that takes 2 s: only the
	// renewal keeps the other relay from claiming it meanwhile.
	cfg := saga.Config{Lease: 600 * time.Millisecond, Poll: 50 * time.Millisecond}
	e.start(cfg, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.start(cfg, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.dispatch(Start{JobID: "l", Steps: 1})
	require.Eventually(t, func() bool { return running.Load() == 1 }, 30*time.Second, 5*time.Millisecond)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		require.LessOrEqual(t, running.Load(), int64(1), "a second relay took the command while the first was sending it")
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	d := e.awaitEnded(name, "l")
	require.Equal(t, "done", d.Outcome)
	require.Equal(t, 1, d.Commands[0].Attempts, "sent once")
}

// cancellableSaga starts a job by sending every step at once (the last one
// with Always), and compensates and ends when the job expires. It counts
// the commands withdrawn in its state.
func (e *env) cancellableSaga(name string) *saga.Definition[jobState] {
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		for n := 1; n < s.Steps; n++ {
			c.Send(DoStep{JobID: s.JobID, N: n})
		}
		c.Send(DoStep{JobID: s.JobID, N: s.Steps}, saga.Always())
		return nil
	})
	saga.On(d, func(s StepDone) string { return s.JobID }, func(c *saga.Context[jobState], s StepDone) error {
		c.State.Done++
		return nil
	})
	saga.On(d, func(s Expired) string { return s.JobID }, func(c *saga.Context[jobState], s Expired) error {
		c.AddCompensation(UndoStep{JobID: s.JobID, N: 0})
		c.Compensate()
		return nil
	})
	saga.OnWithdrawn(d, func(c *saga.Context[jobState], cmds []saga.Withdrawn) error {
		for _, w := range cmds {
			if _, ok := w.Command.(DoStep); !ok {
				return errors.New("withdrawn command not decoded")
			}
			c.State.FailAt += 1 // counts withdrawn steps
		}
		c.Complete("withdrawn")
		return nil
	})
	return d
}

func TestSagaCompensationWithdrawsCommandsNotSentYet(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("cancel")
	release := make(chan struct{})
	var running atomic.Int64
	e.disp = e.newDispatcher(holdDoSteps(release, &running))
	// One command at a time: DoStep 1 is being sent (and held), 2..4 wait.
	e.start(saga.Config{Concurrency: 1}, func(m *saga.Manager) { m.MustRegister(e.cancellableSaga(name)) })
	e.dispatch(Start{JobID: "w", Steps: 4})
	require.Eventually(t, func() bool { return running.Load() == 1 }, 30*time.Second, 5*time.Millisecond)

	e.dispatch(Expire{JobID: "w"})
	insp := saga.NewInspector(pgtest.DB(e.store))
	require.Eventually(t, func() bool {
		d, err := insp.Show(context.Background(), name, "w")
		return err == nil && d.Status == saga.StatusCompleted
	}, 30*time.Second, 10*time.Millisecond)
	close(release)
	d := e.awaitEnded(name, "w")

	statuses := map[string][]string{}
	for _, c := range d.Commands {
		statuses[c.Type] = append(statuses[c.Type], c.Status)
	}
	// DoStep 1 was on its way and goes out; 2 and 3 are withdrawn; 4 was
	// sent with Always, and the compensation goes out.
	require.Equal(t, []string{"sent", "withdrawn", "withdrawn", "sent"}, statuses["DoStep"])
	require.Equal(t, []string{"sent"}, statuses["UndoStep"])
	require.Equal(t, []string{"Started", "Expired", "done:1", "done:4", "undone:0"}, e.jobEvents("w"))
	var st jobState
	require.NoError(t, json.Unmarshal(d.State, &st))
	require.Equal(t, 2, st.FailAt, "OnWithdrawn saw both withdrawn steps")
}

func TestSagaDeadlineCountsFromTheSend(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("deadline")
	release := make(chan struct{})
	var mu sync.Mutex
	var firedAt, sendingAt time.Time
	// Job "first" holds the relay's only slot; job "second" queues behind
	// it with a deadline of 300 ms on its DoStep.
	hold := func(next command.Handler) command.Handler {
		return func(ctx context.Context, env command.Envelope) (command.Result, error) {
			if step, ok := env.Payload.(DoStep); ok {
				if step.JobID == "first" {
					<-release
				} else {
					mu.Lock()
					sendingAt = time.Now()
					mu.Unlock()
				}
			}
			return next(ctx, env)
		}
	}
	e.disp = e.newDispatcher(hold)
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		c.Send(DoStep{JobID: s.JobID, N: 1}, saga.Deadline("answer", 300*time.Millisecond))
		return nil
	})
	saga.OnTimeout(d, "answer", func(c *saga.Context[jobState]) error {
		if c.InstanceID() == "second" {
			mu.Lock()
			firedAt = c.Now()
			mu.Unlock()
		}
		c.Complete("timed out")
		return nil
	})
	e.start(saga.Config{Concurrency: 1, Poll: 50 * time.Millisecond}, func(m *saga.Manager) { m.MustRegister(d) })
	e.dispatch(Start{JobID: "first"})
	insp := saga.NewInspector(pgtest.DB(e.store))
	require.Eventually(t, func() bool {
		det, err := insp.Show(context.Background(), name, "first")
		return err == nil && len(det.Timeouts) == 1 && det.Timeouts[0].DueAt != nil
	}, 30*time.Second, 5*time.Millisecond, "first's DoStep is being sent: its clock runs")
	e.dispatch(Start{JobID: "second"})

	// second's DoStep waits a second in the queue, far past its 300 ms:
	// its clock has not started, so nothing fires.
	time.Sleep(time.Second)
	det, err := insp.Show(context.Background(), name, "second")
	require.NoError(t, err)
	require.Equal(t, saga.StatusActive, det.Status)
	require.Len(t, det.Timeouts, 1)
	require.Nil(t, det.Timeouts[0].DueAt, "the deadline runs only once the command is sent")
	require.Equal(t, 300*time.Millisecond, det.Timeouts[0].After)
	first, err := insp.Show(context.Background(), name, "first")
	require.NoError(t, err)
	require.Equal(t, "timed out", first.Outcome, "a send that hangs does run out its deadline")

	// The relay's only slot frees now: second's DoStep is taken after this
	// moment, and its deadline runs from then.
	released := time.Now()
	close(release)
	det = e.awaitEnded(name, "second")
	require.Equal(t, "timed out", det.Outcome)
	mu.Lock()
	defer mu.Unlock()
	require.False(t, sendingAt.IsZero())
	// The database's clock and this process's are the same machine's.
	require.GreaterOrEqual(t, firedAt.Sub(released), 280*time.Millisecond, "fired at %s, the relay's slot freed at %s", firedAt, released)
}

func TestSagaBacklogPastItsBoundRefusesNewWork(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	release := make(chan struct{})
	var running atomic.Int64
	e.disp = e.newDispatcher(holdDoSteps(release, &running))
	r := e.start(saga.Config{Concurrency: 1, Poll: 50 * time.Millisecond, BacklogMaxAge: 300 * time.Millisecond, BacklogRetryAfter: 2 * time.Second},
		func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	require.NoError(t, r.sagas.Admit(context.Background()))

	// One DoStep is held; the others queue behind it past the bound.
	for _, id := range []string{"a", "b", "c"} {
		e.dispatch(Start{JobID: id, Steps: 1})
	}
	var refusal *command.OverloadedError
	require.Eventually(t, func() bool { return errors.As(r.sagas.Admit(context.Background()), &refusal) }, 30*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, refusal, command.ErrOverloaded)
	require.Equal(t, 2*time.Second, refusal.RetryAfter)
	// The queue behind the held DoStep is past the bound (on a loaded
	// machine the saga's lag behind the log may be what is reported).
	require.Contains(t, refusal.Reason, "(bound 300ms)")

	// The backlog drains and work is admitted again, on its own.
	close(release)
	for _, id := range []string{"a", "b", "c"} {
		e.awaitEnded(name, id)
	}
	require.Eventually(t, func() bool { return r.sagas.Admit(context.Background()) == nil }, 30*time.Second, 20*time.Millisecond)
}

func TestSagaTimeoutWaitsForTheSagaToHandleEarlierEvents(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("horizon")
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		c.Schedule("answer", 500*time.Millisecond)
		return nil
	})
	saga.On(d, func(s StepDone) string { return s.JobID }, func(c *saga.Context[jobState], s StepDone) error {
		c.CancelTimeout("answer")
		c.Complete("answered")
		return nil
	})
	saga.OnTimeout(d, "answer", func(c *saga.Context[jobState]) error {
		c.Complete("timed out")
		return nil
	})
	r := e.start(saga.Config{Poll: 50 * time.Millisecond}, func(m *saga.Manager) { m.MustRegister(d) })
	e.dispatch(Start{JobID: "h"})
	insp := saga.NewInspector(pgtest.DB(e.store))
	require.Eventually(t, func() bool {
		det, err := insp.Show(context.Background(), name, "h")
		return err == nil && len(det.Timeouts) == 1
	}, 30*time.Second, 5*time.Millisecond)

	// The answer is recorded in time, but the saga is paused and does not
	// handle it before the timeout is due: the timeout must wait for it.
	ctx := context.Background()
	require.NoError(t, r.projections.Pause(ctx, saga.ProjectionName(name)))
	e.dispatch(DoStep{JobID: "h", N: 1})
	time.Sleep(time.Second)
	det, err := insp.Show(ctx, name, "h")
	require.NoError(t, err)
	require.Equal(t, saga.StatusActive, det.Status, "the timeout fired before the saga handled an answer recorded before it was due")
	require.NoError(t, r.projections.Resume(ctx, saga.ProjectionName(name)))
	det = e.awaitEnded(name, "h")
	require.Equal(t, "answered", det.Outcome)
}

// errorCounter counts the records logged at ERROR.
type errorCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h errorCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}

func TestSagaRejectionHandledIsNotLoggedAsAFailure(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	var errs atomic.Int64
	logger := slog.New(errorCounter{Handler: slog.NewTextHandler(io.Discard, nil), n: &errs})
	e.start(saga.Config{Logger: logger}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.rejectDo.Store(true)
	e.dispatch(Start{JobID: "quiet", Steps: 2})
	d := e.awaitEnded(name, "quiet")
	require.Equal(t, "rejected", d.Outcome)
	require.Zero(t, errs.Load(), "a rejection the saga handled is a business outcome, not an error")
}

// fanOutSaga sends a job's steps as one group (saga.Concurrent), then an
// UndoStep of step 0 on its own: the group goes out at once, and the
// command after it waits for the whole group.
func (e *env) fanOutSaga(name string) *saga.Definition[jobState] {
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		c.State.Steps = s.Steps
		for n := 1; n <= s.Steps; n++ {
			c.Send(DoStep{JobID: s.JobID, N: n}, saga.Concurrent())
		}
		c.Send(UndoStep{JobID: s.JobID, N: 0})
		return nil
	})
	saga.On(d, func(s StepUndone) string { return s.JobID }, func(c *saga.Context[jobState], s StepUndone) error {
		c.Complete("done")
		return nil
	})
	return d
}

func TestSagaConcurrentCommandsGoOutTogetherAndWhatFollowsWaitsForTheGroup(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("fanout")
	release := make(chan struct{})
	var running atomic.Int64
	e.disp = e.newDispatcher(holdDoSteps(release, &running))
	e.failFrom.Store(3) // step 3 fails, transiently, until told otherwise
	// Enough attempts that step 3 is not given up on while it fails.
	e.start(saga.Config{Retry: retry.Policy{MaxAttempts: 10_000, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}},
		func(m *saga.Manager) { m.MustRegister(e.fanOutSaga(name)) })
	e.dispatch(Start{JobID: "f", Steps: 3})

	// All three steps are in flight at once, held.
	require.Eventually(t, func() bool { return running.Load() == 3 }, 30*time.Second, time.Millisecond,
		"the group's commands are sent together")
	close(release)
	// Steps 1 and 2 are done; step 3 keeps failing and is retried, and the
	// UndoStep queued after the group waits for it.
	require.Eventually(t, func() bool { return len(e.jobEvents("f")) == 3 }, 30*time.Second, 5*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	events := e.jobEvents("f")
	require.ElementsMatch(t, []string{"Started", "done:1", "done:2"}, events, "nothing after the group while a member is unfinished")

	e.failFrom.Store(0)
	d := e.awaitEnded(name, "f")
	require.Equal(t, saga.StatusCompleted, d.Status)
	events = e.jobEvents("f")
	require.Len(t, events, 5)
	require.ElementsMatch(t, []string{"done:1", "done:2", "done:3"}, events[1:4])
	require.Equal(t, "undone:0", events[4], "the command after the group went out after all of it")
	require.Equal(t, 1, e.maxHandled())
}

// An event stored under an old name of its type (eventstore.Alias) reaches
// the saga like one stored under the current name.
func TestSagaRoutesEventsStoredUnderAnAlias(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("alias")
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	// Appended as an older version of the code did: under the old name.
	_, err := e.store.Append(context.Background(), "job-old", eventstore.NoStream, []eventstore.Event{{
		Type: "JobStarted", SchemaVersion: 1, Data: json.RawMessage(`{"job_id": "old", "steps": 1}`),
	}})
	require.NoError(t, err)
	d := e.awaitEnded(name, "old")
	require.Equal(t, "done", d.Outcome)
	require.Equal(t, []string{"JobStarted", "done:1"}, e.jobEvents("old"), "the old event, then what the saga made of it")
}
