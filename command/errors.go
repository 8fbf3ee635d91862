package command

import (
	"errors"
	"fmt"

	"github.com/cairn-es/cairn/eventstore"
)

// Sentinel errors. The dispatcher wraps them in the typed errors below, so
// callers test with errors.Is and read details with errors.As.
var (
	// ErrDuplicateHandler: a second handler registered for a command type.
	ErrDuplicateHandler = errors.New("command: handler already registered")
	// ErrUnknownCommand: a command of a type no handler is registered for.
	ErrUnknownCommand = errors.New("command: no handler registered")
	// ErrInvalidCommand: a command that failed validation, or one that cannot
	// be dispatched at all (nil, a bad ID, a payload that does not encode).
	ErrInvalidCommand = errors.New("command: invalid command")
)

var (
	errNilCommand   = errors.New("nil command")
	errBadCommandID = fmt.Errorf("command ID must be 1 to %d printable UTF-8 bytes", eventstore.MaxCommandIDLength)
)

// DuplicateHandlerError reports a second registration for a command type.
type DuplicateHandlerError struct {
	CommandType string
	GoType      string // the Go type of the rejected registration
}

func (e *DuplicateHandlerError) Error() string {
	return fmt.Sprintf("command: handler for %s (%s) already registered", e.CommandType, e.GoType)
}

// Unwrap makes errors.Is(err, ErrDuplicateHandler) true.
func (e *DuplicateHandlerError) Unwrap() error { return ErrDuplicateHandler }

// UnknownCommandError reports a command no handler is registered for.
type UnknownCommandError struct {
	CommandType string
	GoType      string
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("command: no handler registered for %s (%s)", e.CommandType, e.GoType)
}

// Unwrap makes errors.Is(err, ErrUnknownCommand) true.
func (e *UnknownCommandError) Unwrap() error { return ErrUnknownCommand }

// ValidationError reports a command rejected before its handler ran; its
// message leaves out the command ID, so it can be shown to a client. Err is
// the reason: what the command's Validate method returned, or the
// dispatcher's own complaint. errors.Is matches both ErrInvalidCommand and
// Err, and errors.As reaches into Err (for field-level detail).
type ValidationError struct {
	CommandType string
	CommandID   string
	Err         error
}

func (e *ValidationError) Error() string {
	if e.CommandType == "" {
		return "command: invalid command: " + e.Err.Error()
	}
	return "command: invalid " + e.CommandType + ": " + e.Err.Error()
}

// Unwrap returns ErrInvalidCommand and Err.
func (e *ValidationError) Unwrap() []error { return []error{ErrInvalidCommand, e.Err} }

// ErrRejected marks a command refused by a domain rule (an order already
// shipped, too little stock). The HTTP layer answers it with 422; every other
// handler error is the server's problem, not the client's.
var ErrRejected = errors.New("command: rejected")

// RejectedError is a domain refusal; Reason is the domain's own error.
type RejectedError struct{ Reason error }

func (e *RejectedError) Error() string { return e.Reason.Error() }

// Unwrap makes errors.Is match both ErrRejected and the reason.
func (e *RejectedError) Unwrap() []error { return []error{ErrRejected, e.Reason} }

// Reject marks err as a domain refusal; nil stays nil.
func Reject(err error) error {
	if err == nil {
		return nil
	}
	return &RejectedError{Reason: err}
}
