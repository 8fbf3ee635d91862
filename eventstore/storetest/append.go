package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// recentWindow bounds how far RecordedAt may be from the test's clock: the
// store's clock (a database server's, say) need not be the test's.
const recentWindow = time.Minute

func testRoundTrip(t *testing.T, ctx context.Context, s eventstore.Store) {
	id1 := uuid.Must(uuid.NewV7())
	in := []eventstore.Event{
		{
			ID:   id1,
			Type: "OrderPlaced",
			Data: json.RawMessage(`{ "sku": "A-1",  "qty": 2, "nested": {"b": [1, 2], "a": null} }`),
			Metadata: eventstore.Metadata{
				CorrelationID: "corr-1",
				CausationID:   "cause-1",
				CommandID:     "cmd-1",
				Extra:         map[string]string{"user": "u-42", "ip": "10.0.0.1"},
			},
		},
		{
			// no ID: the store must fill one; SchemaVersion given
			Type:          "OrderPaid",
			SchemaVersion: 3,
			Data:          json.RawMessage(`{"amount":"12.50"}`),
		},
		{
			// no data: stored as {}
			Type: "OrderShipped",
		},
	}
	before := time.Now()
	res := mustAppend(t, ctx, s, "order-1", eventstore.NoStream, in)
	after := time.Now()

	assert.Equal(t, "order-1", res.StreamID)
	assert.Equal(t, int64(1), res.FirstVersion)
	assert.Equal(t, int64(3), res.Version)
	assert.False(t, res.Duplicate)
	assert.False(t, res.Position.IsZero(), "result position is zero")

	got := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	require.Len(t, got, 3)
	requireIncreasing(t, got)
	assert.Equal(t, res.Position, got[2].Position, "result position is the last event's")
	assert.True(t, eventstore.Start.Before(got[0].Position), "first position after Start")

	seen := map[uuid.UUID]bool{}
	for i, e := range got {
		assert.Equal(t, "order-1", e.StreamID, "event %d stream", i)
		assert.Equal(t, int64(i+1), e.Version, "event %d version", i)
		assert.Equal(t, in[i].Type, e.Type, "event %d type", i)
		assert.NotEqual(t, uuid.Nil, e.ID, "event %d ID", i)
		assert.False(t, seen[e.ID], "event %d ID repeated", i)
		seen[e.ID] = true
		assert.Equal(t, time.UTC, e.RecordedAt.Location(), "event %d RecordedAt not UTC", i)
		assert.WithinRange(t, e.RecordedAt, before.Add(-recentWindow), after.Add(recentWindow), "event %d RecordedAt", i)
	}
	assert.Equal(t, id1, got[0].ID)
	assert.Equal(t, 1, got[0].SchemaVersion, "schema version defaults to 1")
	assert.Equal(t, 3, got[1].SchemaVersion)
	assert.Equal(t, 1, got[2].SchemaVersion)
	assert.JSONEq(t, string(in[0].Data), string(got[0].Data))
	assert.JSONEq(t, `{"amount":"12.50"}`, string(got[1].Data))
	assert.JSONEq(t, `{}`, string(got[2].Data))
	assert.Equal(t, in[0].Metadata, got[0].Metadata)
	assert.Empty(t, got[1].Metadata.CorrelationID)
	assert.Empty(t, got[1].Metadata.Extra)

	// The log holds the same envelopes.
	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	require.Len(t, log, 3)
	for i := range got {
		assert.Equal(t, got[i].ID, log[i].ID)
		assert.Equal(t, got[i].Position, log[i].Position)
		assert.Equal(t, got[i].Version, log[i].Version)
		assert.Equal(t, got[i].StreamID, log[i].StreamID)
		assert.Equal(t, got[i].Type, log[i].Type)
		assert.Equal(t, got[i].SchemaVersion, log[i].SchemaVersion)
		assert.JSONEq(t, string(got[i].Data), string(log[i].Data))
		assert.Equal(t, got[i].Metadata, log[i].Metadata)
		assert.True(t, got[i].RecordedAt.Equal(log[i].RecordedAt))
	}
	assert.Equal(t, got[2].Position, head(t, ctx, s))

	// A second append continues the versions and the positions.
	res2 := mustAppend(t, ctx, s, "order-1", eventstore.Exact(3), numbered("OrderNoted", 0, 2))
	assert.Equal(t, int64(4), res2.FirstVersion)
	assert.Equal(t, int64(5), res2.Version)
	assert.True(t, res.Position.Before(res2.Position), "second append's position %s not after first's %s", res2.Position, res.Position)
	got = readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	assert.Equal(t, []int64{1, 2, 3, 4, 5}, versions(got))
	requireIncreasing(t, got)
	assert.Equal(t, res2.Position, got[4].Position)
	assert.Equal(t, res2.Position, head(t, ctx, s))
}

