// Package aggregate is Cairn's way of writing event-sourced aggregates and
// of loading and saving them through an event store.
//
// # Writing an aggregate
//
// An aggregate is a struct that embeds Base and has an Apply method with a
// pointer receiver. Apply changes the state for one event (usually a type
// switch) and never fails or checks anything: events are facts. Command
// methods check invariants against the state and call Record, which applies
// each new event and queues it for saving:
//
//	type Order struct {
//		aggregate.Base
//		Placed bool
//	}
//
//	func (o *Order) Apply(event any) {
//		switch event.(type) {
//		case OrderPlaced:
//			o.Placed = true
//		}
//	}
//
//	func (o *Order) Place() error {
//		if o.Placed {
//			return ErrAlreadyPlaced
//		}
//		aggregate.Record(o, OrderPlaced{OrderID: o.ID()})
//		return nil
//	}
//
// Events are plain Go values registered in an eventstore.Registry, which
// names them in the store and upcasts old schema versions when loading.
//
// # Loading and saving
//
// A Repository keeps the aggregates of one category (stream "order-42" holds
// aggregate "42" of category "order"): Load replays a stream into a fresh
// aggregate, Save appends its recorded events with optimistic concurrency.
// When the context carries an eventstore.Causation (the command dispatcher
// puts it there), Save stamps the events with its correlation and causation
// IDs and records the command with them, so handling the same command twice
// appends once. Repositories can keep snapshots: see Config.
//
// Domain logic is tested without a store with package
// aggregate/aggregatetest.
package aggregate

import "slices"

// Aggregate is what a Repository loads and saves: a pointer to a struct that
// embeds Base and applies events. The unexported method is Base's, so only
// types embedding Base implement Aggregate.
type Aggregate interface {
	// Apply changes the state for one event. It is called for stored
	// events when loading and for new events by Record; it must not fail,
	// check invariants or have side effects.
	Apply(event any)
	// ID, Version and Changes are Base's.
	ID() string
	Version() int64
	Changes() []any
	base() *Base
}

// Base is embedded in every aggregate. It holds the aggregate's ID, its
// version and the events recorded since it was loaded or saved. Its fields
// are unexported, so they are not part of a JSON snapshot.
type Base struct {
	id      string
	version int64
	changes []any
	stale   bool
}

//lint:ignore U1000 called through the Aggregate interface, which staticcheck does not follow here
func (b *Base) base() *Base { return b }

// ID returns the aggregate's ID: its stream ID without the category.
func (b *Base) ID() string { return b.id }

// Version returns the stream version of the last stored event the aggregate
// has applied: 0 for a new aggregate. Recorded events that are not saved yet
// do not count; once saved, the aggregate is at Version()+len(Changes()).
func (b *Base) Version() int64 { return b.version }

// Changes returns the events recorded since the aggregate was loaded or
// last saved, in order.
func (b *Base) Changes() []any { return slices.Clone(b.changes) }

// New returns a fresh aggregate from newFn with its ID set: the starting
// point of an aggregate that has no stream yet.
func New[T Aggregate](newFn func() T, id string) T {
	a := newFn()
	a.base().id = id
	return a
}

// Record applies each event to a and queues it to be appended by the next
// Save. Call it from command methods once the invariants hold.
func Record(a Aggregate, events ...any) {
	b := a.base()
	for _, e := range events {
		a.Apply(e)
		b.changes = append(b.changes, e)
	}
}

// Replay applies events that are already stored, as a Repository does when
// loading: each advances the version by one and none is queued for saving.
// It is for building an aggregate from events some other way, such as a
// test's history (see aggregatetest).
func Replay(a Aggregate, events ...any) {
	b := a.base()
	for _, e := range events {
		a.Apply(e)
		b.version++
	}
}
