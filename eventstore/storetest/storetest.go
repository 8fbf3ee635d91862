// Package storetest is the acceptance suite of eventstore implementations.
// A store passes it to show that it keeps the semantics every Cairn store
// shares: validation, expected versions, idempotency by event ID and by
// command ID, stream and log reads, subscriptions, and one total order of the
// log that every subscriber sees (the "ConcurrentWritersTotalOrder" proof).
//
// Call it from the store's own tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eventstore.Store { return memory.New(memory.Config{}) })
//	}
//
// newStore must return a new, empty store for every call (the suite checks
// the whole log), configured with eventstore.DefaultMaxEventSize, and should
// register its own cleanup with t.Cleanup. Subtests run one at a time. Every
// wait is bounded by a context deadline, so a broken store fails rather than
// hangs; no assertion relies on a sleep.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// Option adjusts the suite.
type Option func(*config)

type config struct {
	writers         int
	eventsPerWriter int
	timeout         time.Duration
	proofTimeout    time.Duration
	drainTimeout    time.Duration
	// perStreamIDs: WithEventIDsUniquePerStream.
	perStreamIDs bool
}

func defaultConfig() config {
	return config{
		writers:         DefaultWriters,
		eventsPerWriter: DefaultEventsPerWriter,
		timeout:         30 * time.Second,
		proofTimeout:    5 * time.Minute,
		drainTimeout:    time.Minute,
	}
}

// Default size of the ordering proof: 16 writers of 2,000 events each.
const (
	DefaultWriters         = 16
	DefaultEventsPerWriter = 2000
)

// WithOrderingProofSize sets the number of concurrent writers of the
// ConcurrentWritersTotalOrder subtest and the events each appends. Values
// below 1 keep the default.
func WithOrderingProofSize(writers, eventsPerWriter int) Option {
	return func(c *config) {
		if writers > 0 {
			c.writers = writers
		}
		if eventsPerWriter > 0 {
			c.eventsPerWriter = eventsPerWriter
		}
	}
}

// WithTimeout sets the deadline of each ordinary subtest (default 30s), of
// the whole ordering proof (default 5m), and of the proof's subscribers
// receiving the last events once the writers have finished (default 1m).
// Zero keeps a default.
func WithTimeout(subtest, orderingProof, drain time.Duration) Option {
	return func(c *config) {
		if subtest > 0 {
			c.timeout = subtest
		}
		if orderingProof > 0 {
			c.proofTimeout = orderingProof
		}
		if drain > 0 {
			c.drainTimeout = drain
		}
	}
}

// WithEventIDsUniquePerStream is for a store whose event IDs are unique
// within a stream only (KurrentDB deduplicates per stream and has no index
// by event ID): the suite leaves out the cases that append an event ID
// already in another stream and expect ErrDuplicateEvent. Every other case
// of event-ID idempotency still runs.
func WithEventIDsUniquePerStream() Option {
	return func(c *config) { c.perStreamIDs = true }
}

// Run runs the acceptance suite, one subtest per behaviour, each on a fresh
// store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts ...Option) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s eventstore.Store)
	}{
		{"AppendReadRoundTrip", testRoundTrip},
		{"ReadsReturnCopies", testReadsReturnCopies},
		{"ExpectedVersion", testExpectedVersion},
		{"EmptyAppend", testEmptyAppend},
		{"ReadStream", testReadStream},
		{"ReadLog", testReadLog},
		{"ReadLogDefaultLimit", testReadLogDefaultLimit},
		{"IdempotentEventIDs", func(t *testing.T, ctx context.Context, s eventstore.Store) {
			testIdempotentEventIDs(t, ctx, s, cfg)
		}},
		{"CommandIdempotency", testCommandIdempotency},
		{"InvalidInput", testInvalidInput},
		{"UnstorableInput", testUnstorableInput},
		{"DataForm", testDataForm},
		{"RecordedAtPrecision", testRecordedAtPrecision},
		{"OccurredAt", testOccurredAt},
		{"MetadataValues", testMetadataValues},
		{"CancelledContext", testCancelledContext},
		{"SubscriptionCatchUpThenLive", testSubscriptionCatchUpThenLive},
		{"SubscriptionResume", testSubscriptionResume},
		{"SubscriptionClose", testSubscriptionClose},
		{"SubscriptionFiltered", testSubscriptionFiltered},
		{"ConcurrentWritersTotalOrder", func(t *testing.T, ctx context.Context, s eventstore.Store) {
			testConcurrentWritersTotalOrder(t, ctx, s, cfg)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := cfg.timeout
			if tc.name == "ConcurrentWritersTotalOrder" {
				timeout = cfg.proofTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			tc.fn(t, ctx, s)
		})
	}
}