func testReadsReturnCopies(t *testing.T, ctx context.Context, s eventstore.Store) {
	data := []byte(`{"a":1}`)
	extra := map[string]string{"k": "v"}
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "T", Data: data, Metadata: eventstore.Metadata{Extra: extra}}})
	// The caller's own buffers are not the store's.
	copy(data, `{"b":2}`)
	extra["k"] = "changed"

	got := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	require.Len(t, got, 1)
	assert.JSONEq(t, `{"a":1}`, string(got[0].Data), "store kept the caller's data buffer")
	assert.Equal(t, map[string]string{"k": "v"}, got[0].Metadata.Extra, "store kept the caller's Extra map")

	// What a reader gets is its own.
	copy(got[0].Data, `{"c":3}`)
	got[0].Metadata.Extra["k"] = "mutated"
	log, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	require.Len(t, log, 1)
	assert.JSONEq(t, `{"a":1}`, string(log[0].Data))
	assert.Equal(t, map[string]string{"k": "v"}, log[0].Metadata.Extra)
	copy(log[0].Data, `{"d":4}`)
	log[0].Metadata.Extra["k"] = "mutated"
	got = readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
	assert.JSONEq(t, `{"a":1}`, string(got[0].Data))
	assert.Equal(t, map[string]string{"k": "v"}, got[0].Metadata.Extra)
}

// requireConcurrencyError checks err against the expected conflict.
func requireConcurrencyError(t *testing.T, err error, streamID string, expected eventstore.ExpectedVersion, actual int64) {
	t.Helper()
	require.Error(t, err, "append to %q at version %d expecting %s succeeded", streamID, actual, expected)
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	var ce *eventstore.ConcurrencyError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, streamID, ce.StreamID)
	assert.Equal(t, expected, ce.Expected)
	assert.Equal(t, actual, ce.Actual)
}

func testExpectedVersion(t *testing.T, ctx context.Context, s eventstore.Store) {
	one := func() []eventstore.Event { return numbered("Happened", 0, 1) }
	tests := []struct {
		name     string
		existing int // events in the stream before the append
		expected eventstore.ExpectedVersion
		ok       bool
	}{
		{"AnyNew", 0, eventstore.Any, true},
		{"AnyExisting", 2, eventstore.Any, true},
		{"NoStreamNew", 0, eventstore.NoStream, true},
		{"NoStreamExisting", 1, eventstore.NoStream, false},
		{"StreamExistsNew", 0, eventstore.StreamExists, false},
		{"StreamExistsExisting", 3, eventstore.StreamExists, true},
		{"ExactMatch", 2, eventstore.Exact(2), true},
		{"ExactBehind", 3, eventstore.Exact(2), false},
		{"ExactAhead", 1, eventstore.Exact(2), false},
		{"ExactNew", 0, eventstore.Exact(1), false},
		{"ExactZeroNew", 0, eventstore.Exact(0), true},
		{"ExactZeroExisting", 1, eventstore.Exact(0), false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := "ev-" + strings.ToLower(tc.name) + "_" + string(rune('a'+i))
			if tc.existing > 0 {
				mustAppend(t, ctx, s, stream, eventstore.NoStream, numbered("Seeded", 0, tc.existing))
			}
			headBefore := head(t, ctx, s)
			res, err := s.Append(ctx, stream, tc.expected, one())
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, int64(tc.existing+1), res.FirstVersion)
				assert.Equal(t, int64(tc.existing+1), res.Version)
				assert.False(t, res.Duplicate)
				assert.Equal(t, tc.existing+1, streamLen(t, ctx, s, stream))
				return
			}
			requireConcurrencyError(t, err, stream, tc.expected, int64(tc.existing))
			assert.Equal(t, tc.existing, streamLen(t, ctx, s, stream), "a failed append wrote events")
			assert.Equal(t, headBefore, head(t, ctx, s), "a failed append moved the head")
		})
	}

	t.Run("ExactNegative", func(t *testing.T) {
		headBefore := head(t, ctx, s)
		_, err := s.Append(ctx, "ev-negative", eventstore.Exact(-1), one())
		require.ErrorIs(t, err, eventstore.ErrInvalidExpectedVersion)
		var ve *eventstore.ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, 0, streamLen(t, ctx, s, "ev-negative"))
		assert.Equal(t, headBefore, head(t, ctx, s))
	})

	t.Run("OptimisticLoop", func(t *testing.T) {
		// Two writers read version 1; the first wins, the second conflicts
		// with the actual version and succeeds after re-reading.
		mustAppend(t, ctx, s, "ev-loop", eventstore.NoStream, one())
		mustAppend(t, ctx, s, "ev-loop", eventstore.Exact(1), one())
		_, err := s.Append(ctx, "ev-loop", eventstore.Exact(1), one())
		requireConcurrencyError(t, err, "ev-loop", eventstore.Exact(1), 2)
		res := mustAppend(t, ctx, s, "ev-loop", eventstore.Exact(2), one())
		assert.Equal(t, int64(3), res.Version)
		assert.Equal(t, []int64{1, 2, 3}, versions(readStream(t, ctx, s, "ev-loop", eventstore.ReadStreamOptions{})))
	})
}

