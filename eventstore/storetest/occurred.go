package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// testOccurredAt: a given Event.OccurredAt comes back, in UTC and whole
// microseconds, from every read (stream, log, subscription); an event
// without one reads as occurring when it was recorded; RecordedAt stays the
// store's clock whatever the event says.
func testOccurredAt(t *testing.T, ctx context.Context, s eventstore.Store) {
	// A time in another zone with sub-microsecond digits: the store keeps
	// it as PostgreSQL does.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	given := time.Date(2019, 3, 14, 15, 9, 26, 535897932, zone)
	want := given.UTC().Truncate(time.Microsecond)

	backdated := newEvent("Imported", `{"n":1}`)
	backdated.OccurredAt = given
	plain := newEvent("Placed", `{"n":2}`)
	before := time.Now()
	res := mustAppend(t, ctx, s, "order-1", eventstore.NoStream, []eventstore.Event{backdated, plain})
	after := time.Now()

	check := func(t *testing.T, how string, got []eventstore.RecordedEvent) {
		t.Helper()
		require.Len(t, got, 2, how)
		assert.Equal(t, want, got[0].OccurredAt, "%s: the given time", how)
		assert.Equal(t, time.UTC, got[0].OccurredAt.Location(), "%s: OccurredAt in UTC", how)
		assert.WithinRange(t, got[0].RecordedAt, before.Add(-recentWindow), after.Add(recentWindow), "%s: RecordedAt stays the store's", how)
		assert.Equal(t, got[1].RecordedAt, got[1].OccurredAt, "%s: no time given reads as RecordedAt", how)
		assert.Equal(t, time.UTC, got[1].OccurredAt.Location(), "%s: OccurredAt in UTC", how)
	}
	check(t, "ReadStream", readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{}))
	check(t, "ReadStream backward", reversed(readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{Direction: eventstore.Backward})))
	check(t, "ReadLog", readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{}))
	check(t, "ReadLog filtered", readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Categories: []string{"order"}}))

	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{PollInterval: noPollBackup})
	require.NoError(t, err)
	defer sub.Close()
	check(t, "Subscription", collect(t, ctx, sub, 2))
	assert.Equal(t, res.Position, sub.Position())

	t.Run("OutOfRange", func(t *testing.T) {
		h := head(t, ctx, s)
		for _, at := range []time.Time{
			time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC),
		} {
			bad := newEvent("Bad", `{}`)
			bad.OccurredAt = at
			_, err := s.Append(ctx, "order-1", eventstore.Exact(2), []eventstore.Event{newEvent("Good", `{}`), bad})
			require.ErrorIs(t, err, eventstore.ErrInvalidEvent, "occurred at %s", at)
			var ve *eventstore.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, 1, ve.Index)
			assert.Contains(t, ve.Reason, "occurred_at")
			assert.Equal(t, h, head(t, ctx, s), "a refused append moved the head")
			assert.Equal(t, 2, streamLen(t, ctx, s, "order-1"), "a refused append wrote to the stream")
		}
	})
}

func reversed(events []eventstore.RecordedEvent) []eventstore.RecordedEvent {
	out := make([]eventstore.RecordedEvent, len(events))
	for i, e := range events {
		out[len(events)-1-i] = e
	}
	return out
}
