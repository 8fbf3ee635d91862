package saga_test

// Sagas with the log in KurrentDB and their state in PostgreSQL. The log is
// the in-process stand-in of eventstore/kurrentdb's tests (kurrentdbtest),
// or the real server KURRENTDB_URL names, except where a test needs the
// stand-in's fault injection; the saga's tables live in a schema holding
// only the read side's migrations.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
)

// kEnv is the saga test domain (see helpers_test.go) on a KurrentDB log.
type kEnv struct {
	t        *testing.T
	target   kurrentdbtest.Target
	store    *kurrentdb.Store
	db       pgdb.DB
	registry *eventstore.Registry

	mu      sync.Mutex
	handled map[string]int // handler runs by command ID
}

// newKEnv starts the test's log on srv (nil: a fresh stand-in, or
// KURRENTDB_URL when set) and its saga state in a fresh schema.
func newKEnv(t *testing.T, srv *kurrentdbtest.Server) *kEnv {
	t.Helper()
	e := &kEnv{t: t, registry: eventstore.NewRegistry(), handled: map[string]int{}}
	if srv != nil {
		e.target = kurrentdbtest.On(t, srv)
	} else {
		e.target = kurrentdbtest.NewTarget(t)
	}
	e.store = e.newStore()
	pool := pgtest.Pool(t, 30)
	schema := fmt.Sprintf("t_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, schema)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, migrations.UpPool(ctx, pool, schema, app.ReadSideMigrations()...))
	pgtest.DropStoreModels(t, pool, schema)
	e.db = pgdb.DB{Pool: pool, Schema: schema}
	eventstore.MustRegister[Started](e.registry, "Started")
	eventstore.MustRegister[StepDone](e.registry, "StepDone")
	eventstore.MustRegister[StepFailed](e.registry, "StepFailed")
	eventstore.MustRegister[StepUndone](e.registry, "StepUndone")
	eventstore.MustRegister[Expired](e.registry, "Expired")
	return e
}

// newStore opens a store with a KurrentDB client of its own, as another
// process would.
func (e *kEnv) newStore() *kurrentdb.Store { return e.target.Open(e.t) }

// dispatcher returns a dispatcher over store, which is also its command
// log, with the test domain's handlers.
func (e *kEnv) dispatcher(store *kurrentdb.Store, mws ...command.Middleware) *command.Dispatcher {
	d := command.NewDispatcher(store, command.Config{Logger: quietLog, NoLogging: true, Middleware: mws,
		Retry: retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}})
	command.MustRegister(d, func(ctx context.Context, c Start) (eventstore.AppendResult, error) {
		return e.append(ctx, store, c.JobID, Started(c))
	})
	command.MustRegister(d, func(ctx context.Context, c DoStep) (eventstore.AppendResult, error) {
		if c.N == c.FailAt {
			return e.append(ctx, store, c.JobID, StepFailed{JobID: c.JobID, N: c.N})
		}
		return e.append(ctx, store, c.JobID, StepDone{JobID: c.JobID, N: c.N})
	})
	command.MustRegister(d, func(ctx context.Context, c UndoStep) (eventstore.AppendResult, error) {
		return e.append(ctx, store, c.JobID, StepUndone(c))
	})
	return d
}

// append records events on the job's stream as the command in ctx: the
// store records the command after them, and derives their IDs from the
// command ID.
func (e *kEnv) append(ctx context.Context, store *kurrentdb.Store, jobID string, events ...any) (eventstore.AppendResult, error) {
	c, _ := eventstore.CausationFrom(ctx)
	e.mu.Lock()
	e.handled[c.CommandID]++
	e.mu.Unlock()
	evs, err := encodeAll(e.registry, events...)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return store.Append(ctx, "job-"+jobID, eventstore.Any, evs, c.Stamp(evs)...)
}

// handledCounts returns how many commands' handlers ran once, twice, ….
func (e *kEnv) handledCounts() map[int]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[int]int{}
	for _, n := range e.handled {
		out[n]++
	}
	return out
}

// start runs a relay: a projection manager and a saga manager, with a
// KurrentDB store and dispatcher of their own, until the test ends.
func (e *kEnv) start(name string, cfg saga.Config, disp *command.Dispatcher) {
	t := e.t
	t.Helper()
	pm, err := projection.NewManager(e.newStore(), e.db, projection.Config{Logger: quietLog, LeaderRetry: 50 * time.Millisecond,
		Retry: retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	require.NoError(t, err)
	cfg.Logger = quietLog
	cfg.Retry.BaseDelay, cfg.Retry.MaxDelay = time.Millisecond, 20*time.Millisecond
	sm := saga.NewManager(pm, disp, e.registry, cfg)
	sm.MustRegister((&env{registry: e.registry}).stepsSaga(name))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = pm.Run(ctx) })
	wg.Go(func() { _ = sm.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); pm.Close() })
}

// awaitEnded waits until the instance has ended with no command pending.
func (e *kEnv) awaitEnded(sagaName, id string) saga.Detail {
	e.t.Helper()
	return awaitEnded(e.t, e.db, sagaName, id, 60*time.Second)
}

// jobEvents reads a job's stream from KurrentDB as type:N strings.
func (e *kEnv) jobEvents(jobID string) []string {
	e.t.Helper()
	return readJob(e.t, e.store, e.registry, jobID)
}