func testEmptyAppend(t *testing.T, ctx context.Context, s eventstore.Store) {
	// On a new stream: the expected version is checked, nothing is created.
	res, err := s.Append(ctx, "order-1", eventstore.NoStream, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(0), res.Version)
	assert.True(t, res.Position.IsZero(), "empty append has position %s", res.Position)
	assert.False(t, res.Duplicate)
	_, err = s.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	require.ErrorIs(t, err, eventstore.ErrStreamNotFound, "an empty append created the stream")
	assert.True(t, head(t, ctx, s).IsZero())

	_, err = s.Append(ctx, "order-1", eventstore.StreamExists, nil)
	requireConcurrencyError(t, err, "order-1", eventstore.StreamExists, 0)
	_, err = s.Append(ctx, "order-1", eventstore.Exact(3), []eventstore.Event{})
	requireConcurrencyError(t, err, "order-1", eventstore.Exact(3), 0)

	// On an existing stream.
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 2))
	h := head(t, ctx, s)
	res, err = s.Append(ctx, "order-1", eventstore.Exact(2), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(2), res.Version)
	assert.True(t, res.Position.IsZero())
	_, err = s.Append(ctx, "order-1", eventstore.Exact(1), nil)
	requireConcurrencyError(t, err, "order-1", eventstore.Exact(1), 2)
	assert.Equal(t, h, head(t, ctx, s))
	assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"))

	// With a command: the command is recorded, and a retry replays it.
	rec := eventstore.CommandRecord{ID: "cmd-empty", Type: "Touch", PayloadHash: []byte{1}}
	res, err = s.Append(ctx, "order-1", eventstore.Exact(2), nil, eventstore.WithCommand(rec))
	require.NoError(t, err)
	assert.False(t, res.Duplicate)
	assert.Equal(t, int64(2), res.Version)
	hc, ok, err := s.HandledCommand(ctx, "cmd-empty")
	require.NoError(t, err)
	require.True(t, ok, "an empty append did not record its command")
	assert.Equal(t, int64(2), hc.Result.Version)
	assert.True(t, hc.Result.Duplicate)
	assert.True(t, hc.Result.Position.IsZero())
	// The retry does not check the expected version again.
	res, err = s.Append(ctx, "order-1", eventstore.NoStream, nil, eventstore.WithCommand(rec))
	require.NoError(t, err)
	assert.True(t, res.Duplicate)
	assert.Equal(t, int64(2), res.Version)
}

