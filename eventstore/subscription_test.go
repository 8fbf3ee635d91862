package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
)

// With a Linger, what is appended while the subscription lingers after a
// wake-up comes in the same batch.
func TestLingeringSubscriptionGathersAppendsIntoOneBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := memory.New(memory.Config{})
	note := func(stream string) {
		t.Helper()
		_, err := s.Append(ctx, stream, eventstore.Any, []eventstore.Event{{Type: "Noted", Data: []byte(`{}`)}})
		require.NoError(t, err)
	}
	// The test wakes the subscription itself.
	var wake eventstore.Broadcaster
	sub := eventstore.NewSubscription(s, &wake, eventstore.Start, eventstore.SubscribeOptions{PollInterval: time.Hour, Linger: 200 * time.Millisecond})
	defer sub.Close()

	got := make(chan []eventstore.RecordedEvent, 1)
	go func() {
		b, err := sub.NextBatch(ctx)
		assert.NoError(t, err)
		got <- b
	}()
	time.Sleep(20 * time.Millisecond) // the subscription waits for a wake-up
	note("note-1")
	woken := time.Now()
	wake.Broadcast()
	time.Sleep(50 * time.Millisecond) // within the linger
	note("note-2")
	wake.Broadcast()
	batch := <-got
	require.GreaterOrEqual(t, time.Since(woken), 200*time.Millisecond, "it lingered")
	require.Len(t, batch, 2, "what was appended during the linger came in the same batch")
	require.Equal(t, "note-1", batch[0].StreamID)
	require.Equal(t, "note-2", batch[1].StreamID)
}
