package saga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// The test domain: a job of Steps steps. Start begins it; DoStep N
// records StepDone N, or StepFailed N when N is the job's FailAt; UndoStep N
// records StepUndone N.
type (
	Start struct {
		JobID  string `json:"job_id"`
		Steps  int    `json:"steps"`
		FailAt int    `json:"fail_at"`
	}
	DoStep struct {
		JobID  string `json:"job_id"`
		N      int    `json:"n"`
		FailAt int    `json:"fail_at"`
	}
	UndoStep struct {
		JobID string `json:"job_id"`
		N     int    `json:"n"`
	}
	Expire struct {
		JobID string `json:"job_id"`
	}

	Started struct {
		JobID  string `json:"job_id"`
		Steps  int    `json:"steps"`
		FailAt int    `json:"fail_at"`
	}
	StepDone struct {
		JobID string `json:"job_id"`
		N     int    `json:"n"`
	}
	StepFailed struct {
		JobID string `json:"job_id"`
		N     int    `json:"n"`
	}
	StepUndone struct {
		JobID string `json:"job_id"`
		N     int    `json:"n"`
	}
	Expired struct {
		JobID string `json:"job_id"`
	}
)

// jobState is the saga's state.
type jobState struct {
	Steps, FailAt, Done int
	Rejected            string
}

type env struct {
	t        *testing.T
	store    *postgres.Store
	registry *eventstore.Registry
	disp     *command.Dispatcher
	// handled counts handler runs by command ID: a command run twice
	// would show 2.
	mu      sync.Mutex
	handled map[string]int
	// hooks
	rejectDo atomic.Bool  // DoStep is refused by a domain rule
	failDo   atomic.Bool  // DoStep fails with a transient error
	failFrom atomic.Int64 // DoStep N >= failFrom (when set) fails with a transient error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.Pool(t, 30)
	store, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool), Logger: quietLog})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	pgtest.DropStoreModels(t, pool, store.Schema())
	e := &env{t: t, store: store, registry: eventstore.NewRegistry(), handled: map[string]int{}}
	// Started was once stored as JobStarted (see TestSagaRoutesEventsStoredUnderAnAlias).
	eventstore.MustRegister[Started](e.registry, "Started", eventstore.Alias("JobStarted"))
	eventstore.MustRegister[StepDone](e.registry, "StepDone")
	eventstore.MustRegister[StepFailed](e.registry, "StepFailed")
	eventstore.MustRegister[StepUndone](e.registry, "StepUndone")
	eventstore.MustRegister[Expired](e.registry, "Expired")
	e.disp = e.newDispatcher()
	return e
}

// newDispatcher returns a dispatcher with the test domain's handlers and
// mws added to its default chain.
func (e *env) newDispatcher(mws ...command.Middleware) *command.Dispatcher {
	d := command.NewDispatcher(e.store, command.Config{Logger: quietLog, Middleware: mws,
		Retry: retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}})
	command.MustRegister(d, func(ctx context.Context, c Start) (eventstore.AppendResult, error) {
		return e.append(ctx, c.JobID, Started(c))
	})
	command.MustRegister(d, func(ctx context.Context, c DoStep) (eventstore.AppendResult, error) {
		if e.rejectDo.Load() {
			return eventstore.AppendResult{}, command.Reject(errors.New("steps are closed"))
		}
		if e.failDo.Load() || (e.failFrom.Load() > 0 && int64(c.N) >= e.failFrom.Load()) {
			return eventstore.AppendResult{}, errors.New("the step service is down")
		}
		if c.N == c.FailAt {
			return e.append(ctx, c.JobID, StepFailed{JobID: c.JobID, N: c.N})
		}
		return e.append(ctx, c.JobID, StepDone{JobID: c.JobID, N: c.N})
	})
	command.MustRegister(d, func(ctx context.Context, c UndoStep) (eventstore.AppendResult, error) {
		return e.append(ctx, c.JobID, StepUndone(c))
	})
	command.MustRegister(d, func(ctx context.Context, c Expire) (eventstore.AppendResult, error) {
		return e.append(ctx, c.JobID, Expired(c))
	})
	return d
}

// append records events on the job's stream as the command in ctx, which
// makes the store record the command with them (exactly-once handling).
func (e *env) append(ctx context.Context, jobID string, events ...any) (eventstore.AppendResult, error) {
	c, _ := eventstore.CausationFrom(ctx)
	e.mu.Lock()
	e.handled[c.CommandID]++
	e.mu.Unlock()
	evs, err := encodeAll(e.registry, events...)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return e.store.Append(ctx, "job-"+jobID, eventstore.Any, evs, c.Stamp(evs)...)
}

// encodeAll encodes events through registry.
func encodeAll(registry *eventstore.Registry, events ...any) ([]eventstore.Event, error) {
	evs := make([]eventstore.Event, len(events))
	for i, v := range events {
		ev, err := registry.Encode(v)
		if err != nil {
			return nil, err
		}
		evs[i] = ev
	}
	return evs, nil
}

// maxHandled is the most runs of any one command's handler.
func (e *env) maxHandled() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.handled {
		n = max(n, c)
	}
	return n
}

