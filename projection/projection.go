// Package projection turns the event log into PostgreSQL read models.
//
// A Projector declares a name, a version, the event types it handles and
// how it applies an event inside a transaction it is given. A Manager runs
// registered projectors (the projection daemon) and administers them:
// status, pause and resume, reset, rebuilds, dead letters, and
// read-your-writes waits.
//
// Each projection's read model lives in a PostgreSQL schema of its own,
// named after the projection, and the projection's checkpoint lives in that
// schema too (table cairn_checkpoint), written in the same transaction as
// the rows it accounts for: a crash at any point neither applies an event
// twice nor skips one. Projectors write unqualified table names; the manager
// sets search_path for every transaction it gives them. That is what lets a
// rebuild build a complete copy in a shadow schema and swap it in by
// renaming schemas in one transaction, checkpoint included.
package projection

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
)

// Projector builds one read model.
type Projector interface {
	// Name identifies the projection and names its read-model schema:
	// [a-z_][a-z0-9_]{0,40}.
	Name() string
	// Version of the read model's shape and logic. Changing it makes the
	// manager rebuild the model from the log, blue/green.
	Version() int
	// EventTypes the projector handles; reads are filtered on the server.
	// Empty means every event.
	EventTypes() []string
	// Setup creates the read model's tables (unqualified names) in a fresh
	// schema. It runs once per build of the model, inside the transaction
	// that creates the schema: a changed shape is a new Version.
	Setup(ctx context.Context, tx pgx.Tx) error
	// Apply applies one event to the read model in tx. Returning an error
	// (or panicking) is a failure: the transaction is rolled back and the
	// event retried, then handled by the projection's failure policy.
	// tx is the real transaction; a projector that wants its statements
	// pipelined is a QueueProjector.
	Apply(ctx context.Context, tx pgx.Tx, event eventstore.RecordedEvent) error
}

// QueueProjector is a Projector whose writes may be pipelined: the manager
// calls ApplyQueued instead of Apply, with a Queue that pipelines the
// projector's statements when several events are applied in one
// transaction (see Queue). Its Apply should do the same as ApplyQueued
// over Direct(tx). Handlers is one, for the handlers registered with
// OnQueued.
type QueueProjector interface {
	Projector
	ApplyQueued(ctx context.Context, q *Queue, e eventstore.RecordedEvent) error
}

// BatchProjector is a Projector that can apply many events at once (with
// COPY or multi-row upserts), for fast catch-up and rebuilds. The manager
// uses ApplyBatch whenever it has more than one event to apply.
type BatchProjector interface {
	Projector
	ApplyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) error
}

// Policy is what a projection does with an event that still fails after its
// retries.
type Policy int

const (
	// PolicyStop marks the projection failed, recording the error and the
	// event's position; the checkpoint stays before the event. Resume
	// retries it. It is the default.
	PolicyStop Policy = iota
	// PolicyDeadLetter records the event, error, attempts and timestamps in
	// the dead-letter table and moves on. Retry re-applies dead letters.
	PolicyDeadLetter
)

func (p Policy) String() string {
	if p == PolicyDeadLetter {
		return "dead-letter"
	}
	return "stop"
}

// State of a projection.
type State string

const (
	Running State = "running"
	Paused  State = "paused"
	Failed  State = "failed"
)

// Errors.
var (
	// ErrInvalidName: a projection name that cannot name a schema.
	ErrInvalidName = errors.New("projection: invalid name")
	// ErrDuplicateProjection: two projectors registered under one name.
	ErrDuplicateProjection = errors.New("projection: duplicate projection name")
	// ErrUnknownProjection: a name no projector is registered under.
	ErrUnknownProjection = errors.New("projection: unknown projection")
	// ErrUnhandledEvent: an event of a type the projector has no handler for.
	ErrUnhandledEvent = errors.New("projection: no handler for event type")
	// ErrPanic: a projector panicked while applying events.
	ErrPanic = errors.New("projection: projector panicked")
	// ErrWaitTimeout: a read-your-writes wait ended before the projections
	// reached the position.
	ErrWaitTimeout = errors.New("projection: timed out waiting for projections")
	// ErrNotDeadLettered: a retry of an event that is not a dead letter.
	ErrNotDeadLettered = errors.New("projection: no such dead letter")
	// ErrSideEffects: a rebuild or reset of a projection registered
	// WithSideEffects, whose replay would repeat its effects.
	ErrSideEffects = errors.New("projection: has side effects; it cannot be replayed")
	// ErrUnavailable marks a failure of something a projector depends on
	// (a message broker, a remote service) rather than of the event. A
	// projector wraps it (fmt.Errorf("publishing: %w: %w",
	// projection.ErrUnavailable, err)) and the runner treats the failure
	// like a database outage: no failure policy, no dead letter; the
	// runner lets go of the lead and tries again with backoff and jitter,
	// from the checkpoint, until the dependency is back.
	ErrUnavailable = errors.New("projection: a dependency is unavailable")
)

var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// ValidateName checks a projection name. Since the name is a schema the
// manager drops and recreates, names of PostgreSQL's own schemas and of
// another projection's rebuild schemas are refused.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %q (want [a-z_][a-z0-9_]{0,40}, it names a schema)", ErrInvalidName, name)
	}
	if name == "public" || name == "information_schema" || strings.HasPrefix(name, "pg_") ||
		strings.HasSuffix(name, "__shadow") || strings.HasSuffix(name, "__old") {
		return fmt.Errorf("%w: %q is reserved (a system schema, or the suffix of a rebuild's schema)", ErrInvalidName, name)
	}
	return nil
}

// ApplyError reports an event a projector failed to apply.
type ApplyError struct {
	Projection string
	Event      eventstore.RecordedEvent
	Attempts   int
	Err        error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("projection %s: applying %s %s@%d (position %s) failed after %d attempt(s): %v",
		e.Projection, e.Event.Type, e.Event.StreamID, e.Event.Version, e.Event.Position, e.Attempts, e.Err)
}

func (e *ApplyError) Unwrap() error { return e.Err }

// WaitTimeoutError reports a read-your-writes wait that timed out.
type WaitTimeoutError struct {
	Projection string
	Want       eventstore.Position
	Reached    eventstore.Position
}

func (e *WaitTimeoutError) Error() string {
	return fmt.Sprintf("projection %s: timed out at position %s waiting for %s", e.Projection, e.Reached, e.Want)
}

func (e *WaitTimeoutError) Unwrap() error { return ErrWaitTimeout }
