// Package sagatest tests a saga's logic without a database or real time,
// as given/when/then scenarios: given the messages an instance has
// handled (its history), when it handles this event, timeout or
// rejection, then it sends these commands, withdraws these, has these
// compensations registered, schedules or cancels these timeouts and ends
// (or not) with this outcome.
//
//	sagatest.For(t, def).
//		Given(OrderPlaced{OrderID: "o-1"}, StockReserved{OrderID: "o-1"}).
//		When(PaymentFailed{OrderID: "o-1"}).
//		Then(sagatest.Expect{
//			Commands: []sagatest.Command{
//				sagatest.Compensation(ReleaseStock{OrderID: "o-1"}),
//				sagatest.Send(CancelOrder{OrderID: "o-1"}, saga.Always()),
//			},
//			Status: saga.StatusCompleted, Outcome: "cancelled",
//		})
//
// The handlers run through the same code as under a saga.Manager
// (saga.Definition.Step), and the fixture applies what they decide as the
// Manager does, in memory: events go through the registry's JSON encoding
// and the state through JSON between messages; an event for an instance
// that has not started, or has ended, is ignored; commands queue in an
// outbox, and one that is still unsent when the instance compensates or
// ends is withdrawn (unless sent with saga.Always) and handed to the
// saga's OnWithdrawn handler if the instance is still active; a timeout
// fires only while pending, and a saga.Deadline starts when its command
// is sent.
//
// Time is a clock the scenario moves: it starts at WithStart's time, After
// moves it on, and a Timeout moves it to the timeout's due time. Handlers
// read it as Context.Now. Nothing sleeps.
//
// The relay is the scenario's to control: it sends every command a
// history message queued before the next message is handled, unless the
// message is wrapped in Unsent; Relay then sends them, at the clock's
// time. The When message's own commands are never sent: they are what
// Then checks.
package sagatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cairn-es/cairn/saga"
)

// Scenario is one given/when/then test of a saga instance. Build it with
// For; finish it with Then, ThenIgnored or ThenError, which run it.
type Scenario[S any] struct {
	t     testing.TB
	def   *saga.Definition[S]
	id    string
	start time.Time
	given []any
	when  any
}

// For starts a scenario for the saga that def defines. The scenario
// follows one instance: the one WithID names, or else the one the first
// event is routed to.
func For[S any](t testing.TB, def *saga.Definition[S]) *Scenario[S] {
	return &Scenario[S]{t: t, def: def, start: time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)}
}

// WithID sets the key of the instance under test. Without it, the first
// event's key is; an event routed to another instance fails the scenario.
func (s *Scenario[S]) WithID(id string) *Scenario[S] {
	s.id = id
	return s
}

// WithStart sets the clock's time when the first message is handled
// (2025-01-01 00:00 UTC otherwise).
func (s *Scenario[S]) WithStart(t time.Time) *Scenario[S] {
	s.start = t
	return s
}

// Given adds to the instance's history: events, and the Messages Timeout,
// Rejected, After, Unsent and Relay, handled in order before When. An
// event the Manager would ignore (the instance has ended, say) is ignored.
// A history that cannot happen (a timeout that is not pending, a
// rejection of a command never sent, an event for another instance)
// fails the scenario, as does a handler's error.
func (s *Scenario[S]) Given(history ...any) *Scenario[S] {
	s.given = append(s.given, history...)
	return s
}

// When sets the message under test: an event, a Timeout or a Rejected.
func (s *Scenario[S]) When(msg any) *Scenario[S] {
	s.when = msg
	return s
}