// Jobs started concurrently run on two relays, each with its own
// KurrentDB client: the saga reacts to the events in KurrentDB, its
// commands append there through the dispatcher, and every instance ends
// as its job dictates, each command handled once (the command log of the
// KurrentDB store answers a command sent again).
func TestKurrentDBSagaRunsStepsAndCompensates(t *testing.T) {
	e := newKEnv(t, nil)
	name := uniqueName("ksteps")
	for range 2 {
		e.start(name, saga.Config{Concurrency: 4}, e.dispatcher(e.newStore()))
	}
	disp := e.dispatcher(e.store)

	const jobs = 24
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			failAt := 0
			if i%4 == 0 {
				failAt = 3
			}
			_, err := disp.Dispatch(context.Background(), Start{JobID: fmt.Sprint(i), Steps: 3, FailAt: failAt})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	for i := range jobs {
		d := e.awaitEnded(name, fmt.Sprint(i))
		require.Equal(t, saga.StatusCompleted, d.Status)
		if i%4 == 0 {
			require.Equal(t, "compensated", d.Outcome)
			require.Equal(t, []string{"Started", "done:1", "done:2", "failed:3", "undone:2", "undone:1"}, e.jobEvents(fmt.Sprint(i)))
			require.Len(t, d.Commands, 5)
		} else {
			require.Equal(t, "done", d.Outcome)
			require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents(fmt.Sprint(i)))
			require.Len(t, d.Commands, 3)
		}
		for _, c := range d.Commands {
			require.Equal(t, "sent", c.Status, c)
			// The command's record is in KurrentDB, under the ID the
			// saga gave it.
			h, ok, err := e.store.HandledCommand(context.Background(), c.CommandID)
			require.NoError(t, err)
			require.True(t, ok, "command %s recorded", c.CommandID)
			require.Equal(t, c.Type, h.Type)
		}
	}
	// Start, then three DoSteps, or three DoSteps and two UndoSteps.
	require.Equal(t, map[int]int{1: jobs + (jobs-jobs/4)*3 + jobs/4*5}, e.handledCounts(), "every command's handler ran once")
}

// The relay learns nothing from the first send of each DoStep: the command
// is handled, but the relay sees an error. It sends again under the same
// ID, and the KurrentDB store's command log answers with the recorded
// result: the handler does not run again.
func TestKurrentDBSagaCommandSentAgainAfterALostAnswerIsHandledOnce(t *testing.T) {
	e := newKEnv(t, nil)
	name := uniqueName("ksteps")
	lose := loseFirstAnswers("DoStep")
	e.start(name, saga.Config{}, e.dispatcher(e.newStore(), lose))
	_, err := e.dispatcher(e.store).Dispatch(context.Background(), Start{JobID: "j", Steps: 3})
	require.NoError(t, err)
	d := e.awaitEnded(name, "j")
	require.Equal(t, "done", d.Outcome)
	require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents("j"))
	require.Equal(t, map[int]int{1: 4}, e.handledCounts(), "Start and three DoSteps, each handler run once")
	for _, c := range d.Commands {
		require.Equal(t, 2, c.Attempts, "each DoStep was sent twice")
	}
}

// Where KurrentDB differs from PostgreSQL: a command's events and its
// record are two writes. Here the record's write fails once for every
// DoStep (as a crash or a lost connection between the two would), after
// the events were written. The command log does not know the command, so
// the resend runs the handler again; it produces the same events (their
// IDs derive from the command ID), which KurrentDB recognises and does not
// write again. The saga completes and every step is in the log once, but
// each DoStep's handler ran twice. (On PostgreSQL the failed append writes
// nothing, so nothing of the first run is in the log.) It needs the
// stand-in's fault injection, so it runs on a stand-in always.
func TestKurrentDBSagaStepWhoseRecordWasLostRunsAgainWithoutDuplicatingItsEvents(t *testing.T) {
	srv, err := kurrentdbtest.Start()
	require.NoError(t, err, "KurrentDB stand-in")
	t.Cleanup(srv.Close)
	e := newKEnv(t, srv)
	name := uniqueName("ksteps")
	var refusing atomic.Bool
	var mu sync.Mutex
	refused := map[string]bool{}
	srv.RefuseAppends(func(stream string) bool {
		if !refusing.Load() || !strings.HasPrefix(stream, "cairn/commands/") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		first := !refused[stream]
		refused[stream] = true
		return first
	})
	e.start(name, saga.Config{}, e.dispatcher(e.newStore()))
	_, err = e.dispatcher(e.store).Dispatch(context.Background(), Start{JobID: "j", Steps: 3})
	require.NoError(t, err)
	refusing.Store(true)

	d := e.awaitEnded(name, "j")
	require.Equal(t, "done", d.Outcome)
	require.Equal(t, []string{"Started", "done:1", "done:2", "done:3"}, e.jobEvents("j"), "each step's event written once")
	require.Equal(t, map[int]int{1: 1, 2: 3}, e.handledCounts(), "Start's handler ran once, each DoStep's twice")
	mu.Lock()
	require.Len(t, refused, 3, "one refused record write per DoStep")
	mu.Unlock()
	for _, c := range d.Commands {
		require.Equal(t, "sent", c.Status)
		_, ok, err := e.store.HandledCommand(context.Background(), c.CommandID)
		require.NoError(t, err)
		require.True(t, ok, "the resend recorded command %s", c.CommandID)
	}
	var rows int
	require.NoError(t, e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{e.db.Schema, "saga_instances"}.Sanitize()).Scan(&rows))
	require.Equal(t, 1, rows)
}
