package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/telemetry"
)

// DefaultRetry is the retry policy of a saga command that keeps failing:
// 10 sends, waits from 100ms doubling up to 30s.
var DefaultRetry = retry.Policy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: 30 * time.Second}

// Config tunes a Manager. The zero value is usable.
type Config struct {
	// Policy is the failure policy of the sagas' and reactors' projections
	// for an event a handler keeps failing on (default
	// projection.PolicyStop; see projection.Config.Retry for the retries).
	Policy projection.Policy
	// Retry bounds the sends of a command that keeps failing (not
	// rejected: failing) before it is marked dead and its instance failed,
	// and spaces them (defaults: DefaultRetry).
	Retry retry.Policy
	// CommandTimeout bounds one send (default 30s).
	CommandTimeout time.Duration
	// Lease is how long a relay's claim on a command lasts without being
	// renewed. The relay renews it every third of a Lease while it sends
	// the command and records the outcome, so a send may take longer; a
	// relay that died (or lost the database for longer than a Lease) is
	// replaced once it runs out. It bounds the delay a crash adds to a
	// command (default 5s, at least 300ms).
	Lease time.Duration
	// Concurrency is how many commands the relay sends at once, each for a
	// different instance (default 16).
	Concurrency int
	// Poll bounds the wait between looks at the outbox and the timeouts
	// when no notification arrives (default 1s).
	Poll time.Duration
	// BacklogMaxAge and BacklogMaxCommands bound the relay's backlog:
	// while the oldest command waiting to be sent has waited longer than
	// BacklogMaxAge, or more than BacklogMaxCommands wait, Admit refuses new
	// commands (the server answers 503 with Retry-After). Defaults 5s and
	// 10,000; negative disables the bound.
	BacklogMaxAge      time.Duration
	BacklogMaxCommands int
	// BacklogRetryAfter is the Retry-After of Admit's refusals (default
	// 1s).
	BacklogRetryAfter time.Duration
	// Logger receives the relay's and the timer's failures (default
	// slog.Default()).
	Logger *slog.Logger
	// TracerProvider makes the spans of the sagas' steps (children of
	// their events' trace context) and of the relay's sends (children of
	// the step that queued the command). Nil: otel.GetTracerProvider(),
	// which makes none until the application installs an SDK.
	TracerProvider trace.TracerProvider
}

