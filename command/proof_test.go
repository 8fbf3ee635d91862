package command_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// proveSingleExecution shows that a command is applied once however many
// times it is submitted concurrently: 50 goroutines dispatch the same command
// ID, whose handler creates a stream (expected version NoStream) and records
// the command through Causation.Stamp. Exactly one set of events must land,
// and every submission must receive the same result, 49 of them marked
// Duplicate. It runs against any store; each call uses fresh IDs.
func proveSingleExecution(t *testing.T, store eventstore.Store, opts ...command.HandlerOption) {
	t.Helper()
	const submissions = 50
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	suffix := uuid.NewString()
	stream := "proof-" + suffix
	commandID := "proof-command-" + suffix
	var calls counter
	d := command.NewDispatcher(store, quiet)
	command.MustRegister(d, func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		c, ok := eventstore.CausationFrom(ctx)
		if !ok {
			t.Error("handler context carries no causation")
		}
		events := []eventstore.Event{event("OrderPlaced", OrderPlaced(cmd)), event("PaymentRequested", struct{}{})}
		return store.Append(ctx, stream, eventstore.NoStream, events, c.Stamp(events)...)
	}, opts...)

	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		results [submissions]command.Result
		errs    [submissions]error
	)
	for i := range submissions {
		wg.Go(func() {
			<-start
			results[i], errs[i] = d.Dispatch(ctx, command.Envelope{ID: commandID, Payload: PlaceOrder{OrderID: suffix, Amount: 1}})
		})
	}
	close(start)
	wg.Wait()

	duplicates := 0
	var original command.Result
	for i := range submissions {
		require.NoError(t, errs[i], "submission %d", i)
		if results[i].Duplicate {
			duplicates++
		} else {
			original = results[i]
		}
	}
	require.Equal(t, submissions-1, duplicates, "exactly one submission applies the command")
	require.Equal(t, commandID, original.CommandID)
	require.Equal(t, stream, original.StreamID)
	require.EqualValues(t, 2, original.Version)
	require.False(t, original.Position.IsZero())
	for i, r := range results {
		r.Duplicate = false
		require.Equal(t, original, r, "submission %d", i)
	}

	evs, err := store.ReadStream(ctx, stream, eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 2, "one set of events")
	require.Equal(t, original.Position, evs[1].Position)
	for _, e := range evs {
		require.Equal(t, commandID, e.Metadata.CommandID)
		require.Equal(t, commandID, e.Metadata.CausationID)
		require.Equal(t, commandID, e.Metadata.CorrelationID)
	}
	rec, found, err := store.HandledCommand(ctx, commandID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "PlaceOrder", rec.Type)
	require.Equal(t, original.Version, rec.Result.Version)
	require.Equal(t, original.Position, rec.Result.Position)
	t.Logf("handler ran %d times for %d submissions", calls.get(), submissions)
}
