package saga

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// Reactor is a plain event handler (choreography): notifications,
// analytics, integrations. Each handler gets the transaction that advances
// the reactor's checkpoint and records the event as handled: what it
// writes through tx happens exactly once; what it does outside the database
// happens at least once, so it should pass the event's ID along as an
// idempotency key.
type Reactor struct {
	name     string
	handlers *projection.Handlers
	setup    func(ctx context.Context, tx pgx.Tx) error
}

// ReactorConfig configures a Reactor. The zero value is usable.
type ReactorConfig struct {
	// Setup gives the reactor tables of its own (an analytics handler's
	// counters, a notifier's sent mail): it creates them, unqualified, in
	// the reactor's schema, once. Nil: no tables.
	Setup func(ctx context.Context, tx pgx.Tx) error
}

// NewReactor returns a reactor with no handlers. name is its projection's
// name (see projection.ValidateName); events decode through registry.
func NewReactor(name string, registry *eventstore.Registry, cfg ReactorConfig) *Reactor {
	return &Reactor{name: name, handlers: projection.NewHandlers(registry), setup: cfg.Setup}
}

// React registers the handler of events of type E.
func React[E any](r *Reactor, fn func(ctx context.Context, tx pgx.Tx, event E, rec eventstore.RecordedEvent) error) {
	projection.On(r.handlers, fn)
}

// Name returns the reactor's name.
func (r *Reactor) Name() string { return r.name }

// RegisterReactor adds a reactor: a projection registered with side
// effects, which therefore cannot be rebuilt or reset. Its failure policy
// is the manager's (Config.Policy) unless opts say otherwise
// (projection.WithPolicy).
func (m *Manager) RegisterReactor(r *Reactor, opts ...projection.Option) error {
	p := &reactorProjector{r: r, mark: strings.ReplaceAll(`INSERT INTO {s}.handled_events (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		"{s}", m.projections.DB().Ident())}
	opts = append([]projection.Option{projection.WithSideEffects(), projection.WithPolicy(m.cfg.Policy)}, opts...)
	if err := m.projections.Register(p, opts...); err != nil {
		return fmt.Errorf("saga: reactor %s: %w", r.name, err)
	}
	return nil
}

// MustRegisterReactor is RegisterReactor for start-up code.
func (m *Manager) MustRegisterReactor(r *Reactor, opts ...projection.Option) {
	if err := m.RegisterReactor(r, opts...); err != nil {
		panic(err)
	}
}

type reactorProjector struct {
	r    *Reactor
	mark string
}

func (p *reactorProjector) Name() string { return p.r.name }
func (p *reactorProjector) Version() int { return 1 }
func (p *reactorProjector) Setup(ctx context.Context, tx pgx.Tx) error {
	if p.r.setup == nil {
		return nil
	}
	return p.r.setup(ctx, tx)
}
func (p *reactorProjector) EventTypes() []string { return p.r.handlers.EventTypes() }

// Apply records the event as handled before handling it, in the same
// transaction. The checkpoint, in that transaction too, already keeps the
// daemon from delivering an event twice; the record is what keeps a
// checkpoint moved back (restored from a backup, set by hand) from
// repeating the reactor's effects.
func (p *reactorProjector) Apply(ctx context.Context, tx pgx.Tx, rec eventstore.RecordedEvent) error {
	tag, err := tx.Exec(ctx, p.mark, p.r.name, rec.ID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	return p.r.handlers.Apply(ctx, tx, rec)
}