func (c *Config) defaults() {
	c.Retry = c.Retry.WithDefaults(DefaultRetry)
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 30 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 5 * time.Second
	}
	c.Lease = max(c.Lease, 300*time.Millisecond)
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.BacklogMaxAge == 0 {
		c.BacklogMaxAge = 5 * time.Second
	}
	if c.BacklogMaxCommands == 0 {
		c.BacklogMaxCommands = 10_000
	}
	if c.BacklogRetryAfter <= 0 {
		c.BacklogRetryAfter = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager runs sagas and reactors over any event log, keeping their state
// in PostgreSQL beside the projections that apply them. Register
// puts their event handling on the projection manager, which applies it
// (run it with projection.Manager.Run); Run sends the commands sagas
// decided and fires their timeouts. Many processes may Run the same sagas.
type Manager struct {
	store       eventstore.Log
	pool        *pgxpool.Pool
	projections *projection.Manager
	dispatcher  *command.Dispatcher
	registry    *eventstore.Registry
	cfg         Config
	log         *slog.Logger
	q           queries
	metrics     *metrics
	backlog     backlogWatch
	tracer      trace.Tracer

	mu    sync.Mutex
	sagas map[string]runner
	names []string // registered sagas, sorted
}

// NewManager returns a manager whose sagas are applied by projections (and
// keep their tables in its pgdb.DB, see Migrations), send commands through
// dispatcher and decode events with registry. A manager without a
// dispatcher only registers (the command line's, to report and rebuild
// projections): its Run fails.
func NewManager(projections *projection.Manager, dispatcher *command.Dispatcher, registry *eventstore.Registry, cfg Config) *Manager {
	cfg.defaults()
	db := projections.DB()
	return &Manager{
		store: projections.Log(), pool: db.Pool, projections: projections,
		dispatcher: dispatcher, registry: registry, cfg: cfg, log: cfg.Logger,
		q: newQueries(db.Schema), metrics: newMetrics(),
		tracer: telemetry.Tracer(cfg.TracerProvider, telemetry.ScopeName+"/saga"),
		sagas:  map[string]runner{},
	}
}

// inspector reads the manager's own tables.
func (m *Manager) inspector() *Inspector { return NewInspector(m.projections.DB()) }

// Saga is a saga definition (a *Definition[S]), for Register.
type Saga interface {
	runner
}

// ProjectionName is the name of the projection that applies a saga's
// events: what projection status shows.
func ProjectionName(sagaName string) string { return "saga_" + sagaName }

// Register adds a saga: its event handling becomes a projection (see
// ProjectionName) registered with side effects.
func (m *Manager) Register(s Saga) error {
	m.mu.Lock()
	if _, dup := m.sagas[s.sagaName()]; dup {
		m.mu.Unlock()
		return fmt.Errorf("saga: %s is already registered", s.sagaName())
	}
	m.mu.Unlock()
	p := &sagaProjector{m: m, s: s}
	// A QueueProjector: an event's handling is one query (the instance,
	// locked) and writes that never read their row counts, so a batch of
	// events costs about one round trip each instead of five.
	if err := m.projections.Register(p, projection.WithSideEffects(), projection.WithPolicy(m.cfg.Policy)); err != nil {
		return fmt.Errorf("saga %s: %w", s.sagaName(), err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sagas[s.sagaName()] = s
	m.names = append(m.names, s.sagaName())
	sort.Strings(m.names)
	return nil
}

// MustRegister is Register for start-up code: it panics on error.
func (m *Manager) MustRegister(s Saga) {
	if err := m.Register(s); err != nil {
		panic(err)
	}
}

func (m *Manager) lookup(name string) (runner, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sagas[name]
	return s, ok
}

func (m *Manager) registered() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.names...)
}

// sagaProjector applies a saga's events on the projection daemon.
type sagaProjector struct {
	m *Manager
	s runner
}

func (p *sagaProjector) Name() string                        { return ProjectionName(p.s.sagaName()) }
func (p *sagaProjector) Version() int                        { return 1 }
func (p *sagaProjector) Setup(context.Context, pgx.Tx) error { return nil }
func (p *sagaProjector) EventTypes() []string                { return p.s.eventTypes() }
func (p *sagaProjector) Apply(ctx context.Context, tx pgx.Tx, rec eventstore.RecordedEvent) error {
	return p.ApplyQueued(ctx, projection.Direct(tx), rec)
}

func (p *sagaProjector) ApplyQueued(ctx context.Context, q *projection.Queue, rec eventstore.RecordedEvent) error {
	return p.m.handleEvent(ctx, q, p.s, rec)
}

// handleEvent routes one event to its instance, in the projection's
// transaction (which also advances the checkpoint).
func (m *Manager) handleEvent(ctx context.Context, tx *projection.Queue, s runner, rec eventstore.RecordedEvent) error {
	decoded, err := m.registry.Decode(rec)
	if err != nil {
		return err
	}
	key, starts, ok := s.routeOf(rec.Type, decoded)
	if !ok || key == "" {
		return nil
	}
	inst, err := m.q.loadInstance(ctx, tx, s.sagaName(), key)
	if err != nil {
		return err
	}
	switch {
	case !inst.exists && !starts:
		return nil // an event for an instance that never started
	case inst.exists && inst.status != StatusActive:
		return nil // the instance has ended
	case !inst.exists:
		inst.correlationID = rec.Metadata.CorrelationID
		if inst.correlationID == "" {
			inst.correlationID = rec.ID.String()
		}
	}
	ctx, span := m.startStep(ctx, s.sagaName(), key, &rec)
	defer span.End()
	fx, err := s.run(ctx, inst, message{event: &rec, decoded: decoded, now: rec.RecordedAt})
	if err == nil {
		err = m.persist(ctx, tx, s, inst, fx, rec.ID.String(), rec.ID.String(), rec.RecordedAt)
	}
	telemetry.Fail(span, err)
	return err
}

// persist writes a handling's effects and, when they withdrew unsent
// commands of an instance still active, hands those to the saga's
// OnWithdrawn handler in the same transaction (whose own effects can
// withdraw nothing more: the earlier handling took every unsent one).
func (m *Manager) persist(ctx context.Context, tx *projection.Queue, s runner, inst *instance, fx *effects, cause, causationID string, now time.Time) error {
	withdrawn, err := m.q.persist(ctx, tx, s.sagaName(), inst, fx, cause, causationID)
	if err != nil || len(withdrawn) == 0 || fx.status != StatusActive || !s.handlesWithdrawn() {
		return err
	}
	msg := message{withdrawn: make([]Withdrawn, len(withdrawn)), now: now}
	for i, w := range withdrawn {
		msg.withdrawn[i] = Withdrawn{CommandID: w.id, Type: w.typ}
		if cmd, err := m.dispatcher.Decode(w.typ, w.payload); err == nil {
			msg.withdrawn[i].Command = cmd
		}
	}
	next := &instance{id: inst.id, exists: true, status: fx.status, state: fx.state,
		compensations: fx.compensations, correlationID: inst.correlationID}
	fx, err = s.run(ctx, next, msg)
	if err != nil {
		return err
	}
	_, err = m.q.persist(ctx, tx, s.sagaName(), next, fx, "withdrawn:"+cause, causationID)
	return err
}

// Run sends the commands the registered sagas decided and fires their
// timeouts until ctx ends; it returns nil then. It does not apply events:
// the projection manager does (run both on the same context).
func (m *Manager) Run(ctx context.Context) error {
	if m.dispatcher == nil {
		return errors.New("saga: the manager has no dispatcher to send commands with")
	}
	if len(m.registered()) == 0 {
		<-ctx.Done()
		return nil
	}
	wake := newWaker()
	var wg sync.WaitGroup
	loops := []func(context.Context, *waker) error{m.listen, m.relay, m.timer, m.watchBacklog}
	errs := make(chan error, len(loops))
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx, wake); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...)
}

// waker wakes the relay and the timer when a notification arrives.
type waker struct{ relay, timer chan struct{} }

func newWaker() *waker { return &waker{relay: make(chan struct{}, 1), timer: make(chan struct{}, 1)} }

func (w *waker) wake() {
	for _, c := range []chan struct{}{w.relay, w.timer} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// listen turns notifications of queued commands and timeouts into
// wake-ups; without a connection the loops still poll.
func (m *Manager) listen(ctx context.Context, w *waker) error {
	for ctx.Err() == nil {
		err := m.listenOnce(ctx, w)
		if ctx.Err() != nil {
			return nil
		}
		m.log.Warn("cairn: saga listener lost its connection; retrying", "error", err)
		w.wake()
		if retry.Sleep(ctx, m.cfg.Poll) != nil {
			return nil
		}
	}
	return nil
}

func (m *Manager) listenOnce(ctx context.Context, w *waker) error {
	conn, err := pgx.ConnectConfig(ctx, m.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{m.q.channel}.Sanitize()); err != nil {
		return err
	}
	w.wake() // anything queued before LISTEN
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		w.wake()
	}
}

// wait blocks until woken, d passes or ctx ends.
func wait(ctx context.Context, c <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-c:
	case <-t.C:
	}
}
