package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"time"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,34}$`)

// Definition describes one saga whose instances keep state S, which must
// survive a JSON round trip.
type Definition[S any] struct {
	name       string
	registry   *eventstore.Registry
	routes     map[string]route[S] // by event type name
	timeouts   map[string]func(*Context[S]) error
	onRejected func(*Context[S], Rejection) error
	onWithdraw func(*Context[S], []Withdrawn) error
}

type route[S any] struct {
	starts bool
	key    func(event any) string
	handle func(c *Context[S], event any) error
}

// New returns an empty saga definition. name identifies the saga in the
// database and in its projection ("saga_" + name): [a-z][a-z0-9_]{0,34}.
// The events it reacts to must be registered in registry first.
func New[S any](name string, registry *eventstore.Registry) *Definition[S] {
	if !validName.MatchString(name) {
		panic(fmt.Sprintf("saga: invalid name %q: want [a-z][a-z0-9_]{0,34}", name))
	}
	return &Definition[S]{
		name: name, registry: registry,
		routes:   map[string]route[S]{},
		timeouts: map[string]func(*Context[S]) error{},
	}
}

// Name returns the saga's name.
func (d *Definition[S]) Name() string { return d.name }

// StartOn makes events of type E start an instance (or continue the
// running one with the same key). key returns the instance's correlation
// key; an empty key means the event concerns no instance.
func StartOn[E, S any](d *Definition[S], key func(E) string, fn func(*Context[S], E) error) {
	addRoute(d, true, key, fn)
}

// On routes events of type E to running instances; an event whose instance
// does not exist or has ended is ignored.
func On[E, S any](d *Definition[S], key func(E) string, fn func(*Context[S], E) error) {
	addRoute(d, false, key, fn)
}

func addRoute[E, S any](d *Definition[S], starts bool, key func(E) string, fn func(*Context[S], E) error) {
	names, ok := eventstore.StoredNamesOf[E](d.registry)
	if !ok {
		panic(fmt.Sprintf("saga %s: event type %s is not registered", d.name, reflect.TypeFor[E]()))
	}
	if _, dup := d.routes[names[0]]; dup {
		panic(fmt.Sprintf("saga %s: event type %s already has a handler", d.name, names[0]))
	}
	r := route[S]{
		starts: starts,
		key:    func(e any) string { return key(e.(E)) },
		handle: func(c *Context[S], e any) error { return fn(c, e.(E)) },
	}
	for _, n := range names { // its aliases too: old events decode to E
		d.routes[n] = r
	}
}

// OnTimeout handles the timeout called name, scheduled with
// Context.Schedule.
func OnTimeout[S any](d *Definition[S], name string, fn func(*Context[S]) error) {
	if _, dup := d.timeouts[name]; dup {
		panic(fmt.Sprintf("saga %s: timeout %q already has a handler", d.name, name))
	}
	d.timeouts[name] = fn
}

// OnRejected handles a command of the saga that the dispatcher refused by a
// domain rule. Without it a rejection runs the registered compensations and
// fails the instance.
func OnRejected[S any](d *Definition[S], fn func(*Context[S], Rejection) error) {
	d.onRejected = fn
}

// OnWithdrawn handles the commands an instance had queued and that were
// withdrawn unsent because it compensated (see Context.Send): a saga that
// counts answers to what it sent learns here which will never come. It
// runs in the same transaction, right after the handling that withdrew
// them, for an instance still active.
func OnWithdrawn[S any](d *Definition[S], fn func(*Context[S], []Withdrawn) error) {
	d.onWithdraw = fn
}

// Withdrawn is a command withdrawn before it was sent.
type Withdrawn struct {
	CommandID string
	Command   any // the command, as decoded by the dispatcher
	Type      string
}

// Rejection is a command the saga sent and a domain rule refused.
type Rejection struct {
	CommandID string
	Command   any // the command, as decoded by the dispatcher
	Type      string
	Reason    string // the rejection's message
}

// Context is what a saga handler works with: the instance's state, to
// change in place, and the effects it decides (commands, timeouts, the
// end). Effects take place only if the handler returns nil.
type Context[S any] struct {
	// State is the instance's state; the handler changes it in place.
	State S

	ctx        context.Context
	instanceID string
	event      *eventstore.RecordedEvent
	now        time.Time
	fx         *effects
	err        error
}

// Ctx returns the context of the handling.
func (c *Context[S]) Ctx() context.Context { return c.ctx }

// InstanceID returns the instance's correlation key.
func (c *Context[S]) InstanceID() string { return c.instanceID }

// Event returns the event being handled, when the message is an event.
func (c *Context[S]) Event() (eventstore.RecordedEvent, bool) {
	if c.event == nil {
		return eventstore.RecordedEvent{}, false
	}
	return *c.event, true
}

// Now is the time of the handling (the database's clock for timeouts, the
// event's recording time for events), for decisions that depend on it.
func (c *Context[S]) Now() time.Time { return c.now }

// Send queues cmd, a command registered with the dispatcher, to be sent
// once the handling commits. A command that does not encode fails the
// handling.
//
// An instance's commands are sent one at a time, in the order queued,
// except that a command queued with Concurrent goes out together with the
// one queued just before it (see Concurrent). When
// the instance later ends (Complete, Fail) or compensates, the commands it
// queued earlier that have not been sent by then are withdrawn: a step
// decided before the end is not taken after it. Always keeps a command
// from being withdrawn; compensations never are.
func (c *Context[S]) Send(cmd any, opts ...SendOption) {
	sc, err := encodeCommand(cmd)
	if err != nil {
		c.fail(err)
		return
	}
	q := queuedCommand{storedCommand: sc, withdrawable: true}
	for _, o := range opts {
		o(&q)
	}
	if q.deadline != nil {
		c.dropTimer(q.deadline.name)
		c.fx.deadlines = append(c.fx.deadlines, q.deadline.name)
	}
	c.fx.sends = append(c.fx.sends, q)
}

// SendOption changes how Send queues a command.
type SendOption func(*queuedCommand)

// Always keeps the command from being withdrawn when its instance ends or
// compensates before it is sent: for a command that must go out whatever
// happens next (a notification of the end, say).
func Always() SendOption {
	return func(q *queuedCommand) { q.withdrawable = false }
}

// Concurrent sends the command together with the command queued just
// before it in the same handling, instead of after it: for steps that do
// not depend on each other, such as reservations of different products, or
// a charge and a change of the order's status. The first command and the
// run of Concurrent commands that follow it form a group: its commands are
// sent at once, and the instance's later commands (those queued after the
// group, or by later handlings) wait until the whole group is done. The
// first command a handling queues has no predecessor in it, so Concurrent
// changes nothing there. Compensations are never concurrent: they are
// undone one at a time, the last registered first.
func Concurrent() SendOption {
	return func(q *queuedCommand) { q.concurrent = true }
}

// Deadline schedules the timeout called name to fire after d counted from
// when the command is sent, not from now: time the command spends queued
// behind others (a burst, an outage) does not count against the service it
// is sent to, while a send that hangs does. The clock starts when the relay
// takes the command to send it, and starts again if a failed send is
// retried; a command withdrawn never starts it. It replaces a timeout of
// that name scheduled before. The saga needs an OnTimeout handler for name.
func Deadline(name string, d time.Duration) SendOption {
	return func(q *queuedCommand) { q.deadline = &deadline{name: name, after: d} }
}

// AddCompensation registers cmd as the compensation of a step that has
// completed: Compensate sends it, after the compensations registered later.
func (c *Context[S]) AddCompensation(cmd any) {
	sc, err := encodeCommand(cmd)
	if err != nil {
		c.fail(err)
		return
	}
	c.fx.compensations = append(c.fx.compensations, sc)
}

// Compensate sends every registered compensation, the last registered
// first, and clears them. Commands the instance queued before and that
// have not been sent are withdrawn (see Send).
func (c *Context[S]) Compensate() {
	for i := len(c.fx.compensations) - 1; i >= 0; i-- {
		c.fx.sends = append(c.fx.sends, queuedCommand{storedCommand: c.fx.compensations[i], compensation: true})
	}
	c.fx.compensations = c.fx.compensations[:0]
	c.fx.withdraw = true
}

// Compensations returns how many compensations are registered.
func (c *Context[S]) Compensations() int { return len(c.fx.compensations) }

// Schedule sets the timeout called name to fire after d (replacing one of
// that name). The saga needs an OnTimeout handler for it.
func (c *Context[S]) Schedule(name string, after time.Duration) {
	c.dropTimer(name)
	if c.fx.schedule == nil {
		c.fx.schedule = map[string]time.Duration{}
	}
	c.fx.schedule[name] = after
}

// CancelTimeout cancels the timeout called name, if it is pending.
func (c *Context[S]) CancelTimeout(name string) {
	c.dropTimer(name)
	if c.fx.cancel == nil {
		c.fx.cancel = map[string]bool{}
	}
	c.fx.cancel[name] = true
}

// dropTimer forgets what this handling decided so far about the timeout
// called name: the last decision about a name is the one that counts.
func (c *Context[S]) dropTimer(name string) {
	delete(c.fx.schedule, name)
	delete(c.fx.cancel, name)
	for i := range c.fx.sends {
		if d := c.fx.sends[i].deadline; d != nil && d.name == name {
			c.fx.sends[i].deadline = nil
		}
	}
	c.fx.deadlines = slices.DeleteFunc(c.fx.deadlines, func(n string) bool { return n == name })
}

// Complete ends the instance successfully with outcome (a short word for
// saga list: "completed", "cancelled"). Its pending timeouts are dropped;
// the commands this handling sends still go out, those queued earlier and
// not sent yet are withdrawn (see Send). Later events for it are ignored.
func (c *Context[S]) Complete(outcome string) {
	c.fx.status, c.fx.outcome = StatusCompleted, outcome
}

// Fail ends the instance as failed, with reason as its outcome, as
// Complete does.
func (c *Context[S]) Fail(reason string) {
	c.fx.status, c.fx.outcome = StatusFailed, reason
}

func (c *Context[S]) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Instance statuses.
const (
	StatusActive    = "active"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// storedCommand is a command as the outbox and the compensation stack keep
// it.
type storedCommand struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	// value is the command as the handler passed it, kept in memory only
	// (json skips it): Step hands it to test fixtures.
	value any
}

func encodeCommand(cmd any) (storedCommand, error) {
	name := command.TypeName(cmd)
	if name == "" {
		return storedCommand{}, fmt.Errorf("saga: cannot send a nil command")
	}
	switch cmd.(type) {
	case command.Envelope, *command.Envelope:
		return storedCommand{}, fmt.Errorf("saga: send the command itself, not an envelope: the saga sets its IDs")
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return storedCommand{}, fmt.Errorf("saga: encoding %s: %w", name, err)
	}
	return storedCommand{Type: name, Payload: payload, value: cmd}, nil
}

// queuedCommand is a command a handling decided to send.
type queuedCommand struct {
	storedCommand
	// withdrawable: withdrawn if still unsent when its instance ends or
	// compensates (see Send).
	withdrawable bool
	// concurrent: sent together with the command queued before it in the
	// same handling (see Concurrent).
	concurrent bool
	deadline   *deadline
	// compensation: sent by Compensate (for Step's report only).
	compensation bool
}

// deadline is a timeout counted from when its command is sent.
type deadline struct {
	name  string
	after time.Duration
}

// effects is what one handling decided, in a form the manager persists
// without knowing S.
type effects struct {
	state         json.RawMessage
	status        string
	outcome       string
	sends         []queuedCommand
	compensations []storedCommand
	schedule      map[string]time.Duration
	cancel        map[string]bool
	// deadlines names the timeouts that a command in sends starts.
	deadlines []string
	// withdraw: the handling compensated, so the unsent commands queued
	// before it are withdrawn (as they are when the instance ends).
	withdraw bool
}

// withdraws reports whether the handling withdraws the instance's unsent
// commands queued before it.
func (fx *effects) withdraws() bool { return fx.withdraw || fx.status != StatusActive }

// message is one thing an instance handles: an event, a timeout or a
// rejection.
type message struct {
	event     *eventstore.RecordedEvent
	decoded   any
	timeout   string
	rejection *Rejection
	withdrawn []Withdrawn
	now       time.Time
}

// instance is a saga instance as loaded from the database.
type instance struct {
	id            string
	exists        bool
	status        string
	state         json.RawMessage
	compensations []storedCommand
	correlationID string
}

// runner is a Definition with its state type erased, for the manager.
type runner interface {
	sagaName() string
	eventTypes() []string
	// routeOf returns the instance key of an event and whether the event
	// starts instances; ok is false when the saga does not handle it.
	routeOf(typeName string, event any) (key string, starts, ok bool)
	hasTimeout(name string) bool
	handlesWithdrawn() bool
	run(ctx context.Context, inst *instance, msg message) (*effects, error)
}

func (d *Definition[S]) sagaName() string { return d.name }

func (d *Definition[S]) eventTypes() []string {
	names := make([]string, 0, len(d.routes))
	for n := range d.routes {
		names = append(names, n)
	}
	return names
}

func (d *Definition[S]) routeOf(typeName string, event any) (string, bool, bool) {
	r, ok := d.routes[typeName]
	if !ok {
		return "", false, false
	}
	return r.key(event), r.starts, true
}

func (d *Definition[S]) handlesWithdrawn() bool { return d.onWithdraw != nil }

func (d *Definition[S]) hasTimeout(name string) bool {
	_, ok := d.timeouts[name]
	return ok
}

// run decodes the instance's state, calls the handler for msg and returns
// its effects.
func (d *Definition[S]) run(ctx context.Context, inst *instance, msg message) (fx *effects, err error) {
	// Handlers are user code running on the relay's and the timer's
	// goroutines too: a panic is a failure of this message, not of the
	// process.
	defer func() {
		if p := recover(); p != nil {
			fx, err = nil, fmt.Errorf("saga %s: instance %s: handler panicked: %v", d.name, inst.id, p)
		}
	}()
	c := &Context[S]{ctx: ctx, instanceID: inst.id, event: msg.event, now: msg.now,
		fx: &effects{status: StatusActive, compensations: append([]storedCommand(nil), inst.compensations...)}}
	if inst.exists {
		if err := json.Unmarshal(inst.state, &c.State); err != nil {
			return nil, fmt.Errorf("saga %s: instance %s: decoding its state: %w", d.name, inst.id, err)
		}
	}
	switch {
	case msg.event != nil:
		err = d.routes[msg.event.Type].handle(c, msg.decoded)
	case msg.withdrawn != nil:
		if d.onWithdraw != nil {
			err = d.onWithdraw(c, msg.withdrawn)
		}
	case msg.rejection != nil:
		if d.onRejected == nil {
			c.Compensate()
			c.Fail(fmt.Sprintf("%s rejected: %s", msg.rejection.Type, msg.rejection.Reason))
		} else {
			err = d.onRejected(c, *msg.rejection)
		}
	default:
		fn, ok := d.timeouts[msg.timeout]
		if !ok {
			return nil, fmt.Errorf("saga %s: no handler for timeout %q", d.name, msg.timeout)
		}
		err = fn(c)
	}
	if err == nil {
		err = c.err
	}
	if err != nil {
		return nil, err
	}
	for _, name := range append(slices.Collect(maps.Keys(c.fx.schedule)), c.fx.deadlines...) {
		if !d.hasTimeout(name) {
			return nil, fmt.Errorf("saga %s: timeout %q scheduled without an OnTimeout handler", d.name, name)
		}
	}
	state, err := json.Marshal(c.State)
	if err != nil {
		return nil, fmt.Errorf("saga %s: instance %s: encoding its state: %w", d.name, inst.id, err)
	}
	c.fx.state = state
	return c.fx, nil
}
