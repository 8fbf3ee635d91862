// Package eventstore defines Cairn's event log: the envelope every event
// carries, the small interfaces a store implements (appending, reading a
// stream, reading the whole log, subscribing), the closed set of expected
// versions, and the typed errors every implementation returns.
//
// Two implementations ship with Cairn: eventstore/memory (complete and fast,
// for tests and embedding) and eventstore/postgres (the default). Both pass
// the acceptance suite in eventstore/storetest.
//
// # Ordering
//
// The log has one total order. Every event has a Position; positions are
// totally ordered, every subscriber sees the same order, and a subscriber
// that has processed everything up to position P is never later handed, and
// never misses, an event that sorts before P. Within a stream, position order
// is version order. A Position is therefore all a subscriber needs to resume,
// and it doubles as the read-your-writes token returned to command senders.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Event is an event to append. ID, when zero, is filled with a new UUIDv7;
// SchemaVersion, when zero, means 1. OccurredAt is when the fact happened
// in the domain, when that is not when it is recorded (an import, an
// offline client, a backdated correction); zero means "when recorded". It
// is kept in UTC and whole microseconds, as PostgreSQL keeps it, between
// years 1 and 9999.
type Event struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	OccurredAt    time.Time
}

// Metadata travels with every event. CorrelationID ties together everything
// caused by one original request; CausationID names the message (usually a
// command) that directly caused this event; CommandID is the ID of the
// command whose handling appended it.
//
// Extra and Values are free-form and independent: a key may be in both.
// Extra holds strings (trace context, tenant, the message that caused the
// event: what propagates through string carriers). Values holds any JSON
// value, each of which comes back as the same value: a number stays a
// number, an object an object. Every store gives a value back in jsonb's
// form (see AppendJSONB), as it does Data; an append whose value is not
// JSON PostgreSQL can keep is refused with a ValidationError.
type Metadata struct {
	CorrelationID string                     `json:"correlation_id,omitempty"`
	CausationID   string                     `json:"causation_id,omitempty"`
	CommandID     string                     `json:"command_id,omitempty"`
	Extra         map[string]string          `json:"extra,omitempty"`
	Values        map[string]json.RawMessage `json:"values,omitempty"`
}

// RecordedEvent is an event as stored: the envelope every reader receives.
// Every store gives Data back in jsonb's form (see AppendJSONB), and
// RecordedAt and OccurredAt in UTC and whole microseconds, as PostgreSQL
// keeps them. RecordedAt is the store's clock at the append; OccurredAt is
// always set: the appended Event.OccurredAt, or RecordedAt when that was
// zero, so a reader never needs to tell the two cases apart.
type RecordedEvent struct {
	ID            uuid.UUID
	StreamID      string
	Version       int64 // 1-based and contiguous within the stream
	Position      Position
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	RecordedAt    time.Time // UTC
	OccurredAt    time.Time // UTC; RecordedAt unless the event said otherwise
}

// AppendResult describes a completed append. FirstVersion..Version is the
// range of versions written (for an append of no events FirstVersion is
// Version+1: an empty range); Version is the stream's version after the
// append and Position the position of its last event (the zero Position when
// nothing was appended). Duplicate reports that the append (or
// the command it carried) had already been applied and that this result is
// the original one: nothing new was written.
type AppendResult struct {
	StreamID     string
	FirstVersion int64
	Version      int64
	Position     Position
	Duplicate    bool
}

// Direction of a stream read.
type Direction int

const (
	Forward Direction = iota
	Backward
)

// ReadStreamOptions selects a slice of one stream. From is the first version
// to return (inclusive); zero means the start for Forward reads and the end
// for Backward reads. Limit zero means no limit.
type ReadStreamOptions struct {
	Direction Direction
	From      int64
	Limit     int
}

