package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

func TestRunnerCatchesUpFollowsAndWaitForReadsYourWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, projection.Config{BatchSize: 7})
	p := &totals{name: uniqueName(t, "totals"), version: 1}
	require.NoError(t, e.mgr.Register(p))

	for i := range 20 {
		_, err := e.store.Append(ctx, "acct-1", eventstore.Any, []eventstore.Event{added(i)})
		require.NoError(t, err)
	}
	_, err := e.store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored"}})
	require.NoError(t, err)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.mgr.Run(runCtx) }()

	res, err := e.store.Append(ctx, "acct-2", eventstore.Any, []eventstore.Event{added(5)})
	require.NoError(t, err)
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	require.NoError(t, e.mgr.WaitFor(waitCtx, res.Position, p.Name()))
	waitCancel()
	require.Equal(t, map[string][2]int64{"acct-1": {190, 20}, "acct-2": {5, 1}}, modelRows(t, e.store, p.Name()))

	// An event the projection ignores still counts as reached.
	other, err := e.store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored"}})
	require.NoError(t, err)
	require.NoError(t, e.mgr.WaitFor(ctx, other.Position, p.Name()))

	st, err := e.mgr.Status(ctx, p.Name())
	require.NoError(t, err)
	require.Equal(t, projection.Running, st.State)
	require.Equal(t, int64(21), st.EventsApplied)
	require.Equal(t, int64(0), st.Lag)
	require.Equal(t, res.Position, st.Checkpoint)

	// A wait that cannot be met times out with a typed error.
	short, shortCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer shortCancel()
	far := eventstore.Position{Tx: res.Position.Tx + 1_000_000, Seq: 1}
	err = e.mgr.WaitFor(short, far, p.Name())
	require.ErrorIs(t, err, projection.ErrWaitTimeout)
	var wt *projection.WaitTimeoutError
	require.ErrorAs(t, err, &wt)
	require.Equal(t, p.Name(), wt.Projection)

	stop()
	require.NoError(t, <-done)
}
