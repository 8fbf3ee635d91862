package kurrentdb_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb"
	"github.com/cairn-es/cairn/eventstore/storetest"
)

// payEvents are what a command handler produces: no event IDs, so the
// store derives them from the command ID.
func payEvents() []eventstore.Event {
	return []eventstore.Event{
		{Type: "OrderPaid", Data: json.RawMessage(`{"amount": 5}`)},
		{Type: "OrderShipped"},
	}
}

func streamIDs(t *testing.T, s eventstore.Store, streamID string) []uuid.UUID {
	t.Helper()
	events, err := s.ReadStream(t.Context(), streamID, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// The promise: when the events of a command were appended but its record
// was not (the second write failed), a retry of the command that
// regenerates the same events at the same expected version writes nothing,
// returns the original result marked Duplicate, and records the command.
func TestCommandRetryAfterUnrecordedAppend(t *testing.T) {
	ctx := t.Context()
	srv := newStandIn(t)
	s := newStoreOn(t, newClient(t, srv.ConnectionString()), kurrentdb.Config{})
	_, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "OrderPlaced"}})
	require.NoError(t, err)
	rec := eventstore.CommandRecord{ID: "cmd-pay", Type: "Pay", PayloadHash: []byte{1}}

	srv.RefuseAppends(func(stream string) bool { return strings.HasPrefix(stream, "cairn/commands/") })
	_, err = s.Append(ctx, "order-1", eventstore.Exact(1), payEvents(), eventstore.WithCommand(rec))
	require.Error(t, err, "the record write was refused")
	assert.NotErrorIs(t, err, eventstore.ErrConcurrency)
	_, ok, err := s.HandledCommand(ctx, "cmd-pay")
	require.NoError(t, err)
	assert.False(t, ok, "the command is not recorded")
	ids := streamIDs(t, s, "order-1")
	require.Len(t, ids, 3, "the events were appended")
	assert.Equal(t, []uuid.UUID{kurrentdb.CommandEventID("cmd-pay", "order-1", 0), kurrentdb.CommandEventID("cmd-pay", "order-1", 1)}, ids[1:])
	head, err := s.Head(ctx)
	require.NoError(t, err)

	srv.RefuseAppends(nil)
	res, err := s.Append(ctx, "order-1", eventstore.Exact(1), payEvents(), eventstore.WithCommand(rec))
	require.NoError(t, err)
	assert.Equal(t, eventstore.AppendResult{StreamID: "order-1", FirstVersion: 2, Version: 3, Position: head, Duplicate: true}, res)
	assert.Equal(t, ids, streamIDs(t, s, "order-1"), "the retry wrote nothing")
	h, ok, err := s.HandledCommand(ctx, "cmd-pay")
	require.NoError(t, err)
	require.True(t, ok, "the retry recorded the command")
	assert.Equal(t, res, h.Result)

	// From now on the record answers, whatever the expected version.
	again, err := s.Append(ctx, "order-1", eventstore.Any, payEvents(), eventstore.WithCommand(rec))
	require.NoError(t, err)
	assert.Equal(t, res, again)

	// A retry whose events do not have the same IDs is no repeat to
	// KurrentDB: at the same exact version it conflicts rather than
	// writing the command's effect twice.
	ship := eventstore.CommandRecord{ID: "cmd-ship", Type: "Ship"}
	srv.RefuseAppends(func(stream string) bool { return strings.HasPrefix(stream, "cairn/commands/") })
	_, err = s.Append(ctx, "order-1", eventstore.Exact(3), []eventstore.Event{{ID: uuid.Must(uuid.NewV7()), Type: "Noted"}}, eventstore.WithCommand(ship))
	require.Error(t, err)
	srv.RefuseAppends(nil)
	_, err = s.Append(ctx, "order-1", eventstore.Exact(3), []eventstore.Event{{ID: uuid.Must(uuid.NewV7()), Type: "Noted"}}, eventstore.WithCommand(ship))
	var ce *eventstore.ConcurrencyError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int64(4), ce.Actual)
	assert.Len(t, streamIDs(t, s, "order-1"), 4)
}

