package sagatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/saga"
)

// errScenario marks a scenario that cannot happen (a timeout that is not
// pending, a rejection of a command never sent): a mistake in the test,
// not a failure of the saga.
var errScenario = errors.New("sagatest: impossible scenario")

func impossible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errScenario, fmt.Sprintf(format, args...))
}

// world is one saga instance with its outbox and timeouts, kept in memory
// and changed as the Manager changes their rows.
type world[S any] struct {
	def *saga.Definition[S]
	ctx context.Context
	now time.Time
	id  string // the instance's key; "" until the first event routes to one

	exists        bool
	status        string
	outcome       string
	state         json.RawMessage
	compensations []saga.StepCommand
	outbox        []*entry
	timeouts      map[string]*timeout
	events        int // events handled, for their IDs and versions
}

// entry is a command in the outbox.
type entry struct {
	id     string
	cmd    saga.StepCommand
	status string // queued, sent, rejected, withdrawn
}

const (
	queued    = "queued"
	sent      = "sent"
	rejected  = "rejected"
	withdrawn = "withdrawn"
)

// timeout is a pending timeout: due at due, or, until the command it is
// the deadline of is sent (started false), after that long from the send.
type timeout struct {
	due     time.Time
	started bool
	after   time.Duration
	command string // the entry whose send starts it
}

// handling is what became of one message.
type handling struct {
	ignored string // why the message was not handled; "" when it was
	steps   []saga.StepEffects
	// withdrawn are the commands the handling withdrew.
	withdrawn []*entry
}

// handle runs one message (an event, a Timeout, a Rejected) through the
// instance as the Manager would. An error wrapping errScenario is a
// mistake in the scenario; any other error is the handler's.
func (w *world[S]) handle(msg any) (handling, error) {
	switch m := msg.(type) {
	case timeoutMsg:
		return w.fire(m.name)
	case rejectedMsg:
		return w.reject(m)
	case afterMsg, unsentMsg, relayMsg:
		return handling{}, impossible("%s is for the history (Given), not for When", describe(msg))
	default:
		return w.event(msg)
	}
}

func (w *world[S]) event(e any) (handling, error) {
	enc, err := w.def.Registry().Encode(e)
	if err != nil {
		return handling{}, impossible("%T cannot be stored: %v", e, err)
	}
	key, starts, ok := w.def.Route(e)
	switch {
	case !ok:
		return handling{}, impossible("saga %s does not handle %T (no StartOn or On for it)", w.def.Name(), e)
	case key == "":
		return handling{ignored: fmt.Sprintf("%T has an empty key: it concerns no instance", e)}, nil
	case w.id == "":
		w.id = key
	case key != w.id:
		return handling{}, impossible("%T is for instance %q, and the scenario's instance is %q", e, key, w.id)
	}
	switch {
	case !w.exists && !starts:
		return handling{ignored: fmt.Sprintf("instance %q has not started, and %T does not start one", w.id, e)}, nil
	case w.exists && w.status != saga.StatusActive:
		return handling{ignored: fmt.Sprintf("instance %q has ended (%s: %s)", w.id, w.status, w.outcome)}, nil
	}
	w.events++
	rec := &eventstore.RecordedEvent{
		ID:       uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "sagatest:%s:%d", w.id, w.events)),
		StreamID: "sagatest", Version: int64(w.events), Position: eventstore.Position{Tx: uint64(w.events)},
		Type: enc.Type, SchemaVersion: enc.SchemaVersion, Data: enc.Data, RecordedAt: w.now.UTC(),
	}
	return w.run(saga.StepInput{Event: rec})
}

func (w *world[S]) fire(name string) (handling, error) {
	t, ok := w.timeouts[name]
	switch {
	case !ok || !w.exists:
		return handling{ignored: fmt.Sprintf("timeout %q is not pending: never scheduled, cancelled, fired, or dropped when the instance ended", name)}, nil
	case !t.started:
		return handling{ignored: fmt.Sprintf("timeout %q has not started: it runs from the send of %s, which is still queued", name, w.find(t.command).cmd.Type)}, nil
	}
	delete(w.timeouts, name)
	if t.due.After(w.now) {
		w.now = t.due
	}
	return w.run(saga.StepInput{Timeout: name})
}

