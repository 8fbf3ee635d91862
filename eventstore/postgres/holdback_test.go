package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// An event held back behind a transaction in flight is delivered soon
// after that transaction ends, even when no wake-up is left to announce
// it: here both events were appended before the subscription existed, and
// the read that delivered the first said the second was held back. The
// subscription's safety-net poll is 30 s, so only the held-back re-reads
// can deliver it within the test's 5 s.
func TestHeldBackEventIsReadAgainWithoutAWakeUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := newStore(t)
	event := func() []eventstore.Event {
		return []eventstore.Event{{Type: "Noted", Data: []byte(`{}`)}}
	}
	_, err := s.Append(ctx, "note-1", eventstore.NoStream, event())
	require.NoError(t, err)

	// A transaction with an ID, older than the second append.
	holder, err := pgtest.Pool(t, 1).Begin(ctx)
	require.NoError(t, err)
	ended := make(chan struct{})
	end := func() { _ = holder.Rollback(context.Background()); close(ended) }
	_, err = holder.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)
	_, err = s.Append(ctx, "note-2", eventstore.NoStream, event())
	require.NoError(t, err)

	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{PollInterval: 30 * time.Second})
	if err != nil {
		end()
		t.Fatal(err)
	}
	defer sub.Close()
	first, err := sub.NextBatch(ctx)
	require.NoError(t, err)
	require.Len(t, first, 1)
	require.Equal(t, "note-1", first[0].StreamID, "the first event is below the horizon")

	released := time.Now()
	go func() {
		time.Sleep(100 * time.Millisecond)
		end()
	}()
	second, err := sub.NextBatch(ctx)
	<-ended
	require.NoError(t, err, "the held-back event was not read again once its holder ended")
	require.Len(t, second, 1)
	require.Equal(t, "note-2", second[0].StreamID)
	require.Less(t, time.Since(released), 2*time.Second)
}

// countingReader counts the log reads of a subscription.
type countingReader struct {
	*postgres.Store
	reads atomic.Int64
}

func (c *countingReader) ReadLogHoldback(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) ([]eventstore.RecordedEvent, bool, error) {
	c.reads.Add(1)
	return c.Store.ReadLogHoldback(ctx, after, opts)
}

// A subscription that read everything committed does not read again until
// a wake-up says there is more; one whose page was full reads on at once.
// (Other tests' transactions may hold the cluster's horizon back, which
// adds re-reads of held-back events: the test counts reads only where no
// event it wants can be held back.)
func TestCaughtUpSubscriptionReadsOnlyWhenWoken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStore(t)
	reader := &countingReader{Store: s}
	note := func(stream string) {
		t.Helper()
		_, err := s.Append(ctx, stream, eventstore.Any, []eventstore.Event{{Type: "Noted", Data: []byte(`{}`)}})
		require.NoError(t, err)
	}
	note("note-1")
	note("note-2")
	note("note-3")
	// The test wakes the subscription itself: no NOTIFY, no poll.
	var wake eventstore.Broadcaster
	sub := eventstore.NewSubscription(reader, &wake, eventstore.Start, eventstore.SubscribeOptions{BatchSize: 2, PollInterval: time.Hour})
	defer sub.Close()

	// Three events in pages of two, with no wake-up: a full page is
	// followed by a read at once.
	var got []string
	for len(got) < 3 {
		batch, err := sub.NextBatch(ctx)
		require.NoError(t, err, "delivered without a wake-up")
		for _, e := range batch {
			got = append(got, e.StreamID)
		}
	}
	require.Equal(t, []string{"note-1", "note-2", "note-3"}, got)

	// One more, announced: the read that delivers it finds nothing else
	// this subscription wants, so the subscription is caught up.
	note("note-4")
	wake.Broadcast()
	batch, err := sub.NextBatch(ctx)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	reads := reader.reads.Load()
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = sub.NextBatch(wctx)
	wcancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, reads, reader.reads.Load(), "caught up: no read without a wake-up")

	note("note-5")
	wake.Broadcast()
	batch, err = sub.NextBatch(ctx)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	require.Equal(t, "note-5", batch[0].StreamID)
}