func testIdempotentEventIDs(t *testing.T, ctx context.Context, s eventstore.Store, cfg config) {
	ab := numbered("T", 0, 2)
	r1 := mustAppend(t, ctx, s, "order-1", eventstore.NoStream, ab)
	c := numbered("T", 2, 1)
	r2 := mustAppend(t, ctx, s, "order-1", eventstore.Exact(2), c)
	mustAppend(t, ctx, s, "order-2", eventstore.NoStream, numbered("T", 0, 1))
	h := head(t, ctx, s)
	logBefore := ids(readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{}))

	unchanged := func(t *testing.T) {
		t.Helper()
		assert.Equal(t, 3, streamLen(t, ctx, s, "order-1"), "stream length changed")
		assert.Equal(t, h, head(t, ctx, s), "head moved")
		assert.Equal(t, logBefore, ids(readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})), "log changed")
	}
	want := func(r eventstore.AppendResult) eventstore.AppendResult {
		r.Duplicate = true
		return r
	}

	t.Run("RetryFirstAppend", func(t *testing.T) {
		// A retry with the original (now failing) expected version.
		res, err := s.Append(ctx, "order-1", eventstore.NoStream, ab)
		require.NoError(t, err)
		assert.Equal(t, want(r1), res)
		unchanged(t)
	})
	t.Run("RetryWithAny", func(t *testing.T) {
		res, err := s.Append(ctx, "order-1", eventstore.Any, ab)
		require.NoError(t, err)
		assert.Equal(t, want(r1), res)
		unchanged(t)
	})
	t.Run("RetrySecondAppend", func(t *testing.T) {
		res, err := s.Append(ctx, "order-1", eventstore.Exact(2), c)
		require.NoError(t, err)
		assert.Equal(t, want(r2), res)
		unchanged(t)
	})
	t.Run("PartialOverlap", func(t *testing.T) {
		d := newEvent("T", `{"n":99}`)
		_, err := s.Append(ctx, "order-1", eventstore.Any, []eventstore.Event{ab[1], d})
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		var de *eventstore.DuplicateEventError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, "order-1", de.StreamID)
		unchanged(t)
	})
	if cfg.perStreamIDs {
		testRepeatedWithinBatch(t, ctx, s, unchanged)
		return
	}
	t.Run("OtherStream", func(t *testing.T) {
		_, err := s.Append(ctx, "order-3", eventstore.Any, []eventstore.Event{ab[0]})
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		var de *eventstore.DuplicateEventError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, 0, streamLen(t, ctx, s, "order-3"))
		unchanged(t)
	})
	t.Run("OtherStreamAllIDs", func(t *testing.T) {
		_, err := s.Append(ctx, "order-2", eventstore.Any, ab)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		unchanged(t)
	})
	testRepeatedWithinBatch(t, ctx, s, unchanged)
}

func testRepeatedWithinBatch(t *testing.T, ctx context.Context, s eventstore.Store, unchanged func(t *testing.T)) {
	t.Run("RepeatedWithinBatch", func(t *testing.T) {
		e := newEvent("T", `{}`)
		_, err := s.Append(ctx, "order-1", eventstore.Any, []eventstore.Event{e, e})
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		unchanged(t)
	})
}

