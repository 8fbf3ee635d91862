package command_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// errAlreadyPlaced is a domain refusal of a resubmitted PlaceOrder.
var errAlreadyPlaced = errors.New("order already placed")

// lookups counts the command-log look-ups a dispatcher makes.
type lookups struct {
	eventstore.CommandLog
	n atomic.Int32
}

func (l *lookups) HandledCommand(ctx context.Context, id string) (eventstore.HandledCommand, bool, error) {
	l.n.Add(1)
	return l.CommandLog.HandledCommand(ctx, id)
}

// testAppendOnly proves what AppendOnly promises on store: no look-up
// before the handler, and a resubmission still answered with the first
// result, whether the handler appends again, refuses or decides nothing.
func testAppendOnly(t *testing.T, store eventstore.Store) {
	ctx := context.Background()
	log := &lookups{CommandLog: store}
	d := command.NewDispatcher(log, quiet)
	var calls counter
	var refuse, nothing atomic.Bool
	command.MustRegister(d, func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		switch {
		case refuse.Load():
			return eventstore.AppendResult{}, command.Reject(errAlreadyPlaced)
		case nothing.Load():
			return eventstore.AppendResult{}, nil
		}
		return save(ctx, store, "order-"+cmd.OrderID, eventstore.Any, event("OrderPlaced", OrderPlaced(cmd)))
	}, command.AppendOnly())
	id := "append-only-" + t.Name()
	cmd := command.Envelope{ID: id, Payload: PlaceOrder{OrderID: id, Amount: 5}}

	first, err := d.Dispatch(ctx, cmd)
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	require.Zero(t, log.n.Load(), "no look-up before an append-only handler")

	for _, tc := range []struct {
		name string
		set  func()
	}{
		{"appends again", func() {}},
		{"refuses", func() { refuse.Store(true) }},
		{"decides nothing", func() { refuse.Store(false); nothing.Store(true) }},
	} {
		tc.set()
		again, err := d.Dispatch(ctx, cmd)
		require.NoError(t, err, tc.name)
		require.True(t, again.Duplicate, tc.name)
		again.Duplicate = false
		require.Equal(t, first, again, tc.name)
	}
	events, err := store.ReadStream(ctx, "order-"+id, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1, "appended once")

	// The same ID on a different payload is a reused key, whatever the
	// handler does, and writes nothing.
	nothing.Store(false)
	_, err = d.Dispatch(ctx, command.Envelope{ID: id, Payload: PlaceOrder{OrderID: id, Amount: 6}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
	refuse.Store(true)
	_, err = d.Dispatch(ctx, command.Envelope{ID: id, Payload: PlaceOrder{OrderID: id, Amount: 6}})
	require.ErrorIs(t, err, eventstore.ErrIdempotencyKeyReused)
	events, err = store.ReadStream(ctx, "order-"+id, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1)

	// A new command the handler refuses is refused: the look-up finds
	// nothing to answer with.
	_, err = d.Dispatch(ctx, command.Envelope{ID: id + "-new", Payload: PlaceOrder{OrderID: id + "-new", Amount: 1}})
	require.ErrorIs(t, err, command.ErrRejected)
}

func TestAppendOnlyMemory(t *testing.T) {
	testAppendOnly(t, memory.New(memory.Config{}))
}

func TestAppendOnlyPostgres(t *testing.T) {
	pool := pgtest.Pool(t, 4)
	store, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool)})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	testAppendOnly(t, store)
}

func TestConcurrentAppendOnlyDispatchRunsOnce(t *testing.T) {
	proveSingleExecution(t, memory.New(memory.Config{}), command.AppendOnly())
}