// The same recovery, with the first attempt's writes made directly: what a
// process that stopped between the two writes leaves behind. It runs on
// KURRENTDB_URL too.
func TestCommandRecoveryFromLeftoverEvents(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, kurrentdb.Config{})
	leftover := payEvents()
	for i := range leftover {
		leftover[i].ID = kurrentdb.CommandEventID("cmd-pay", "order-7", i)
		leftover[i].Metadata.CommandID = "cmd-pay"
	}
	first, err := s.Append(ctx, "order-7", eventstore.NoStream, leftover)
	require.NoError(t, err)
	storetest.AwaitReadable(t, ctx, s, first.Position)

	events := payEvents()
	for i := range events {
		events[i].Metadata.CommandID = "cmd-pay"
	}
	res, err := s.Append(ctx, "order-7", eventstore.NoStream, events, eventstore.WithCommand(eventstore.CommandRecord{ID: "cmd-pay"}))
	require.NoError(t, err)
	first.Duplicate = true
	assert.Equal(t, first, res)
	assert.Len(t, streamIDs(t, s, "order-7"), 2)
	h, ok, err := s.HandledCommand(ctx, "cmd-pay")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, first, h.Result)
}

// Concurrent appends of one command at one expected version write its
// events once: the command record, or KurrentDB's idempotent answer to
// the same event IDs, stops the others.
func TestConcurrentSameCommand(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, kurrentdb.Config{})
	for round := range 20 {
		stream := "race-" + string(rune('a'+round))
		rec := eventstore.CommandRecord{ID: "cmd-" + stream, Type: "Race"}
		var wg sync.WaitGroup
		results := make([]eventstore.AppendResult, 4)
		errs := make([]error, 4)
		for i := range results {
			wg.Go(func() {
				results[i], errs[i] = s.Append(ctx, stream, eventstore.NoStream, payEvents(), eventstore.WithCommand(rec))
			})
		}
		wg.Wait()
		for i := range results {
			require.NoError(t, errs[i], "round %d, appender %d", round, i)
			assert.Equal(t, int64(1), results[i].FirstVersion)
			assert.Equal(t, int64(2), results[i].Version)
			assert.Equal(t, results[0].Position, results[i].Position)
		}
		assert.Len(t, streamIDs(t, s, stream), 2, "round %d: the command's events were written more than once", round)
		_, ok, err := s.HandledCommand(ctx, rec.ID)
		require.NoError(t, err)
		assert.True(t, ok)
	}
}

// Snapshots live in streams of their own, outside the log.
func TestSnapshotsStayOutOfTheLog(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, kurrentdb.Config{})
	res, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "OrderPlaced"}}, eventstore.WithCommand(eventstore.CommandRecord{ID: "c1"}))
	require.NoError(t, err)
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 1, Data: json.RawMessage(`{}`)}))
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 2, Data: json.RawMessage(`{}`)}))
	head, err := s.Head(ctx)
	require.NoError(t, err)
	assert.Equal(t, res.Position, head)
	log, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	require.Len(t, log, 1)
	for _, opts := range []eventstore.ReadLogOptions{{Types: []string{"CairnSnapshot", "CairnCommandHandled", "$metadata"}}, {Categories: []string{"cairn", "$$cairn"}}} {
		got, err := s.ReadLog(ctx, eventstore.Start, opts)
		require.NoError(t, err)
		assert.Empty(t, got, "%+v", opts)
	}
	_, err = s.ReadStream(ctx, "cairn/snapshots/order-1", eventstore.ReadStreamOptions{})
	assert.ErrorIs(t, err, eventstore.ErrStreamNotFound, "bookkeeping streams are not the store's streams")
}
