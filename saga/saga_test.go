package saga_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
)

func TestSagaRunsStepsAndCompensatesInReverseOrder(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })

	e.dispatch(Start{JobID: "ok", Steps: 3})
	e.dispatch(Start{JobID: "bad", Steps: 5, FailAt: 4})

	ok := e.awaitEnded(name, "ok")
	require.Equal(t, saga.StatusCompleted, ok.Status)
	require.Equal(t, "done", ok.Outcome)
	require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents("ok"))

	bad := e.awaitEnded(name, "bad")
	require.Equal(t, "compensated", bad.Outcome)
	require.Equal(t, []string{"Started", "done:1", "done:2", "done:3", "failed:4", "undone:3", "undone:2", "undone:1"},
		e.jobEvents("bad"), "compensations run last registered first")
	require.Len(t, bad.Commands, 7) // 4 steps, 3 undos
	for _, c := range bad.Commands {
		require.Equal(t, "sent", c.Status, c)
	}
	require.Equal(t, 1, e.maxHandled(), "every command handled once")
}

func TestSagaCommandSentAgainAfterALostAnswerIsHandledOnce(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	// The relay learns nothing from the first send of each command: the
	// command is handled, but the relay sees an error, as when the
	// connection drops before the answer. It sends again, under the same
	// ID, and the command log answers with the recorded result.
	lose := loseFirstAnswers("DoStep")
	e.disp = e.newDispatcher(lose)
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })

	e.dispatch(Start{JobID: "j", Steps: 3})
	d := e.awaitEnded(name, "j")
	require.Equal(t, "done", d.Outcome)
	require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents("j"))
	require.Equal(t, 1, e.maxHandled(), "a second send of a command ID must not run its handler again")
	for _, c := range d.Commands {
		if c.Type == "DoStep" {
			require.Equal(t, 2, c.Attempts, "each DoStep was sent twice")
		}
	}
}

func TestSagaRejectionGoesToOnRejected(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.rejectDo.Store(true)
	e.dispatch(Start{JobID: "r", Steps: 2})
	d := e.awaitEnded(name, "r")
	require.Equal(t, "rejected", d.Outcome)
	require.Contains(t, string(d.State), "DoStep: ")
	require.Contains(t, string(d.State), "steps are closed")
	require.Equal(t, "rejected", d.Commands[0].Status)
}

func TestSagaCommandThatKeepsFailingIsDeadAndFailsItsInstance(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	r := e.start(saga.Config{Retry: retry.Policy{MaxAttempts: 3}}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.failDo.Store(true)
	e.dispatch(Start{JobID: "d", Steps: 2})

	insp := saga.NewInspector(pgtest.DB(e.store))
	require.Eventually(t, func() bool {
		d, err := insp.Show(context.Background(), name, "d")
		return err == nil && d.Status == saga.StatusFailed
	}, 30*time.Second, 20*time.Millisecond)
	d, err := insp.Show(context.Background(), "", "d")
	require.NoError(t, err)
	require.Equal(t, 1, d.DeadCommands)
	require.Equal(t, "dead", d.Commands[0].Status)
	require.Equal(t, 3, d.Commands[0].Attempts)
	require.Contains(t, d.Commands[0].Error, "the step service is down")
	require.Contains(t, d.Outcome, "DoStep")

	stats, err := insp.Stats(context.Background(), name)
	require.NoError(t, err)
	require.Equal(t, int64(1), stats[0].Instances[saga.StatusFailed])
	require.Equal(t, int64(1), stats[0].Commands["dead"])

	listed, err := insp.List(context.Background(), saga.ListOptions{Saga: name, Status: saga.StatusFailed})
	require.NoError(t, err)
	require.Len(t, listed, 1)

	// The metrics tell the same: the failed instance, the dead command,
	// the sends that failed.
	reg := prometheus.NewRegistry()
	require.NoError(t, r.sagas.RegisterMetrics(reg))
	families, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			values[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	require.Equal(t, 1.0, values[saga.MetricInstances+",saga="+name+",status=failed"], values)
	require.Equal(t, 1.0, values[saga.MetricOutbox+",saga="+name+",status=dead"], values)
	require.Equal(t, 1.0, values[saga.MetricCommands+",outcome=dead,saga="+name], values)
	require.Equal(t, 2.0, values[saga.MetricCommands+",outcome=retried,saga="+name], values)
}

func TestSagaDeadStepRunsTheCompensationsOfTheStepsDone(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	e.start(saga.Config{Retry: retry.Policy{MaxAttempts: 2}}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.failFrom.Store(3)
	e.dispatch(Start{JobID: "c", Steps: 4})
	d := e.awaitEnded(name, "c")
	require.Equal(t, saga.StatusFailed, d.Status)
	require.Contains(t, d.Outcome, "DoStep")
	require.Equal(t, 1, d.DeadCommands)
	require.Equal(t, []string{"Started", "done:1", "done:2", "undone:2", "undone:1"}, e.jobEvents("c"),
		"the dead step's instance undoes the steps done, last first")
}

func TestSagaHandlerPanicIsAFailureNotACrash(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("panicky")
	def := func() *saga.Definition[jobState] {
		d := saga.New[jobState](name, e.registry)
		saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
			c.Schedule("boom", time.Millisecond)
			c.Schedule("later", 300*time.Millisecond)
			return nil
		})
		saga.OnTimeout(d, "boom", func(c *saga.Context[jobState]) error { panic("boom") })
		saga.OnTimeout(d, "later", func(c *saga.Context[jobState]) error {
			c.Complete("later fired")
			return nil
		})
		return d
	}
	e.start(saga.Config{Poll: 50 * time.Millisecond}, func(m *saga.Manager) { m.MustRegister(def()) })
	e.dispatch(Start{JobID: "p"})
	// The panicking timeout keeps failing and is pushed back; the process
	// lives on, and the other timeout fires on time.
	d := e.awaitEnded(name, "p")
	require.Equal(t, "later fired", d.Outcome)
}

func TestSagaTimeoutSurvivesARestartAndFiresExactlyOnce(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("expiry")
	def := func() *saga.Definition[jobState] {
		d := saga.New[jobState](name, e.registry)
		saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
			c.Schedule("expire", 700*time.Millisecond)
			return nil
		})
		saga.OnTimeout(d, "expire", func(c *saga.Context[jobState]) error {
			c.Send(Expire{JobID: c.InstanceID()})
			c.Complete("expired")
			return nil
		})
		return d
	}
	first := e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(def()) })
	e.dispatch(Start{JobID: "t"})
	insp := saga.NewInspector(pgtest.DB(e.store))
	require.Eventually(t, func() bool {
		d, err := insp.Show(context.Background(), name, "t")
		return err == nil && len(d.Timeouts) == 1
	}, 30*time.Second, 10*time.Millisecond)
	first.stop() // the process goes away before the timeout is due

	// Two processes come up once the timeout is due (by the database's
	// clock, which the timer reads); both see it due.
	pending, err := insp.Show(context.Background(), name, "t")
	require.NoError(t, err)
	require.NotNil(t, pending.Timeouts[0].DueAt)
	require.Eventually(t, func() bool {
		var due bool
		err := e.store.Pool().QueryRow(context.Background(), "SELECT $1::timestamptz <= now()", *pending.Timeouts[0].DueAt).Scan(&due)
		return err == nil && due
	}, 30*time.Second, 20*time.Millisecond)
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(def()) })
	e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(def()) })

	d := e.awaitEnded(name, "t")
	require.Equal(t, "expired", d.Outcome)
	require.Empty(t, d.Timeouts)
	require.Len(t, d.Commands, 1)
	// A second firing would append a second Expired: give it room to show.
	require.Never(t, func() bool {
		recs, err := e.store.ReadStream(context.Background(), "job-t", eventstore.ReadStreamOptions{})
		return err != nil || len(recs) > 2
	}, 300*time.Millisecond, 20*time.Millisecond)
	require.Equal(t, []string{"Started", "Expired"}, e.jobEvents("t"))
	require.Equal(t, 1, e.maxHandled())
}