// stepsSaga builds the saga under test: it runs the job's steps one after
// another, registering each done step's undo as its compensation; a failed
// step compensates the done ones, last first.
func (e *env) stepsSaga(name string) *saga.Definition[jobState] {
	d := saga.New[jobState](name, e.registry)
	saga.StartOn(d, func(s Started) string { return s.JobID }, func(c *saga.Context[jobState], s Started) error {
		c.State.Steps, c.State.FailAt = s.Steps, s.FailAt
		c.Send(DoStep{JobID: s.JobID, N: 1, FailAt: s.FailAt})
		return nil
	})
	saga.On(d, func(s StepDone) string { return s.JobID }, func(c *saga.Context[jobState], s StepDone) error {
		c.State.Done = s.N
		c.AddCompensation(UndoStep(s))
		if s.N < c.State.Steps {
			c.Send(DoStep{JobID: s.JobID, N: s.N + 1, FailAt: c.State.FailAt})
			return nil
		}
		c.Complete("done")
		return nil
	})
	saga.On(d, func(s StepFailed) string { return s.JobID }, func(c *saga.Context[jobState], s StepFailed) error {
		c.Compensate()
		c.Complete("compensated")
		return nil
	})
	saga.OnRejected(d, func(c *saga.Context[jobState], r saga.Rejection) error {
		c.State.Rejected = r.Type + ": " + r.Reason
		c.Compensate()
		c.Complete("rejected")
		return nil
	})
	return d
}

// runner runs a projection manager and a saga manager over the env's store
// until stopped.
type runner struct {
	projections *projection.Manager
	sagas       *saga.Manager
	stop        func()
}

func (e *env) start(cfg saga.Config, register func(m *saga.Manager)) *runner {
	e.t.Helper()
	pm := pgtest.Manager(e.t, e.store, projection.Config{Logger: quietLog, LeaderRetry: 50 * time.Millisecond,
		Retry: retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	if cfg.Retry.BaseDelay == 0 {
		cfg.Retry.BaseDelay, cfg.Retry.MaxDelay = time.Millisecond, 20*time.Millisecond
	}
	sm := saga.NewManager(pm, e.disp, e.registry, cfg)
	register(sm)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = pm.Run(ctx) }()
	go func() { defer wg.Done(); _ = sm.Run(ctx) }()
	var once sync.Once
	r := &runner{projections: pm, sagas: sm, stop: func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			pm.Close()
		})
	}}
	e.t.Cleanup(r.stop)
	return r
}

func (e *env) dispatch(cmd any) command.Result {
	e.t.Helper()
	res, err := e.disp.Dispatch(context.Background(), cmd)
	require.NoError(e.t, err)
	return res
}

// awaitInstance waits until the instance has ended, and returns it.
func (e *env) awaitEnded(sagaName, id string) saga.Detail {
	e.t.Helper()
	return awaitEnded(e.t, pgtest.DB(e.store), sagaName, id, 30*time.Second)
}

// awaitEnded waits up to within until the instance, whose saga keeps its
// tables in db, has ended with no command pending, and returns it.
func awaitEnded(t *testing.T, db pgdb.DB, sagaName, id string, within time.Duration) saga.Detail {
	t.Helper()
	insp := saga.NewInspector(db)
	var d saga.Detail
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		d, err = insp.Show(context.Background(), sagaName, id)
		require.NoError(c, err)
		assert.NotEqual(c, saga.StatusActive, d.Status, "instance %s/%s still active", sagaName, id)
		assert.Zero(c, d.PendingCommands, "instance %s/%s has commands pending", sagaName, id)
	}, within, 20*time.Millisecond)
	return d
}

// jobEvents reads a job's stream as type:N strings.
func (e *env) jobEvents(jobID string) []string {
	e.t.Helper()
	return readJob(e.t, e.store, e.registry, jobID)
}

// readJob reads a job's stream in store as type:N strings.
func readJob(t *testing.T, store eventstore.StreamReader, registry *eventstore.Registry, jobID string) []string {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), "job-"+jobID, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	var out []string
	for _, r := range recs {
		v, err := registry.Decode(r)
		require.NoError(t, err)
		switch ev := v.(type) {
		case StepDone:
			out = append(out, fmt.Sprintf("done:%d", ev.N))
		case StepFailed:
			out = append(out, fmt.Sprintf("failed:%d", ev.N))
		case StepUndone:
			out = append(out, fmt.Sprintf("undone:%d", ev.N))
		default:
			out = append(out, r.Type)
		}
	}
	return out
}

func uniqueName(base string) string { return fmt.Sprintf("%s_%x", base, pgtest.Suffix()%0xffffffff) }

// loseFirstAnswers is middleware under which the relay learns nothing from
// the first send of each command of type typ: the command is handled, but
// the relay sees an error, as when the connection drops before the answer.
func loseFirstAnswers(typ string) command.Middleware {
	var mu sync.Mutex
	lost := map[string]bool{}
	return func(next command.Handler) command.Handler {
		return func(ctx context.Context, env command.Envelope) (command.Result, error) {
			res, err := next(ctx, env)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && !lost[env.ID] && env.Type() == typ {
				lost[env.ID] = true
				return command.Result{}, errors.New("connection reset by peer")
			}
			return res, err
		}
	}
}
