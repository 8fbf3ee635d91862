package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/cairn-es/cairn/eventstore"
)

// This file exposes a Definition's handling, the pure core the Manager
// runs, to test fixtures. Saga tests use package saga/sagatest, which
// builds on it; applications register Definitions with a Manager and need
// none of this.

// Registry returns the registry the saga decodes its events with.
func (d *Definition[S]) Registry() *eventstore.Registry { return d.registry }

// Route tells which instance an event (a value or a pointer to one)
// concerns, as the Manager routes it: its correlation key (empty: no
// instance) and whether it starts an instance. ok is false when the saga
// does not handle the event's type.
func (d *Definition[S]) Route(event any) (key string, starts, ok bool) {
	if v := reflect.ValueOf(event); v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false, false
		}
		event = v.Elem().Interface() // handlers get values, as decoded
	}
	name, registered := d.registry.TypeName(event)
	if !registered {
		return "", false, false
	}
	return d.routeOf(name, event)
}

// Step runs one message through the saga's handlers, with the same code
// the Manager runs, but takes the instance from in and returns what the
// handling decided instead of writing it to the database. The state goes
// through JSON on the way in and out, as it does between handlings in
// the database. Step is for test fixtures (see saga/sagatest), which keep
// an instance, its outbox and its timeouts in memory and apply the
// effects as the Manager does: the Manager checks, before calling a
// handler, that the instance is active, that an event is routed to it and
// that a timeout is due; Step does not.
func (d *Definition[S]) Step(ctx context.Context, in StepInput) (StepEffects, error) {
	inst := &instance{id: in.InstanceID, exists: in.State != nil, status: StatusActive, state: in.State}
	for _, c := range in.Compensations {
		inst.compensations = append(inst.compensations, storedCommand{Type: c.Type, Payload: c.Payload, value: c.Value})
	}
	msg := message{timeout: in.Timeout, rejection: in.Rejection, withdrawn: in.Withdrawn, now: in.Now}
	if in.Event != nil {
		if _, ok := d.routes[in.Event.Type]; !ok {
			return StepEffects{}, fmt.Errorf("saga %s: no handler for event type %q", d.name, in.Event.Type)
		}
		decoded, err := d.registry.Decode(*in.Event)
		if err != nil {
			return StepEffects{}, err
		}
		msg.event, msg.decoded = in.Event, decoded
	}
	fx, err := d.run(ctx, inst, msg)
	if err != nil {
		return StepEffects{}, err
	}
	out := StepEffects{
		State: fx.state, Status: fx.status, Outcome: fx.outcome, Compensated: fx.withdraw,
		Scheduled: maps.Clone(fx.schedule),
		Cancelled: slices.Sorted(maps.Keys(fx.cancel)),
	}
	for _, q := range fx.sends {
		out.Sends = append(out.Sends, stepCommand(q))
	}
	for _, c := range fx.compensations {
		out.Compensations = append(out.Compensations, stepCommand(queuedCommand{storedCommand: c}))
	}
	return out, nil
}

// StepInput is an instance and the one message it handles, for
// Definition.Step. Exactly one of Event, Timeout, Rejection and Withdrawn
// is set.
type StepInput struct {
	// InstanceID is the instance's correlation key.
	InstanceID string
	// State is the instance's state as the previous step returned it; nil
	// for an instance the message starts.
	State json.RawMessage
	// Compensations are the instance's registered compensations, as the
	// previous step returned them.
	Compensations []StepCommand
	// Now is what Context.Now returns.
	Now time.Time

	// Event is an event as stored; Step decodes it with the saga's
	// registry.
	Event *eventstore.RecordedEvent
	// Timeout is the name of a timeout firing.
	Timeout string
	// Rejection is a command of the instance that a domain rule refused.
	Rejection *Rejection
	// Withdrawn are commands the instance's previous handling withdrew.
	Withdrawn []Withdrawn
}

// StepEffects is what one handling decided.
type StepEffects struct {
	// State is the instance's new state, as JSON.
	State json.RawMessage
	// Status is StatusActive, or how the handling ended the instance
	// (Complete, Fail), with Outcome.
	Status, Outcome string
	// Sends are the commands to send, in order, with the compensations
	// that Compensate sent among them.
	Sends []StepCommand
	// Compensations are the compensations registered after the handling,
	// first registered first.
	Compensations []StepCommand
	// Scheduled are the timeouts the handling scheduled (Context.Schedule),
	// by name; deadlines counted from a send are on their command.
	Scheduled map[string]time.Duration
	// Cancelled names the timeouts the handling cancelled, sorted.
	Cancelled []string
	// Compensated: the handling called Compensate.
	Compensated bool
}

// Withdraws reports whether the handling withdraws the instance's
// commands queued earlier and not yet sent: it compensated or ended the
// instance (see Context.Send).
func (fx StepEffects) Withdraws() bool { return fx.Compensated || fx.Status != StatusActive }

// StepCommand is a command as a step sent or registered it.
type StepCommand struct {
	// Type is the command's type name (command.TypeName) and Payload its
	// JSON, as the relay sends them.
	Type    string
	Payload json.RawMessage
	// Value is the command as the handler passed it.
	Value any
	// Withdrawable: withdrawn if still unsent when its instance ends or
	// compensates; false for Always and for compensations.
	Withdrawable bool
	// Compensation: sent by Compensate.
	Compensation bool
	// Concurrent: sent together with the command queued before it in the
	// same handling (saga.Concurrent).
	Concurrent bool
	// Deadline names the timeout that sending the command starts
	// (saga.Deadline), due DeadlineAfter after the send; "" for none.
	Deadline      string
	DeadlineAfter time.Duration
}

// NewStepCommand describes cmd as Context.Send would queue it with opts:
// what a fixture compares with a step's Sends.
func NewStepCommand(cmd any, opts ...SendOption) (StepCommand, error) {
	sc, err := encodeCommand(cmd)
	if err != nil {
		return StepCommand{}, err
	}
	q := queuedCommand{storedCommand: sc, withdrawable: true}
	for _, o := range opts {
		o(&q)
	}
	return stepCommand(q), nil
}

func stepCommand(q queuedCommand) StepCommand {
	c := StepCommand{Type: q.Type, Payload: q.Payload, Value: q.value, Withdrawable: q.withdrawable, Compensation: q.compensation, Concurrent: q.concurrent}
	if q.deadline != nil {
		c.Deadline, c.DeadlineAfter = q.deadline.name, q.deadline.after
	}
	return c
}