// Expect is what Then checks of the handling of the When message,
// strictly: a field left empty expects nothing (no commands, no
// compensations registered, ...), and Status "" means the instance is
// still active. State alone is checked only when set.
type Expect struct {
	// Commands are the commands the handling sent, in order: sent with
	// Context.Send (see Send) or by Context.Compensate (see Compensation).
	// They include those of the saga's OnWithdrawn handler, which runs
	// right after a handling that withdrew commands.
	Commands []Command
	// Withdrawn are the commands queued earlier, and not yet sent, that
	// the handling withdrew, in the order they were queued.
	Withdrawn []any
	// Compensations are the compensations registered after the handling,
	// first registered first.
	Compensations []any
	// Scheduled are the timeouts the handling scheduled (Context.Schedule),
	// by name. A saga.Deadline is on its command instead.
	Scheduled map[string]time.Duration
	// Cancelled names the timeouts the handling cancelled
	// (Context.CancelTimeout), in any order.
	Cancelled []string
	// Status is the instance's status after the handling:
	// saga.StatusActive (or ""), saga.StatusCompleted or
	// saga.StatusFailed, with Outcome (Complete's outcome, Fail's reason).
	Status, Outcome string
	// State, when not nil, is the instance's state after the handling: an
	// S.
	State any
}

// Command is a command Then expects the handling to have sent: made by
// Send or Compensation.
type Command struct {
	cmd          any
	opts         []saga.SendOption
	compensation bool
}

// Send expects cmd sent with Context.Send and the options opts
// (saga.Always, saga.Deadline), which must match.
func Send(cmd any, opts ...saga.SendOption) Command { return Command{cmd: cmd, opts: opts} }

// Compensation expects cmd sent by Context.Compensate: a compensation
// registered earlier.
func Compensation(cmd any) Command { return Command{cmd: cmd, compensation: true} }

// Then runs the scenario and checks that the When message was handled
// as want says. It returns the instance's state after the handling, for
// further checks, or the zero S when the scenario could not run.
func (s *Scenario[S]) Then(want Expect) S {
	s.t.Helper()
	var state S
	r, ok := s.run()
	switch {
	case !ok:
		return state
	case r.err != nil:
		s.t.Errorf("sagatest: %s: expected a handling, got the handler's error: %v", describe(s.when), r.err)
		return state
	case r.h.ignored != "":
		s.t.Errorf("sagatest: %s: expected a handling, but the message was ignored: %s", describe(s.when), r.h.ignored)
		return state
	}
	if err := json.Unmarshal(r.w.state, &state); err != nil {
		s.t.Errorf("sagatest: decoding the state: %v", err)
	}
	expected, err := expectedReport(want)
	if err != nil {
		s.t.Errorf("sagatest: Expect: %v", err)
		return state
	}
	if got := actualReport(r); !reflect.DeepEqual(expected, got) {
		s.t.Errorf("sagatest: the handling of %s differs from the expected one (-expected +actual):\n%s", describe(s.when), diff(expected.lines(), got.lines()))
	}
	if want.State != nil {
		assert.Equal(s.t, want.State, state, "sagatest: the state after %s differs from the expected one", describe(s.when))
	}
	return state
}

// ThenIgnored runs the scenario and checks that the When message was not
// handled: an event for an instance that has not started or has ended, a
// timeout that is not pending (or whose deadline has not started), a
// rejection that came after the instance ended. It returns the instance's
// state.
func (s *Scenario[S]) ThenIgnored() S {
	s.t.Helper()
	var state S
	r, ok := s.run()
	switch {
	case !ok:
		return state
	case r.err != nil:
		s.t.Errorf("sagatest: %s: expected it ignored, got the handler's error: %v", describe(s.when), r.err)
	case r.h.ignored == "":
		s.t.Errorf("sagatest: %s: expected it ignored, but it was handled:\n%s", describe(s.when), actualReport(r))
	}
	if r.w.state != nil {
		if err := json.Unmarshal(r.w.state, &state); err != nil {
			s.t.Errorf("sagatest: decoding the state: %v", err)
		}
	}
	return state
}

