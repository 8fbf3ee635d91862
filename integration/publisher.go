package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/telemetry"
)

// Sender hands envelopes to a broker (see integration/jetstream). Send
// returns once the broker has stored the message, or failed. A failure of
// the message itself wraps ErrUndeliverable; any other error is taken for
// the broker being unavailable.
type Sender interface {
	Send(ctx context.Context, env Envelope) (Receipt, error)
}

// PublisherConfig configures a Publisher. The zero value is usable.
type PublisherConfig struct {
	// SubjectPrefix makes the subject of a message that has none:
	// SubjectPrefix + "." + Type (default: the publisher's name).
	SubjectPrefix string
	// Metrics counts messages published and failures (default: none).
	Metrics *Metrics
	// TracerProvider makes the span of each message published, a child
	// of the span the event's metadata names; its context goes in the
	// message's traceparent header (nil: otel.GetTracerProvider(), no
	// spans unless the application installed a provider).
	TracerProvider trace.TracerProvider
}

// Publisher publishes integration messages mapped from events. It is a
// projection.Projector: register it with Register, which gives it the
// options it needs, and the projection daemon (Manager.Run) runs it. Its
// projection is named "publish_" + its name.
type Publisher struct {
	name     string
	registry *eventstore.Registry
	sender   Sender
	cfg      PublisherConfig
	byType   map[string]func(ctx context.Context, event any, rec eventstore.RecordedEvent) (Message, error)
	tracer   trace.Tracer
}

// ProjectionPrefix prefixes the projection name of a publisher.
const ProjectionPrefix = "publish_"

// NewPublisher returns a publisher named name (its projection is
// ProjectionPrefix + name, which must be a valid projection name) that
// decodes events with registry and sends messages through sender.
func NewPublisher(name string, registry *eventstore.Registry, sender Sender, cfg PublisherConfig) (*Publisher, error) {
	if err := projection.ValidateName(ProjectionPrefix + name); err != nil {
		return nil, fmt.Errorf("integration: publisher %q: %w", name, err)
	}
	if registry == nil || sender == nil {
		return nil, fmt.Errorf("integration: publisher %s: needs an event registry and a sender", name)
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = name
	}
	if err := ValidSubject(cfg.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("integration: publisher %s: subject prefix: %w", name, err)
	}
	return &Publisher{
		name: name, registry: registry, sender: sender, cfg: cfg,
		byType: map[string]func(context.Context, any, eventstore.RecordedEvent) (Message, error){},
		tracer: telemetry.Tracer(cfg.TracerProvider, telemetry.ScopeName+"/integration"),
	}, nil
}

// Map makes p publish events of type E (registered in p's registry) as
// the message fn returns. fn returning ErrSkip publishes nothing for that
// event; any other error is a mapping failure: the event is retried, then
// dead-lettered (see Register). Map panics when E is not registered or
// already mapped: both are start-up mistakes.
func Map[E any](p *Publisher, fn func(ctx context.Context, e E, rec eventstore.RecordedEvent) (Message, error)) {
	names, ok := eventstore.StoredNamesOf[E](p.registry)
	if !ok {
		var zero E
		panic(fmt.Sprintf("integration: %T is not registered in the event registry: register it before mapping it", zero))
	}
	if _, dup := p.byType[names[0]]; dup {
		panic(fmt.Sprintf("integration: publisher %s already maps event type %s", p.name, names[0]))
	}
	mapping := func(ctx context.Context, event any, rec eventstore.RecordedEvent) (Message, error) {
		return fn(ctx, event.(E), rec)
	}
	for _, n := range names { // its aliases too: old events decode to E
		p.byType[n] = mapping
	}
}

// Register registers p on m as a projection with side effects (never
// replayed: a rebuild or reset is refused, a new Version goes on from the
// checkpoint) whose failing events are dead-lettered rather than stopping
// it. A publisher that maps nothing is refused.
func (p *Publisher) Register(m *projection.Manager) error {
	if len(p.byType) == 0 {
		return fmt.Errorf("integration: publisher %s maps no event type", p.name)
	}
	return m.Register(p, projection.WithSideEffects(), projection.WithPolicy(projection.PolicyDeadLetter))
}