func TestSagaManyInstancesTwoRelays(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	e.start(saga.Config{Concurrency: 4}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	e.start(saga.Config{Concurrency: 4}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })

	const jobs = 40
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failAt := 0
			if i%4 == 0 {
				failAt = 3
			}
			_, err := e.disp.Dispatch(context.Background(), Start{JobID: fmt.Sprint(i), Steps: 3, FailAt: failAt})
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	for i := range jobs {
		d := e.awaitEnded(name, fmt.Sprint(i))
		if i%4 == 0 {
			require.Equal(t, "compensated", d.Outcome)
			require.Equal(t, []string{"Started", "done:1", "done:2", "failed:3", "undone:2", "undone:1"}, e.jobEvents(fmt.Sprint(i)))
		} else {
			require.Equal(t, "done", d.Outcome)
			require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents(fmt.Sprint(i)))
		}
	}
	require.Equal(t, 1, e.maxHandled())
}

func TestSagasAndReactorsCannotBeReplayed(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("steps")
	r := e.start(saga.Config{}, func(m *saga.Manager) { m.MustRegister(e.stepsSaga(name)) })
	_, err := r.projections.Rebuild(context.Background(), saga.ProjectionName(name), projection.RebuildOptions{})
	require.ErrorIs(t, err, projection.ErrSideEffects)
	require.ErrorIs(t, r.projections.Reset(context.Background(), saga.ProjectionName(name)), projection.ErrSideEffects)
}

// A timeout's step is a span of its own, the root of a trace that the
// commands it queues continue.
func TestSagaTimeoutStepIsTraced(t *testing.T) {
	e := newEnv(t)
	name := uniqueName("traced")
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		c.Schedule("expire", 50*time.Millisecond)
		return nil
	})
	saga.OnTimeout(d, "expire", func(c *saga.Context[jobState]) error {
		c.Send(Expire{JobID: c.InstanceID()})
		c.Complete("expired")
		return nil
	})
	e.start(saga.Config{TracerProvider: tp}, func(m *saga.Manager) { m.MustRegister(d) })
	e.dispatch(Start{JobID: "tt"})
	require.Equal(t, "expired", e.awaitEnded(name, "tt").Outcome)

	var timeout, send sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range recorder.Ended() {
			switch s.Name() {
			case "saga " + name + " timeout expire":
				timeout = s
			case "saga " + name + " send Expire":
				send = s
			}
		}
		return timeout != nil && send != nil
	}, 10*time.Second, 10*time.Millisecond)
	require.False(t, timeout.Parent().IsValid(), "a timeout starts a trace")
	require.Contains(t, timeout.Attributes(), saga.AttrOutcome.String("fired"))
	require.Contains(t, timeout.Attributes(), saga.AttrTimeout.String("expire"))
	require.Equal(t, timeout.SpanContext().TraceID(), send.SpanContext().TraceID(), "the command it queued continues its trace")
	require.Equal(t, timeout.SpanContext().SpanID(), send.Parent().SpanID())
}