// newEvent is an event of the given type whose data is the given JSON.
func newEvent(typ, data string) eventstore.Event {
	return eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: typ, Data: json.RawMessage(data)}
}

// numbered returns n events of type typ with data {"n": from..from+n-1}.
func numbered(typ string, from, n int) []eventstore.Event {
	out := make([]eventstore.Event, n)
	for i := range out {
		out[i] = newEvent(typ, fmt.Sprintf(`{"n":%d}`, from+i))
	}
	return out
}

func mustAppend(t *testing.T, ctx context.Context, s eventstore.Store, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, opts ...eventstore.AppendOption) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctx, streamID, expected, events, opts...)
	require.NoError(t, err, "append to %q", streamID)
	AwaitReadable(t, ctx, s, res.Position)
	return res
}

// AwaitReadable waits until the log can be read up to pos. A store may hold
// a committed append back from log readers while an older transaction is
// still in flight (the PostgreSQL store does, anywhere in the cluster: that
// is how it keeps one total order); stream reads are never held back. Tests
// that read the log right after appending call this first.
func AwaitReadable(t testing.TB, ctx context.Context, s eventstore.LogReader, pos eventstore.Position) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := s.Head(ctx)
		require.NoError(t, err, "head")
		if !h.Before(pos) {
			return
		}
		if time.Now().After(deadline) {
			require.Failf(t, "log not readable", "head %s has not reached %s after 30s", h, pos)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readStream(t *testing.T, ctx context.Context, s eventstore.Store, streamID string, opts eventstore.ReadStreamOptions) []eventstore.RecordedEvent {
	t.Helper()
	events, err := s.ReadStream(ctx, streamID, opts)
	require.NoError(t, err, "read stream %q", streamID)
	return events
}

// streamLen is the number of events in a stream, 0 when it does not exist.
func streamLen(t *testing.T, ctx context.Context, s eventstore.Store, streamID string) int {
	t.Helper()
	events, err := s.ReadStream(ctx, streamID, eventstore.ReadStreamOptions{})
	if err != nil {
		require.ErrorIs(t, err, eventstore.ErrStreamNotFound, "read stream %q", streamID)
		return 0
	}
	return len(events)
}

func head(t *testing.T, ctx context.Context, s eventstore.Store) eventstore.Position {
	t.Helper()
	p, err := s.Head(ctx)
	require.NoError(t, err, "head")
	return p
}

// readWholeLog pages through the log after the given position.
func readWholeLog(t *testing.T, ctx context.Context, s eventstore.LogReader, after eventstore.Position, opts eventstore.ReadLogOptions) []eventstore.RecordedEvent {
	t.Helper()
	if opts.Limit == 0 {
		opts.Limit = 1000
	}
	var out []eventstore.RecordedEvent
	for {
		page, err := s.ReadLog(ctx, after, opts)
		require.NoError(t, err, "read log after %s", after)
		if len(page) == 0 {
			return out
		}
		require.LessOrEqual(t, len(page), opts.Limit, "read log returned more than the limit")
		require.True(t, after.Before(page[0].Position), "read log after %s returned an event at %s", after, page[0].Position)
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
}

func ids(events []eventstore.RecordedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func versions(events []eventstore.RecordedEvent) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.Version
	}
	return out
}

// requireIncreasing checks that positions strictly increase.
func requireIncreasing(t *testing.T, events []eventstore.RecordedEvent) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		require.True(t, events[i-1].Position.Before(events[i].Position),
			"positions not strictly increasing at %d: %s then %s", i, events[i-1].Position, events[i].Position)
	}
}
