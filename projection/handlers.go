package projection

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
)

// Handlers routes events to typed handler functions, decoding them through
// an event registry (so upcasters apply and a projector only sees current
// types). Embed it in a projector to get EventTypes, Apply and
// ApplyQueued (it is a QueueProjector):
//
//	type OrderSummary struct{ *projection.Handlers }
//	h := projection.NewHandlers(registry)
//	projection.OnQueued(h, func(ctx context.Context, q *projection.Queue, e OrderPlaced, rec eventstore.RecordedEvent) error { ... })
//	projection.On(h, func(ctx context.Context, tx pgx.Tx, e OrderCancelled, rec eventstore.RecordedEvent) error { ... })
//
// A handler registered with OnQueued writes through a Queue, pipelined
// when the manager applies several events at once; one registered with On
// gets the transaction, after every statement queued before it has run.
type Handlers struct {
	registry *eventstore.Registry
	byType   map[string]func(ctx context.Context, q *Queue, event any, rec eventstore.RecordedEvent) error
}

// NewHandlers returns an empty set of handlers decoding with registry.
func NewHandlers(registry *eventstore.Registry) *Handlers {
	return &Handlers{registry: registry, byType: map[string]func(context.Context, *Queue, any, eventstore.RecordedEvent) error{}}
}

// On registers the handler of event type E, which must be registered in the
// registry, given the transaction. It panics otherwise, or when E already
// has a handler: both are start-up mistakes.
func On[E any](h *Handlers, fn func(ctx context.Context, tx pgx.Tx, event E, rec eventstore.RecordedEvent) error) {
	add(h, func(ctx context.Context, q *Queue, event E, rec eventstore.RecordedEvent) error {
		tx, err := q.Tx(ctx)
		if err != nil {
			return err
		}
		return fn(ctx, tx, event, rec)
	})
}

// OnQueued registers the handler of event type E, which writes through a
// Queue (see Queue): pipelined when the manager applies several events in
// one transaction. It panics like On.
func OnQueued[E any](h *Handlers, fn func(ctx context.Context, q *Queue, event E, rec eventstore.RecordedEvent) error) {
	add(h, fn)
}

func add[E any](h *Handlers, fn func(ctx context.Context, q *Queue, event E, rec eventstore.RecordedEvent) error) {
	names, ok := eventstore.StoredNamesOf[E](h.registry)
	if !ok {
		var zero E
		panic(fmt.Sprintf("projection: %T is not registered in the event registry: register it before handling it "+
			"(eventstore.Register; in a service made by cairn new, mark the type //cairn:event and run `cairn new sync`)", zero))
	}
	if _, dup := h.byType[names[0]]; dup {
		panic(fmt.Sprintf("projection: event type %s already has a handler", names[0]))
	}
	handle := func(ctx context.Context, q *Queue, event any, rec eventstore.RecordedEvent) error {
		return fn(ctx, q, event.(E), rec)
	}
	for _, n := range names { // its aliases too: old events decode to E
		h.byType[n] = handle
	}
}

// EventTypes returns the handled type names, sorted.
func (h *Handlers) EventTypes() []string {
	names := make([]string, 0, len(h.byType))
	for n := range h.byType {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Apply decodes rec and calls its handler. An event without a handler is an
// error wrapping ErrUnhandledEvent; one that does not decode returns the
// registry's typed error.
func (h *Handlers) Apply(ctx context.Context, tx pgx.Tx, rec eventstore.RecordedEvent) error {
	return h.ApplyQueued(ctx, Direct(tx), rec)
}

// ApplyQueued is Apply with the writes of OnQueued handlers going through q.
func (h *Handlers) ApplyQueued(ctx context.Context, q *Queue, rec eventstore.RecordedEvent) error {
	fn, ok := h.byType[rec.Type]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnhandledEvent, rec.Type)
	}
	event, err := h.registry.Decode(rec)
	if err != nil {
		return err
	}
	return fn(ctx, q, event, rec)
}