func testCommandIdempotency(t *testing.T, ctx context.Context, s eventstore.Store) {
	rec := eventstore.CommandRecord{ID: "cmd-1", Type: "PlaceOrder", PayloadHash: []byte{0xca, 0x1f}}

	_, ok, err := s.HandledCommand(ctx, "cmd-1")
	require.NoError(t, err)
	require.False(t, ok, "HandledCommand found a command never sent")

	r1 := mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("OrderPlaced", 0, 2), eventstore.WithCommand(rec))
	assert.False(t, r1.Duplicate)
	h := head(t, ctx, s)

	hc, ok, err := s.HandledCommand(ctx, "cmd-1")
	require.NoError(t, err)
	require.True(t, ok, "HandledCommand did not find the command")
	assert.Equal(t, "cmd-1", hc.CommandID)
	assert.Equal(t, "PlaceOrder", hc.Type)
	assert.Equal(t, rec.PayloadHash, hc.PayloadHash)
	wantResult := r1
	wantResult.Duplicate = true
	assert.Equal(t, wantResult, hc.Result)

	t.Run("SameCommandAgain", func(t *testing.T) {
		// A retry regenerates its events (new IDs) and still writes nothing.
		res, err := s.Append(ctx, "order-1", eventstore.NoStream, numbered("OrderPlaced", 0, 2), eventstore.WithCommand(rec))
		require.NoError(t, err)
		assert.Equal(t, wantResult, res)
		assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"))
		assert.Equal(t, h, head(t, ctx, s))
	})
	t.Run("SameCommandOtherStream", func(t *testing.T) {
		// Command IDs are global: the recorded result, stream ID included,
		// is the answer.
		res, err := s.Append(ctx, "order-9", eventstore.Any, numbered("OrderPlaced", 0, 1), eventstore.WithCommand(rec))
		require.NoError(t, err)
		assert.Equal(t, wantResult, res)
		assert.Equal(t, 0, streamLen(t, ctx, s, "order-9"))
		assert.Equal(t, h, head(t, ctx, s))
	})
	t.Run("DifferentPayload", func(t *testing.T) {
		other := rec
		other.PayloadHash = []byte{0xca, 0x20}
		_, err := s.Append(ctx, "order-1", eventstore.Any, numbered("OrderPlaced", 0, 1), eventstore.WithCommand(other))
		require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
		var ie *eventstore.IdempotencyKeyReusedError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, "cmd-1", ie.CommandID)
		assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"))
		assert.Equal(t, h, head(t, ctx, s))
	})
	t.Run("NilPayloadHash", func(t *testing.T) {
		nilRec := eventstore.CommandRecord{ID: "cmd-nil", Type: "Touch"}
		r := mustAppend(t, ctx, s, "order-2", eventstore.Any, numbered("Touched", 0, 1), eventstore.WithCommand(nilRec))
		h := head(t, ctx, s)
		res, err := s.Append(ctx, "order-2", eventstore.Any, numbered("Touched", 0, 1), eventstore.WithCommand(nilRec))
		require.NoError(t, err)
		assert.True(t, res.Duplicate)
		assert.Equal(t, r.Position, res.Position)
		assert.Equal(t, r.Version, res.Version)
		withHash := nilRec
		withHash.PayloadHash = []byte{1}
		_, err = s.Append(ctx, "order-2", eventstore.Any, numbered("Touched", 0, 1), eventstore.WithCommand(withHash))
		require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
		assert.Equal(t, 1, streamLen(t, ctx, s, "order-2"))
		assert.Equal(t, h, head(t, ctx, s))
	})
	t.Run("FailedAppendRecordsNothing", func(t *testing.T) {
		failing := eventstore.CommandRecord{ID: "cmd-conflict", Type: "PlaceOrder"}
		_, err := s.Append(ctx, "order-1", eventstore.NoStream, numbered("OrderPlaced", 0, 1), eventstore.WithCommand(failing))
		require.ErrorIs(t, err, eventstore.ErrConcurrency)
		_, ok, err := s.HandledCommand(ctx, "cmd-conflict")
		require.NoError(t, err)
		assert.False(t, ok, "a failed append recorded its command")
		// So the command can be retried once the conflict is resolved.
		res := mustAppend(t, ctx, s, "order-1", eventstore.Exact(2), numbered("OrderPlaced", 0, 1), eventstore.WithCommand(failing))
		assert.False(t, res.Duplicate)
		assert.Equal(t, int64(3), res.Version)
	})
}

