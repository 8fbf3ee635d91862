package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
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