// Name is the projection's name: ProjectionPrefix + the publisher's name.
func (p *Publisher) Name() string { return ProjectionPrefix + p.name }

// Version is 1: a publisher has no read model to rebuild.
func (p *Publisher) Version() int { return 1 }

// EventTypes are the mapped event types, sorted.
func (p *Publisher) EventTypes() []string {
	names := make([]string, 0, len(p.byType))
	for n := range p.byType {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Setup creates nothing: the checkpoint is all a publisher keeps.
func (p *Publisher) Setup(context.Context, pgx.Tx) error { return nil }

// Apply maps rec and publishes the message, waiting for the broker. A
// broker failure is returned wrapping projection.ErrUnavailable, so that
// the runner retries it from the checkpoint with backoff and never
// dead-letters it; any other failure (decoding, mapping, a message the
// broker refuses) is the event's.
func (p *Publisher) Apply(ctx context.Context, _ pgx.Tx, rec eventstore.RecordedEvent) error {
	env, err := p.Envelope(ctx, rec)
	if errors.Is(err, ErrSkip) {
		return nil
	}
	if err != nil {
		p.cfg.Metrics.publishFailed(p.name, "mapping")
		return err
	}
	parent := telemetry.ExtractMetadata(ctx, rec.Metadata)
	ctx, span := p.tracer.Start(parent, "publish "+env.Headers[HeaderType],
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "cairn"), attribute.String("messaging.destination.name", env.Subject),
			attribute.String("messaging.message.id", env.ID), attribute.String("cairn.publisher", p.name)))
	defer span.End()
	if telemetry.Started(parent, span) {
		telemetry.Inject(ctx, env.Headers)
	}
	start := time.Now()
	receipt, err := p.sender.Send(ctx, env)
	if err != nil {
		telemetry.Fail(span, err)
	}
	switch {
	case err == nil:
		p.cfg.Metrics.sent(p.name, env.Headers[HeaderType], receipt.Duplicate, time.Since(start))
		return nil
	case errors.Is(err, ErrUndeliverable):
		p.cfg.Metrics.publishFailed(p.name, "undeliverable")
		return fmt.Errorf("integration: publishing %s (event %s): %w", env.Headers[HeaderType], rec.ID, err)
	default:
		p.cfg.Metrics.publishFailed(p.name, "unavailable")
		return fmt.Errorf("integration: publishing %s (event %s): %w: %w", env.Headers[HeaderType], rec.ID, projection.ErrUnavailable, err)
	}
}

// Envelope is what Apply sends for rec: the mapped message with its
// defaults, ID, correlation and causation, encoded. It returns ErrSkip
// when the mapper skips the event.
func (p *Publisher) Envelope(ctx context.Context, rec eventstore.RecordedEvent) (Envelope, error) {
	fn, ok := p.byType[rec.Type]
	if !ok {
		return Envelope{}, fmt.Errorf("integration: publisher %s: %w: %s", p.name, projection.ErrUnhandledEvent, rec.Type)
	}
	event, err := p.registry.Decode(rec)
	if err != nil {
		return Envelope{}, err
	}
	m, err := fn(ctx, event, rec)
	if err != nil {
		if errors.Is(err, ErrSkip) {
			return Envelope{}, ErrSkip
		}
		return Envelope{}, fmt.Errorf("integration: publisher %s: mapping %s %s@%d: %w", p.name, rec.Type, rec.StreamID, rec.Version, err)
	}
	if m.Version == 0 {
		m.Version = 1
	}
	if m.Key == "" {
		m.Key = rec.StreamID
	}
	if m.Subject == "" && m.Type != "" {
		m.Subject = p.cfg.SubjectPrefix + "." + m.Type
	}
	m.ID = rec.ID.String()
	m.CorrelationID = rec.Metadata.CorrelationID
	if m.CorrelationID == "" {
		m.CorrelationID = m.ID
	}
	m.CausationID = m.ID
	m.OccurredAt = rec.RecordedAt
	env, err := encode(m)
	if err != nil {
		return Envelope{}, fmt.Errorf("integration: publisher %s: event %s %s@%d: %w", p.name, rec.Type, rec.StreamID, rec.Version, err)
	}
	return env, nil
}
