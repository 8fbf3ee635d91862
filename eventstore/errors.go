package eventstore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Stores wrap them in the typed errors below, so callers
// test with errors.Is and read context with errors.As.
var (
	// ErrConcurrency: the stream was not at the expected version.
	ErrConcurrency = errors.New("eventstore: concurrency conflict")
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrInvalidStreamID: empty, too long, or characters outside the allowed set.
	ErrInvalidStreamID = errors.New("eventstore: invalid stream ID")
	// ErrInvalidEvent: an event without a type, with data that is not JSON, and so on.
	ErrInvalidEvent = errors.New("eventstore: invalid event")
	// ErrEventTooLarge: an event's data and metadata exceed the store's limit.
	ErrEventTooLarge = errors.New("eventstore: event too large")
	// ErrInvalidExpectedVersion: Exact with a negative version.
	ErrInvalidExpectedVersion = errors.New("eventstore: invalid expected version")
	// ErrDuplicateEvent: some, not all, of the appended event IDs already
	// exist, or an event ID exists in another stream.
	ErrDuplicateEvent = errors.New("eventstore: duplicate event ID")
	// ErrIdempotencyKeyReused: a command ID was reused with a different payload.
	ErrIdempotencyKeyReused = errors.New("eventstore: command ID reused with a different payload")
	// ErrInvalidPosition: a position token that does not parse.
	ErrInvalidPosition = errors.New("eventstore: invalid position")
	// ErrSubscriptionClosed: Next on a closed subscription.
	ErrSubscriptionClosed = errors.New("eventstore: subscription closed")
)

// ConcurrencyError reports an append whose expected version did not match.
// Actual is the stream's version at the time (0: no stream).
type ConcurrencyError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("eventstore: concurrency conflict on stream %q: expected %s, actual version %d", e.StreamID, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrency }

// StreamNotFoundError reports a read of a stream that has no events.
type StreamNotFoundError struct{ StreamID string }

func (e *StreamNotFoundError) Error() string {
	return fmt.Sprintf("eventstore: stream %q not found", e.StreamID)
}

// Unwrap makes errors.Is(err, ErrStreamNotFound) true.
func (e *StreamNotFoundError) Unwrap() error { return ErrStreamNotFound }

// ValidationError reports bad input to an append. Err is one of
// ErrInvalidStreamID, ErrInvalidEvent, ErrEventTooLarge or
// ErrInvalidExpectedVersion; Index is the offending event's index in the
// batch, or -1 when the problem is not one event's.
type ValidationError struct {
	Err      error
	StreamID string
	Index    int
	Reason   string
}

func (e *ValidationError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("%v: stream %q, event %d: %s", e.Err, e.StreamID, e.Index, e.Reason)
	}
	return fmt.Sprintf("%v: stream %q: %s", e.Err, e.StreamID, e.Reason)
}

// Unwrap returns the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }

// DuplicateEventError reports event IDs that already exist where the append
// cannot be treated as a retry of an earlier one.
type DuplicateEventError struct {
	StreamID string
	Reason   string
}

func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("eventstore: duplicate event ID on stream %q: %s", e.StreamID, e.Reason)
}

// Unwrap makes errors.Is(err, ErrDuplicateEvent) true.
func (e *DuplicateEventError) Unwrap() error { return ErrDuplicateEvent }

// IdempotencyKeyReusedError reports a command ID handled before with a
// different payload.
type IdempotencyKeyReusedError struct{ CommandID string }

func (e *IdempotencyKeyReusedError) Error() string {
	return fmt.Sprintf("eventstore: command ID %q was already used with a different payload", e.CommandID)
}

// Unwrap makes errors.Is(err, ErrIdempotencyKeyReused) true.
func (e *IdempotencyKeyReusedError) Unwrap() error { return ErrIdempotencyKeyReused }