func testInvalidInput(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("Seeded", 0, 1))
	h := head(t, ctx, s)

	// A valid JSON string of exactly DefaultMaxEventSize+1 bytes.
	big := `"` + strings.Repeat("x", eventstore.DefaultMaxEventSize-1) + `"`
	require.Equal(t, eventstore.DefaultMaxEventSize+1, len(big))

	batch := func(bad eventstore.Event) []eventstore.Event {
		return []eventstore.Event{newEvent("Good", `{"i":0}`), bad, newEvent("Good", `{"i":2}`)}
	}
	good := func() []eventstore.Event { return numbered("Good", 0, 3) }
	tests := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
		opts     []eventstore.AppendOption
		sentinel error
		index    int // of the offending event, -1 for none
	}{
		{"EmptyStreamID", "", eventstore.Any, good(), nil, eventstore.ErrInvalidStreamID, -1},
		{"LongStreamID", "order-" + strings.Repeat("1", eventstore.MaxStreamIDLength+1-len("order-")), eventstore.Any, good(), nil, eventstore.ErrInvalidStreamID, -1},
		{"SpaceInStreamID", "order 1", eventstore.Any, good(), nil, eventstore.ErrInvalidStreamID, -1},
		{"SlashInStreamID", "order/1", eventstore.Any, good(), nil, eventstore.ErrInvalidStreamID, -1},
		{"NonASCIIStreamID", "ordér", eventstore.Any, good(), nil, eventstore.ErrInvalidStreamID, -1},
		{"EmptyType", "order-1", eventstore.Any, batch(eventstore.Event{ID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(`{}`)}), nil, eventstore.ErrInvalidEvent, 1},
		{"DataNotJSON", "order-1", eventstore.Any, batch(eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: "Bad", Data: json.RawMessage(`{"a":`)}), nil, eventstore.ErrInvalidEvent, 1},
		{"EventTooLarge", "order-1", eventstore.Any, batch(eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: "Big", Data: json.RawMessage(big)}), nil, eventstore.ErrEventTooLarge, 1},
		{"NegativeSchemaVersion", "order-1", eventstore.Any, batch(eventstore.Event{ID: uuid.Must(uuid.NewV7()), Type: "Bad", SchemaVersion: -1, Data: json.RawMessage(`{}`)}), nil, eventstore.ErrInvalidEvent, 1},
		{"NegativeExpectedVersion", "order-1", eventstore.Exact(-1), good(), nil, eventstore.ErrInvalidExpectedVersion, -1},
		{"EmptyCommandID", "order-1", eventstore.Any, good(), []eventstore.AppendOption{eventstore.WithCommand(eventstore.CommandRecord{Type: "X"})}, eventstore.ErrInvalidEvent, -1},
	}
	require.Len(t, tests[1].stream, eventstore.MaxStreamIDLength+1)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(ctx, tc.stream, tc.expected, tc.events, tc.opts...)
			require.Error(t, err, "invalid append succeeded")
			require.ErrorIs(t, err, tc.sentinel)
			var ve *eventstore.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tc.sentinel, ve.Err)
			assert.Equal(t, tc.index, ve.Index, "ValidationError.Index")
			assert.Equal(t, h, head(t, ctx, s), "an invalid append moved the head")
			assert.Equal(t, 1, streamLen(t, ctx, s, "order-1"), "an invalid append wrote to the stream")
			if tc.stream != "order-1" && tc.stream != "" {
				_, err := s.ReadStream(ctx, tc.stream, eventstore.ReadStreamOptions{})
				assert.Error(t, err, "an invalid append created stream %q", tc.stream)
			}
		})
	}
	// The longest valid ID, and every allowed character, are accepted.
	longest := "order-" + strings.Repeat("1", eventstore.MaxStreamIDLength-len("order-"))
	mustAppend(t, ctx, s, longest, eventstore.NoStream, good())
	mustAppend(t, ctx, s, "Order_1.a:b@c-Z9", eventstore.NoStream, good())
	assert.Equal(t, 3, streamLen(t, ctx, s, longest))
}

func testCancelledContext(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 1))
	h := head(t, ctx, s)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	rec := eventstore.CommandRecord{ID: "cmd-cancelled", Type: "X"}
	_, err := s.Append(cancelled, "order-2", eventstore.NoStream, numbered("T", 0, 3), eventstore.WithCommand(rec))
	require.Error(t, err, "append with a cancelled context succeeded")
	assert.True(t, errors.Is(err, context.Canceled), "error %v does not match context.Canceled", err)
	_, err = s.Append(cancelled, "order-1", eventstore.Any, numbered("T", 1, 1))
	assert.ErrorIs(t, err, context.Canceled)

	assert.Equal(t, h, head(t, ctx, s), "a cancelled append moved the head")
	assert.Equal(t, 0, streamLen(t, ctx, s, "order-2"), "a cancelled append wrote events")
	assert.Equal(t, 1, streamLen(t, ctx, s, "order-1"), "a cancelled append wrote events")
	_, ok, err := s.HandledCommand(ctx, "cmd-cancelled")
	require.NoError(t, err)
	assert.False(t, ok, "a cancelled append recorded its command")
}