// ReadLogOptions filters a read of the whole log. Types and Categories, when
// non-empty, keep only events of those types and of streams in those
// categories (see Category). Since, when not zero, keeps only events
// recorded at or after it (RecordedAt, the store's clock, not OccurredAt).
// Limit zero means DefaultBatchSize.
//
// Since filters; it does not seek. The log is in position order, and
// RecordedAt need not grow with position (PostgreSQL stamps a transaction's
// start, and commits it later), so a read with Since still starts after
// its position and pages on by position like any other: a reader that
// wants "everything since T" reads from Start with Since T. A store that
// cannot honour Since refuses it with an *UnsupportedOptionError rather
// than ignore it.
type ReadLogOptions struct {
	Limit      int
	Types      []string
	Categories []string
	Since      time.Time
}

// DefaultBatchSize is the page size of log reads and subscriptions when the
// caller does not choose one.
const DefaultBatchSize = 500

// MaxBatchSize bounds every log read, so one read never holds an unbounded
// result in memory.
const MaxBatchSize = 10_000

// CommandRecord identifies the command whose handling produces an append.
// A store writes it in the same transaction as the events, so a command is
// never recorded without its events nor its events without the record; a
// later append carrying the same ID returns the first result instead of
// writing again. PayloadHash, when set, must match on every reuse of the ID.
type CommandRecord struct {
	ID          string
	Type        string
	PayloadHash []byte
}

// AppendOption adjusts one append.
type AppendOption func(*AppendOptions)

// AppendOptions is the resolved form of a list of AppendOption; stores call
// ApplyAppendOptions to build it.
type AppendOptions struct {
	Command *CommandRecord
}

// WithCommand records the command that produced the events, making the
// append idempotent per command ID.
func WithCommand(rec CommandRecord) AppendOption {
	return func(o *AppendOptions) { o.Command = &rec }
}