// ThenError runs the scenario and checks that the handling of the When
// message failed with an error matching target (errors.Is; nil accepts
// any error), such as a handler's own error or a command that does not
// encode. Under a Manager, such a handling leaves nothing behind and is
// tried again.
func (s *Scenario[S]) ThenError(target error) {
	s.t.Helper()
	r, ok := s.run()
	switch {
	case !ok:
	case r.err == nil && r.h.ignored != "":
		s.t.Errorf("sagatest: %s: expected an error, but the message was ignored: %s", describe(s.when), r.h.ignored)
	case r.err == nil:
		s.t.Errorf("sagatest: %s: expected an error, got a handling:\n%s", describe(s.when), actualReport(r))
	case target != nil && !errors.Is(r.err, target):
		s.t.Errorf("sagatest: %s: expected an error matching %v (errors.Is), got: %v", describe(s.when), target, r.err)
	}
}

// result is a scenario's run: the world after it, the When's handling or
// the handler's error.
type result[S any] struct {
	w   *world[S]
	h   handling
	err error
}

// run plays the history and handles the When message. ok is false when
// the scenario itself is broken (the failure is reported).
func (s *Scenario[S]) run() (r result[S], ok bool) {
	s.t.Helper()
	if s.when == nil {
		s.t.Errorf("sagatest: scenario without When")
		return r, false
	}
	r.w = &world[S]{def: s.def, ctx: context.Background(), now: s.start, id: s.id}
	for i, item := range s.given {
		if err := s.replay(r.w, item); err != nil {
			s.t.Errorf("sagatest: Given item %d, %s: %v", i, describe(item), err)
			return r, false
		}
	}
	r.h, r.err = r.w.handle(s.when)
	if errors.Is(r.err, errScenario) {
		s.t.Errorf("sagatest: When %s: %v", describe(s.when), r.err)
		return r, false
	}
	return r, true
}

// replay handles one history item; the relay then sends what is queued,
// unless the item is wrapped in Unsent.
func (s *Scenario[S]) replay(w *world[S], item any) error {
	switch m := item.(type) {
	case afterMsg:
		if m.d < 0 {
			return impossible("the clock does not go back")
		}
		w.now = w.now.Add(m.d)
		return nil
	case relayMsg:
		w.relay()
		return nil
	case unsentMsg:
		if _, nested := m.msg.(Message); nested && !isHandled(m.msg) {
			return impossible("Unsent wraps an event, a Timeout or a Rejected")
		}
		_, err := s.handleGiven(w, m.msg)
		return err
	}
	if _, err := s.handleGiven(w, item); err != nil {
		return err
	}
	w.relay()
	return nil
}

func isHandled(m any) bool {
	switch m.(type) {
	case timeoutMsg, rejectedMsg:
		return true
	}
	return false
}

// handleGiven handles a history message: a timeout that is not pending
// cannot be part of a history, since it would never fire.
func (s *Scenario[S]) handleGiven(w *world[S], msg any) (handling, error) {
	h, err := w.handle(msg)
	if err != nil {
		return h, err
	}
	if _, isTimeout := msg.(timeoutMsg); isTimeout && h.ignored != "" {
		return h, impossible("%s", h.ignored)
	}
	return h, nil
}

// report is a handling in comparable form: commands as their type name
// and JSON, which is what the relay sends.
type report struct {
	Commands      []string
	Withdrawn     []string
	Compensations []string
	Scheduled     map[string]time.Duration
	Cancelled     []string
	Status        string
	Outcome       string
}

// lines shows the report one fact a line.
func (r report) lines() []string {
	out := []string{strings.TrimSpace("status: " + r.Status + " " + r.Outcome)}
	for _, l := range []struct {
		name  string
		items []string
	}{{"send", r.Commands}, {"withdrawn", r.Withdrawn}, {"compensation registered", r.Compensations}, {"cancelled", r.Cancelled}} {
		for _, it := range l.items {
			out = append(out, l.name+": "+it)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Scheduled)) {
		out = append(out, fmt.Sprintf("scheduled: %s in %s", name, r.Scheduled[name]))
	}
	return out
}

