package sagatest

import (
	"fmt"
	"time"
)

// Message is an item of a scenario's history, or its When, that is not an
// event: a timeout firing, a rejection, the clock moving on, a message
// whose commands stay unsent, the relay catching up. Events are given as
// themselves.
type Message interface {
	fmt.Stringer
	message()
}

// Timeout is the timeout called name firing. It must be pending: scheduled
// (Context.Schedule), or started by the send of a command it is the
// Deadline of, and neither cancelled, replaced, fired nor dropped by the
// end of the instance. The clock moves to its due time if that is later.
func Timeout(name string) Message { return timeoutMsg{name: name} }

// Rejected is cmd, a command the instance sent, refused by a domain rule
// with reason (Rejection.Reason). The command must have been sent: queued
// by a history message whose commands the relay sent (see Unsent).
func Rejected(cmd any, reason string) Message { return rejectedMsg{cmd: cmd, reason: reason} }

// After moves the clock on by d, in the history: the messages after it are
// handled d later.
func After(d time.Duration) Message { return afterMsg{d: d} }

// Unsent wraps a history message (an event, a Timeout, a Rejected) whose
// handling's commands the relay has not sent when the next message is
// handled: a message that compensates or ends the instance then withdraws
// them, and the deadlines they would start do not run. The relay sends in
// order, so they stay unsent until Relay, or until a message not wrapped
// in Unsent has been handled.
func Unsent(msg any) Message { return unsentMsg{msg: msg} }

// Relay is the relay catching up, in the history: it sends, at the
// clock's time, the commands left queued by messages wrapped in Unsent.
func Relay() Message { return relayMsg{} }

type timeoutMsg struct{ name string }

func (m timeoutMsg) String() string { return fmt.Sprintf("Timeout(%q)", m.name) }
func (timeoutMsg) message()         {}

type rejectedMsg struct {
	cmd    any
	reason string
}

func (m rejectedMsg) String() string { return fmt.Sprintf("Rejected(%T, %q)", m.cmd, m.reason) }
func (rejectedMsg) message()         {}

type afterMsg struct{ d time.Duration }

func (m afterMsg) String() string { return fmt.Sprintf("After(%s)", m.d) }
func (afterMsg) message()         {}

type unsentMsg struct{ msg any }

func (m unsentMsg) String() string { return fmt.Sprintf("Unsent(%s)", describe(m.msg)) }
func (unsentMsg) message()         {}

type relayMsg struct{}

func (relayMsg) String() string { return "Relay()" }
func (relayMsg) message()       {}

// describe names a history item in failure reports.
func describe(item any) string {
	if m, ok := item.(Message); ok {
		return m.String()
	}
	return fmt.Sprintf("%T", item)
}