// ApplyAppendOptions folds opts into an AppendOptions.
func ApplyAppendOptions(opts []AppendOption) AppendOptions {
	var o AppendOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Appender appends events to one stream, atomically: all of them or none.
type Appender interface {
	Append(ctx context.Context, streamID string, expected ExpectedVersion, events []Event, opts ...AppendOption) (AppendResult, error)
}

// StreamReader reads one stream. Reading a stream that does not exist
// returns an error that matches ErrStreamNotFound.
type StreamReader interface {
	ReadStream(ctx context.Context, streamID string, opts ReadStreamOptions) ([]RecordedEvent, error)
}

// LogReader reads the whole log in position order. ReadLog returns events
// strictly after the given position, at most opts.Limit of them. Head is the
// position of the last event a reader can be given now (the zero Position for
// an empty log).
type LogReader interface {
	ReadLog(ctx context.Context, after Position, opts ReadLogOptions) ([]RecordedEvent, error)
	Head(ctx context.Context) (Position, error)
}

// EventReader reads one event by its ID: what a log line, an error report
// or a causation ID names. Like a stream read, and unlike a log read, it is
// never held back (see HoldbackReader): an appended event is readable by ID
// as soon as its append returns. An ID no event has gives an
// *EventNotFoundError, which matches ErrEventNotFound. Stores with an index
// by event ID implement it; the KurrentDB store, which has none, does not.
type EventReader interface {
	ReadEvent(ctx context.Context, id uuid.UUID) (RecordedEvent, error)
}

// ErrEventNotFound: no event has the ID (see EventReader).
var ErrEventNotFound = errors.New("eventstore: event not found")

// EventNotFoundError reports a read of an event ID that no event has.
type EventNotFoundError struct{ ID uuid.UUID }

func (e *EventNotFoundError) Error() string {
	return fmt.Sprintf("eventstore: event %s not found", e.ID)
}

// Unwrap makes errors.Is(err, ErrEventNotFound) true.
func (e *EventNotFoundError) Unwrap() error { return ErrEventNotFound }

// ErrUnsupportedOption: a store was asked for something it cannot do (a
// read option it has no index for, say) and refused rather than ignore it.
var ErrUnsupportedOption = errors.New("eventstore: option not supported by this store")

// UnsupportedOptionError reports an option a store refuses: Option names
// it (as the Go field, "ReadLogOptions.Since"), Reason says why. It matches
// ErrUnsupportedOption and errors.ErrUnsupported.
type UnsupportedOptionError struct {
	Option string
	Reason string
}

func (e *UnsupportedOptionError) Error() string {
	return fmt.Sprintf("eventstore: %s is not supported by this store: %s", e.Option, e.Reason)
}

// Unwrap makes errors.Is(err, ErrUnsupportedOption) and
// errors.Is(err, errors.ErrUnsupported) true.
func (e *UnsupportedOptionError) Unwrap() []error {
	return []error{ErrUnsupportedOption, errors.ErrUnsupported}
}

// HoldbackReader is a LogReader that can say, in the same read, whether
// events after the position are committed but held back (by an older
// transaction still in flight, see the PostgreSQL store) and so will be
// readable soon. A Subscription uses it to tell a wake-up whose events it
// filters out, after which it waits for the next wake-up, from one whose
// events are held back, which it reads again soon.
type HoldbackReader interface {
	LogReader
	ReadLogHoldback(ctx context.Context, after Position, opts ReadLogOptions) (events []RecordedEvent, heldBack bool, err error)
}

// Notifier tells subscriptions when the log may have grown. Changes returns a
// channel that receives (coalesced) wake-ups until stop is called.
type Notifier interface {
	Changes() (wake <-chan struct{}, stop func())
}

// Subscriber opens subscriptions: catch up from a position, then stay live.
type Subscriber interface {
	Subscribe(ctx context.Context, after Position, opts SubscribeOptions) (*Subscription, error)
}

// HandledCommand is the record a store keeps of a command whose events it
// appended (see CommandRecord).
type HandledCommand struct {
	CommandID   string
	Type        string
	PayloadHash []byte
	Result      AppendResult // Duplicate is always true here: it is a replayed result
}

// CommandLog looks up the recorded result of a handled command.
type CommandLog interface {
	// HandledCommand returns the record for commandID and true, or false
	// when no command with that ID has been handled.
	HandledCommand(ctx context.Context, commandID string) (HandledCommand, bool, error)
}

// Snapshot is an aggregate's serialised state at a stream version. Type and
// SchemaVersion describe Data so that a loader can ignore a snapshot taken
// by an older shape of the aggregate. TakenAt is set by the store when it
// saves the snapshot, in UTC and whole microseconds, whatever the caller
// put there (the PostgreSQL store uses the server's clock). Data comes
// back in jsonb's form (see AppendJSONB), from every store.
type Snapshot struct {
	StreamID      string
	Version       int64
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	TakenAt       time.Time
}

// SnapshotStore keeps the latest snapshot per stream.
type SnapshotStore interface {
	// LoadSnapshot returns the latest snapshot of a stream and true, or
	// false when there is none.
	LoadSnapshot(ctx context.Context, streamID string) (Snapshot, bool, error)
	// SaveSnapshot stores s, replacing a snapshot of the stream at an
	// older or the same version (so an aggregate whose snapshot shape
	// changed can re-take it); a snapshot older than the stored one is
	// ignored. A snapshot ValidateSnapshot refuses is refused with its
	// error, and nothing is stored.
	SaveSnapshot(ctx context.Context, s Snapshot) error
}

// Reader is everything that reads.
type Reader interface {
	StreamReader
	LogReader
}

// Log is what the read side (projections, sagas, reactors, the server's
// read-your-writes wait, the CLI) needs of a store: reading streams and the
// log, and subscribing to it. It never appends; the write side does that
// through Appender.
type Log interface {
	Reader
	Subscriber
}

// LogCounter counts the events after a position that a reader could be
// given now, filtered like ReadLog, stopping at opts.Limit (no limit when
// zero): the backlog a subscriber has left. Stores that can count without
// reading the events implement it; CountLog falls back to reading.
type LogCounter interface {
	CountLog(ctx context.Context, after Position, opts ReadLogOptions) (int64, error)
}

// Store is a complete event store.
type Store interface {
	Appender
	Reader
	Subscriber
	CommandLog
}
