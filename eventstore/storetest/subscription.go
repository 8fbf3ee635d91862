package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// liveWait bounds each wait for a live event. Subscriptions in these tests
// poll only every noPollBackup, so an event arrives within liveWait only if
// the store wakes its subscribers.
const (
	liveWait     = 5 * time.Second
	noPollBackup = time.Minute
)

// collect reads from sub until it has n events, each NextBatch bounded by
// liveWait.
func collect(t *testing.T, ctx context.Context, sub *eventstore.Subscription, n int) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	for len(out) < n {
		wctx, cancel := context.WithTimeout(ctx, liveWait)
		batch, err := sub.NextBatch(wctx)
		cancel()
		require.NoError(t, err, "subscription delivered %d of %d events", len(out), n)
		require.NotEmpty(t, batch, "NextBatch returned no events and no error")
		out = append(out, batch...)
		assert.Equal(t, batch[len(batch)-1].Position, sub.Position(), "Position is the last delivered event's")
	}
	require.Len(t, out, n, "subscription delivered more events than appended")
	return out
}

// requireNothingMore checks that sub has nothing to deliver now.
func requireNothingMore(t *testing.T, ctx context.Context, sub *eventstore.Subscription) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	batch, err := sub.NextBatch(wctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "subscription delivered %d unexpected events", len(batch))
}

// blockPause is how long nextBatchLive lets the subscriber block before
// writing. It only makes it likely that the store's wake-up, rather than the
// subscriber's first read, delivers the events; no outcome depends on it.
const blockPause = 100 * time.Millisecond

// nextBatchLive calls sub.NextBatch in another goroutine, runs write in this
// one once the subscriber has (very likely) blocked, and returns the batch.
// The subscriptions poll only every minute and each wait is bounded by
// liveWait, so a store that does not wake its subscribers fails here.
func nextBatchLive(t *testing.T, ctx context.Context, sub *eventstore.Subscription, write func()) []eventstore.RecordedEvent {
	t.Helper()
	type result struct {
		batch []eventstore.RecordedEvent
		err   error
	}
	started := make(chan struct{})
	done := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, liveWait)
		defer cancel()
		close(started)
		b, err := sub.NextBatch(wctx)
		done <- result{b, err}
	}()
	<-started
	pause := time.NewTimer(blockPause)
	select {
	case r := <-done:
		pause.Stop()
		require.NoError(t, r.err)
		require.Fail(t, "NextBatch returned before anything was appended", "%d events", len(r.batch))
	case <-pause.C:
	}
	write()
	r := <-done
	require.NoError(t, r.err, "live events not delivered within %v", liveWait)
	require.NotEmpty(t, r.batch)
	return r.batch
}

func testSubscriptionCatchUpThenLive(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 3))
	mustAppend(t, ctx, s, "order-2", eventstore.NoStream, numbered("T", 0, 2))

	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{BatchSize: 2, PollInterval: noPollBackup})
	require.NoError(t, err)
	defer sub.Close()
	assert.True(t, sub.Position().IsZero())

	caught := collect(t, ctx, sub, 5)
	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	assert.Equal(t, ids(log), ids(caught))
	requireNothingMore(t, ctx, sub)

	// Live: the subscriber waits while another goroutine appends.
	var res eventstore.AppendResult
	batch := nextBatchLive(t, ctx, sub, func() {
		res = mustAppend(t, ctx, s, "order-3", eventstore.NoStream, numbered("Live", 0, 1))
	})
	require.Len(t, batch, 1)
	assert.Equal(t, "order-3", batch[0].StreamID)
	assert.Equal(t, "Live", batch[0].Type)
	assert.Equal(t, res.Position, batch[0].Position)
	assert.Equal(t, res.Position, sub.Position())

	// And a batch appended while nobody waits.
	mustAppend(t, ctx, s, "order-3", eventstore.Exact(1), numbered("Live", 1, 3))
	more := collect(t, ctx, sub, 3)
	assert.Equal(t, []int64{2, 3, 4}, versions(more))
	requireNothingMore(t, ctx, sub)
}

func testSubscriptionResume(t *testing.T, ctx context.Context, s eventstore.Store) {
	for i := range 4 {
		mustAppend(t, ctx, s, "order-"+string(rune('a'+i)), eventstore.NoStream, numbered("T", 0, 3))
	}
	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	require.Len(t, log, 12)

	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{BatchSize: 5, PollInterval: noPollBackup})
	require.NoError(t, err)
	first := collect(t, ctx, sub, 5)
	checkpoint := sub.Position()
	assert.Equal(t, log[4].Position, checkpoint)
	require.NoError(t, sub.Close())

	sub2, err := s.Subscribe(ctx, checkpoint, eventstore.SubscribeOptions{PollInterval: noPollBackup})
	require.NoError(t, err)
	defer sub2.Close()
	assert.Equal(t, checkpoint, sub2.Position())
	rest := collect(t, ctx, sub2, 7)
	assert.Equal(t, ids(log), ids(append(first, rest...)))
	requireNothingMore(t, ctx, sub2)

	// From any event's position, a subscription delivers exactly the rest.
	for k := range log {
		sub, err := s.Subscribe(ctx, log[k].Position, eventstore.SubscribeOptions{PollInterval: noPollBackup})
		require.NoError(t, err)
		if k < len(log)-1 {
			got := collect(t, ctx, sub, len(log)-1-k)
			assert.Equal(t, ids(log[k+1:]), ids(got), "resume after log[%d]", k)
		}
		requireNothingMore(t, ctx, sub)
		require.NoError(t, sub.Close())
	}
}