func (r report) String() string { return "\t" + strings.Join(r.lines(), "\n\t") }

// diff shows both sides, marking the lines that only one has; lines that
// both have in another order are left unmarked, and said to differ in
// order.
func diff(want, got []string) string {
	var b strings.Builder
	marked := false
	side := func(lines, other []string, mark string) {
		left := map[string]int{}
		for _, l := range other {
			left[l]++
		}
		for _, l := range lines {
			if left[l] > 0 {
				left[l]--
				fmt.Fprintf(&b, "\t  %s\n", l)
				continue
			}
			marked = true
			fmt.Fprintf(&b, "\t%s %s\n", mark, l)
		}
	}
	b.WriteString("expected:\n")
	side(want, got, "-")
	b.WriteString("actual:\n")
	side(got, want, "+")
	if !marked {
		b.WriteString("(the same lines, in another order)\n")
	}
	return b.String()
}

func actualReport[S any](r result[S]) report {
	out := report{Status: r.w.status, Outcome: r.w.outcome}
	for _, fx := range r.h.steps {
		for _, c := range fx.Sends {
			out.Commands = append(out.Commands, formatSend(c))
		}
		// The last decision about a timeout's name is the one that counts.
		for _, name := range fx.Cancelled {
			delete(out.Scheduled, name)
			out.Cancelled = append(out.Cancelled, name)
		}
		for name, after := range fx.Scheduled {
			if out.Scheduled == nil {
				out.Scheduled = map[string]time.Duration{}
			}
			out.Scheduled[name] = after
			out.Cancelled = slices.DeleteFunc(out.Cancelled, func(n string) bool { return n == name })
		}
	}
	for _, e := range r.h.withdrawn {
		out.Withdrawn = append(out.Withdrawn, format(e.cmd))
	}
	for _, c := range r.w.compensations {
		out.Compensations = append(out.Compensations, format(c))
	}
	slices.Sort(out.Cancelled)
	out.Cancelled = slices.Compact(out.Cancelled)
	return out
}

func expectedReport(want Expect) (report, error) {
	out := report{Status: want.Status, Outcome: want.Outcome, Scheduled: want.Scheduled}
	if out.Status == "" {
		out.Status = saga.StatusActive
	}
	if len(out.Scheduled) == 0 {
		out.Scheduled = nil
	}
	for _, c := range want.Commands {
		sc, err := saga.NewStepCommand(c.cmd, c.opts...)
		if err != nil {
			return report{}, err
		}
		if c.compensation {
			sc.Compensation, sc.Withdrawable = true, false
		}
		out.Commands = append(out.Commands, formatSend(sc))
	}
	for _, list := range []struct {
		from []any
		to   *[]string
	}{{want.Withdrawn, &out.Withdrawn}, {want.Compensations, &out.Compensations}} {
		for _, cmd := range list.from {
			sc, err := saga.NewStepCommand(cmd)
			if err != nil {
				return report{}, err
			}
			*list.to = append(*list.to, format(sc))
		}
	}
	if len(want.Cancelled) > 0 {
		out.Cancelled = slices.Compact(slices.Sorted(slices.Values(want.Cancelled)))
	}
	return out, nil
}

// format shows a command as the relay sends it: its type name and JSON.
func format(c saga.StepCommand) string { return c.Type + " " + string(c.Payload) }

// formatSend shows a command sent, with how it was sent.
func formatSend(c saga.StepCommand) string {
	s := format(c)
	switch {
	case c.Compensation:
		s = "compensation " + s
	case !c.Withdrawable:
		s += " always"
	}
	if c.Concurrent {
		s += " concurrent"
	}
	if c.Deadline != "" {
		s += fmt.Sprintf(" deadline %s %s", c.Deadline, c.DeadlineAfter)
	}
	return s
}
