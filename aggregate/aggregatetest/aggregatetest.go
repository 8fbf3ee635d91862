// Package aggregatetest tests aggregate domain logic without an event
// store, as given/when/then scenarios: given the events in an aggregate's
// history, when a command method runs, then it records these events (or
// fails with this error, or does nothing).
//
//	aggregatetest.For(t, NewOrder).
//		Given(OrderPlaced{OrderID: "o-1"}).
//		When(func(o *Order) error { return o.Ship("DHL") }).
//		Then(OrderShipped{OrderID: "o-1", Carrier: "DHL"})
//
// A mismatch fails the test with a diff of the expected and recorded
// events. With WithRegistry, the history goes through the same JSON
// encoding and decoding as stored events, and the recorded events must
// encode, which catches unregistered events and fields that do not survive
// a round trip.
package aggregatetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/eventstore"
)

// DefaultID is the ID of the aggregate under test unless WithID changes it.
const DefaultID = "test"

// Scenario is one given/when/then test of an aggregate. Build it with For;
// finish it with Then, ThenError or ThenNothing, which run it.
type Scenario[T aggregate.Aggregate] struct {
	t        testing.TB
	newFn    func() T
	id       string
	registry *eventstore.Registry
	given    []any
	when     func(T) error
}

// For starts a scenario for the aggregate that newFn creates.
func For[T aggregate.Aggregate](t testing.TB, newFn func() T) *Scenario[T] {
	return &Scenario[T]{t: t, newFn: newFn, id: DefaultID}
}

// WithID sets the ID of the aggregate under test (DefaultID otherwise).
func (s *Scenario[T]) WithID(id string) *Scenario[T] {
	s.id = id
	return s
}

// WithRegistry makes the scenario encode and decode its history through
// registry, as a Repository does, and check that the recorded events
// encode.
func (s *Scenario[T]) WithRegistry(registry *eventstore.Registry) *Scenario[T] {
	s.registry = registry
	return s
}

// Given sets the aggregate's history: events replayed, in order, into a
// fresh aggregate before When runs. Without Given, the aggregate is new.
func (s *Scenario[T]) Given(events ...any) *Scenario[T] {
	s.given = append(s.given, events...)
	return s
}

// When sets the action under test: usually a call of one command method.
func (s *Scenario[T]) When(fn func(a T) error) *Scenario[T] {
	s.when = fn
	return s
}

// Then runs the scenario and checks that the action succeeded and recorded
// exactly the given events, in order. Then() with no events is ThenNothing.
// It returns the aggregate for further checks of its state, or the zero T
// when the scenario could not run.
func (s *Scenario[T]) Then(events ...any) T {
	s.t.Helper()
	a, ok, err := s.run()
	if !ok {
		return a
	}
	if err != nil {
		s.t.Errorf("aggregatetest: expected events, got error: %v\nexpected events:\n%s", err, format(events))
		return a
	}
	changes := a.Changes()
	if len(events) == 0 {
		events = nil
	}
	if len(changes) == 0 {
		changes = nil
	}
	assert.Equal(s.t, events, changes, "aggregatetest: recorded events differ from the expected ones")
	s.checkEncodes(changes)
	return a
}

// ThenNothing runs the scenario and checks that the action succeeded
// without recording any event.
func (s *Scenario[T]) ThenNothing() T {
	s.t.Helper()
	return s.Then()
}

// ThenError runs the scenario and checks that the action failed with an
// error matching target (errors.Is) and recorded no event (a command that
// fails must leave nothing to save).
func (s *Scenario[T]) ThenError(target error) T {
	s.t.Helper()
	a, ok, err := s.run()
	if !ok {
		return a
	}
	if err == nil {
		s.t.Errorf("aggregatetest: expected error %v, got none; recorded events:\n%s", target, format(a.Changes()))
		return a
	}
	if !errors.Is(err, target) {
		s.t.Errorf("aggregatetest: expected an error matching %v (errors.Is), got: %v", target, err)
	}
	if changes := a.Changes(); len(changes) > 0 {
		s.t.Errorf("aggregatetest: the action failed with %v but recorded events:\n%s", err, format(changes))
	}
	return a
}

// run builds the aggregate from the history and runs the action. ok is
// false when the scenario itself is broken (the failure is reported).
func (s *Scenario[T]) run() (a T, ok bool, err error) {
	s.t.Helper()
	if s.when == nil {
		s.t.Errorf("aggregatetest: scenario without When")
		return a, false, nil
	}
	a = aggregate.New(s.newFn, s.id)
	for i, e := range s.given {
		if s.registry != nil {
			decoded, err := s.roundTrip(e)
			if err != nil {
				s.t.Errorf("aggregatetest: Given event %d (%T): %v", i, e, err)
				return a, false, nil
			}
			e = decoded
		}
		aggregate.Replay(a, e)
	}
	return a, true, s.when(a)
}

func (s *Scenario[T]) roundTrip(e any) (any, error) {
	enc, err := s.registry.Encode(e)
	if err != nil {
		return nil, err
	}
	return s.registry.Decode(eventstore.RecordedEvent{
		StreamID: "aggregatetest-" + s.id, Version: 1,
		Type: enc.Type, SchemaVersion: enc.SchemaVersion, Data: enc.Data,
	})
}

func (s *Scenario[T]) checkEncodes(changes []any) {
	s.t.Helper()
	if s.registry == nil {
		return
	}
	for i, e := range changes {
		if _, err := s.registry.Encode(e); err != nil {
			s.t.Errorf("aggregatetest: recorded event %d (%T) does not encode: %v", i, e, err)
		}
	}
}

func format(events []any) string {
	if len(events) == 0 {
		return "\t(none)"
	}
	out := ""
	for i, e := range events {
		out += fmt.Sprintf("\t%d: %T %+v\n", i, e, e)
	}
	return out
}