func testSubscriptionClose(t *testing.T, ctx context.Context, s eventstore.Store) {
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 2))

	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{PollInterval: noPollBackup})
	require.NoError(t, err)
	collect(t, ctx, sub, 2)
	require.NoError(t, sub.Close())
	require.NoError(t, sub.Close(), "second Close")
	_, err = sub.NextBatch(ctx)
	require.ErrorIs(t, err, eventstore.ErrSubscriptionClosed)
	// Events appended after Close are not delivered.
	mustAppend(t, ctx, s, "order-1", eventstore.Exact(2), numbered("T", 2, 1))
	_, err = sub.NextBatch(ctx)
	require.ErrorIs(t, err, eventstore.ErrSubscriptionClosed)

	// Close from another goroutine wakes a blocked NextBatch.
	sub2, err := s.Subscribe(ctx, head(t, ctx, s), eventstore.SubscribeOptions{PollInterval: noPollBackup})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, liveWait)
		defer cancel()
		_, err := sub2.NextBatch(wctx)
		done <- err
	}()
	require.NoError(t, sub2.Close())
	err = <-done
	require.True(t, errors.Is(err, eventstore.ErrSubscriptionClosed), "NextBatch after a concurrent Close returned %v", err)

	// A cancelled context ends a wait too.
	sub3, err := s.Subscribe(ctx, head(t, ctx, s), eventstore.SubscribeOptions{PollInterval: noPollBackup})
	require.NoError(t, err)
	defer sub3.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = sub3.NextBatch(cctx)
	require.ErrorIs(t, err, context.Canceled)
}

func testSubscriptionFiltered(t *testing.T, ctx context.Context, s eventstore.Store) {
	// Before the subscription: a mix.
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, []eventstore.Event{newEvent("OrderPlaced", `{}`), newEvent("OrderNoted", `{}`)})
	mustAppend(t, ctx, s, "customer-1", eventstore.NoStream, []eventstore.Event{newEvent("OrderPlaced", `{}`)})
	mustAppend(t, ctx, s, "orders-1", eventstore.NoStream, []eventstore.Event{newEvent("OrderPlaced", `{}`)})
	mustAppend(t, ctx, s, "order-2", eventstore.NoStream, []eventstore.Event{newEvent("OrderPaid", `{}`), newEvent("OrderPlaced", `{}`)})

	opts := eventstore.SubscribeOptions{Types: []string{"OrderPlaced", "OrderPaid"}, Categories: []string{"order"}, BatchSize: 1, PollInterval: noPollBackup}
	sub, err := s.Subscribe(ctx, eventstore.Start, opts)
	require.NoError(t, err)
	defer sub.Close()

	type key struct{ stream, typ string }
	keys := func(events []eventstore.RecordedEvent) []key {
		out := make([]key, len(events))
		for i, e := range events {
			out[i] = key{e.StreamID, e.Type}
		}
		return out
	}
	caught := collect(t, ctx, sub, 3)
	assert.Equal(t, []key{{"order-1", "OrderPlaced"}, {"order-2", "OrderPaid"}, {"order-2", "OrderPlaced"}}, keys(caught))
	requireNothingMore(t, ctx, sub)

	// Live: events the filter drops, then one it keeps.
	live := nextBatchLive(t, ctx, sub, func() {
		mustAppend(t, ctx, s, "customer-2", eventstore.NoStream, []eventstore.Event{newEvent("OrderPlaced", `{}`)})
		mustAppend(t, ctx, s, "order-3", eventstore.NoStream, []eventstore.Event{newEvent("OrderNoted", `{}`), newEvent("OrderShipped", `{}`)})
		mustAppend(t, ctx, s, "order-3", eventstore.Exact(2), []eventstore.Event{newEvent("OrderPaid", `{}`)})
	})
	assert.Equal(t, []key{{"order-3", "OrderPaid"}}, keys(live))
	assert.Equal(t, int64(3), live[0].Version)
	requireNothingMore(t, ctx, sub)

	// The filtered delivery is the filtered log.
	want := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: opts.Types, Categories: opts.Categories})
	assert.Equal(t, ids(want), ids(append(caught, live...)))
}