func (w *world[S]) reject(m rejectedMsg) (handling, error) {
	want, err := saga.NewStepCommand(m.cmd)
	if err != nil {
		return handling{}, impossible("%s: %v", m, err)
	}
	var e *entry
	for _, c := range w.outbox {
		if c.cmd.Type == want.Type && jsonEqual(c.cmd.Payload, want.Payload) && (c.status == sent || c.status == queued) {
			e = c
			if c.status == sent {
				break
			}
		}
	}
	switch {
	case e == nil:
		return handling{}, impossible("%s: the instance has no such command sent and unanswered", m)
	case e.status == queued:
		return handling{}, impossible("%s: the command has not been sent (it is queued behind an Unsent message)", m)
	}
	e.status = rejected
	if w.status != saga.StatusActive {
		return handling{ignored: fmt.Sprintf("instance %q has ended (%s: %s)", w.id, w.status, w.outcome)}, nil
	}
	return w.run(saga.StepInput{Rejection: &saga.Rejection{
		CommandID: e.id, Command: decodeLike(e.cmd), Type: e.cmd.Type, Reason: m.reason,
	}})
}

// run hands a message to the instance and applies what the handling
// decided; when it withdrew commands from an instance still active, the
// saga's OnWithdrawn handler runs next, as part of the same handling.
func (w *world[S]) run(in saga.StepInput) (handling, error) {
	fx, err := w.step(in)
	if err != nil {
		return handling{}, err
	}
	h := handling{steps: []saga.StepEffects{fx}, withdrawn: w.apply(fx)}
	if len(h.withdrawn) == 0 || fx.Status != saga.StatusActive {
		return h, nil
	}
	in = saga.StepInput{Withdrawn: make([]saga.Withdrawn, len(h.withdrawn))}
	for i, e := range h.withdrawn {
		in.Withdrawn[i] = saga.Withdrawn{CommandID: e.id, Command: decodeLike(e.cmd), Type: e.cmd.Type}
	}
	fx, err = w.step(in)
	if err != nil {
		return handling{}, err
	}
	h.steps = append(h.steps, fx)
	// As in the Manager: what this second handling withdraws (commands
	// the first one queued) goes to no handler.
	h.withdrawn = append(h.withdrawn, w.apply(fx)...)
	return h, nil
}

func (w *world[S]) step(in saga.StepInput) (saga.StepEffects, error) {
	in.InstanceID, in.Now, in.Compensations = w.id, w.now, w.compensations
	if w.exists {
		in.State = w.state
	}
	return w.def.Step(w.ctx, in)
}

// apply records a handling's effects as the Manager persists them, and
// returns the commands it withdrew.
func (w *world[S]) apply(fx saga.StepEffects) []*entry {
	w.exists = true
	w.state, w.status, w.outcome, w.compensations = fx.State, fx.Status, fx.Outcome, fx.Compensations
	var out []*entry
	if fx.Withdraws() {
		for _, e := range w.outbox {
			if e.status != queued || !e.cmd.Withdrawable {
				continue
			}
			e.status = withdrawn
			out = append(out, e)
			for name, t := range w.timeouts {
				if !t.started && t.command == e.id {
					delete(w.timeouts, name)
				}
			}
		}
	}
	queuedNow := make([]*entry, len(fx.Sends))
	for i, c := range fx.Sends {
		queuedNow[i] = &entry{id: fmt.Sprintf("command-%d", len(w.outbox)+1), cmd: c, status: queued}
		w.outbox = append(w.outbox, queuedNow[i])
	}
	if fx.Status != saga.StatusActive {
		clear(w.timeouts) // an ended instance has no timeouts
		return out
	}
	if w.timeouts == nil {
		w.timeouts = map[string]*timeout{}
	}
	for _, name := range fx.Cancelled {
		delete(w.timeouts, name)
	}
	for name, after := range fx.Scheduled {
		w.timeouts[name] = &timeout{due: w.now.Add(after), started: true}
	}
	for _, e := range queuedNow {
		if e.cmd.Deadline != "" {
			w.timeouts[e.cmd.Deadline] = &timeout{after: e.cmd.DeadlineAfter, command: e.id}
		}
	}
	return out
}

// relay sends every queued command, in order, starting the deadlines
// counted from their sends.
func (w *world[S]) relay() {
	for _, e := range w.outbox {
		if e.status != queued {
			continue
		}
		e.status = sent
		for _, t := range w.timeouts {
			if !t.started && t.command == e.id {
				t.started, t.due = true, w.now.Add(t.after)
			}
		}
	}
}

func (w *world[S]) find(id string) *entry {
	for _, e := range w.outbox {
		if e.id == id {
			return e
		}
	}
	return &entry{}
}

// decodeLike decodes a command's payload into the Go type it was sent as,
// as the dispatcher decodes it into its registered type; nil when it does
// not decode (the Manager hands over nil then too).
func decodeLike(c saga.StepCommand) any {
	t := reflect.TypeOf(c.Value)
	if t == nil {
		return nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	p := reflect.New(t)
	if err := json.Unmarshal(c.Payload, p.Interface()); err != nil {
		return nil
	}
	return p.Elem().Interface()
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return slices.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}
