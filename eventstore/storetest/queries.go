package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// RunQueries runs the acceptance suite of the log queries beyond Run's:
// reading one event by ID (eventstore.EventReader) and bounding a log read
// by time (eventstore.ReadLogOptions.Since). Call it, besides Run, for a
// store that offers them:
//
//	storetest.RunQueries(t, func(t *testing.T) eventstore.Store { return memory.New(memory.Config{}) })
//
// A store that does not implement eventstore.EventReader fails the suite:
// calling it is the claim that the store does. newStore is as for Run; of
// the options only WithTimeout's subtest deadline applies.
func RunQueries(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts ...Option) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s eventstore.Store)
	}{
		{"ReadEvent", testReadEvent},
		{"ReadEventNotFound", testReadEventNotFound},
		{"ReadEventNotHeldBack", testReadEventNotHeldBack},
		{"ReadLogSince", testReadLogSince},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), cfg.timeout)
			defer cancel()
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			tc.fn(t, ctx, s)
		})
	}
}

// eventReader is s as an EventReader, failing the test when it is not one.
func eventReader(t *testing.T, s eventstore.Store) eventstore.EventReader {
	t.Helper()
	r, ok := s.(eventstore.EventReader)
	require.True(t, ok, "%T does not implement eventstore.EventReader", s)
	return r
}

// testReadEvent: ReadEvent gives the same envelope as ReadStream, every
// field included, and a copy of its own.
func testReadEvent(t *testing.T, ctx context.Context, s eventstore.Store) {
	r := eventReader(t, s)
	first := newEvent("OrderPlaced", `{"b": 1, "a": [1.50, {"x": null}]}`)
	first.OccurredAt = time.Date(2020, 2, 29, 23, 59, 59, 999999999, time.UTC)
	first.Metadata = eventstore.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", CommandID: "cmd-1",
		Extra: map[string]string{"tenant": "acme"}, Values: map[string]json.RawMessage{"attempt": json.RawMessage(`2`)}}
	second := eventstore.Event{Type: "OrderPaid", SchemaVersion: 2} // no ID, no data: the store fills them
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, []eventstore.Event{first, second})
	mustAppend(t, ctx, s, "payment-1", eventstore.NoStream, numbered("PaymentTaken", 0, 1))

	for _, stream := range []string{"order-1", "payment-1"} {
		for _, want := range readStream(t, ctx, s, stream, eventstore.ReadStreamOptions{}) {
			got, err := r.ReadEvent(ctx, want.ID)
			require.NoError(t, err, "read event %s", want.ID)
			assert.Equal(t, want, got, "ReadEvent and ReadStream give the same envelope")
		}
	}

	got, err := r.ReadEvent(ctx, first.ID)
	require.NoError(t, err)
	got.Data[0] = '['
	got.Metadata.Extra["tenant"] = "changed"
	got.Metadata.Values["attempt"][0] = '9'
	again, err := r.ReadEvent(ctx, first.ID)
	require.NoError(t, err)
	assert.Equal(t, `{"a": [1.50, {"x": null}], "b": 1}`, string(again.Data), "a reader's changes reached the store")
	assert.Equal(t, "acme", again.Metadata.Extra["tenant"])
	assert.Equal(t, `2`, string(again.Metadata.Values["attempt"]))
}

// testReadEventNotFound: an ID no event has is an *EventNotFoundError that
// names it, in an empty store and beside other events.
func testReadEventNotFound(t *testing.T, ctx context.Context, s eventstore.Store) {
	r := eventReader(t, s)
	check := func(id uuid.UUID) {
		t.Helper()
		got, err := r.ReadEvent(ctx, id)
		require.Error(t, err, "read of missing event %s", id)
		require.ErrorIs(t, err, eventstore.ErrEventNotFound)
		var nf *eventstore.EventNotFoundError
		require.ErrorAs(t, err, &nf)
		assert.Equal(t, id, nf.ID)
		assert.Equal(t, eventstore.RecordedEvent{}, got)
	}
	check(uuid.Must(uuid.NewV7()))
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 0, 3))
	check(uuid.Must(uuid.NewV7()))
	check(uuid.Nil)

	// A refused append leaves nothing to read by ID.
	bad := newEvent("Bad", `{"a":`)
	_, err := s.Append(ctx, "order-1", eventstore.Exact(3), []eventstore.Event{bad})
	require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
	check(bad.ID)
}

// testReadEventNotHeldBack: an event is readable by ID as soon as its append
// returns, as a stream read is, without waiting for the log's head.
func testReadEventNotHeldBack(t *testing.T, ctx context.Context, s eventstore.Store) {
	r := eventReader(t, s)
	e := newEvent("T", `{}`)
	res, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{e})
	require.NoError(t, err)
	got, err := r.ReadEvent(ctx, e.ID)
	require.NoError(t, err)
	assert.Equal(t, res.Position, got.Position)
	assert.Equal(t, "order-1", got.StreamID)
	assert.Equal(t, int64(1), got.Version)
}

// testReadLogSince: Since keeps the events recorded at or after it, exactly
// (to the microsecond the stores keep), with every other filter, across
// pages and from any position; the oracle is the whole log filtered here.
func testReadLogSince(t *testing.T, ctx context.Context, s eventstore.Store) {
	// Two generations of events: the second recorded strictly later than
	// the first, by the store's own clock.
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("Old", 0, 3))
	mustAppend(t, ctx, s, "payment-1", eventstore.NoStream, numbered("Old", 3, 2))
	oldLog := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	lastOld := oldLog[len(oldLog)-1].RecordedAt
	var cut time.Time
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 1000, "the store's clock did not pass %s", lastOld)
		res := mustAppend(t, ctx, s, fmt.Sprintf("order-%d", attempt+2), eventstore.NoStream, numbered("New", 0, 2))
		got := readStream(t, ctx, s, res.StreamID, eventstore.ReadStreamOptions{})
		if got[0].RecordedAt.After(lastOld) {
			cut = got[0].RecordedAt
			break
		}
		time.Sleep(time.Millisecond) // paces the retries; no outcome depends on it
	}
	mustAppend(t, ctx, s, "payment-1", eventstore.Exact(2), numbered("New", 5, 2))
	mustAppend(t, ctx, s, "order-1", eventstore.Exact(3), numbered("Newer", 0, 2))
	all := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})

	// want is the log after a position, filtered here.
	want := func(after eventstore.Position, opts eventstore.ReadLogOptions) []uuid.UUID {
		out := []uuid.UUID{}
		for _, e := range all {
			if !after.Before(e.Position) ||
				(len(opts.Types) > 0 && !contains(opts.Types, e.Type)) ||
				(len(opts.Categories) > 0 && !contains(opts.Categories, eventstore.Category(e.StreamID))) ||
				(!opts.Since.IsZero() && e.RecordedAt.Before(opts.Since)) {
				continue
			}
			out = append(out, e.ID)
		}
		return out
	}
	zone := time.FixedZone("UTC-3", -3*3600)
	cases := []struct {
		name  string
		after eventstore.Position
		opts  eventstore.ReadLogOptions
		some  bool // the case must keep some events and leave some out
	}{
		{"Zero", eventstore.Start, eventstore.ReadLogOptions{}, false},
		{"AtCut", eventstore.Start, eventstore.ReadLogOptions{Since: cut}, true},
		{"OtherZone", eventstore.Start, eventstore.ReadLogOptions{Since: cut.In(zone)}, true},
		{"JustBeforeCut", eventstore.Start, eventstore.ReadLogOptions{Since: cut.Add(-time.Nanosecond)}, true},
		{"JustAfterCut", eventstore.Start, eventstore.ReadLogOptions{Since: cut.Add(time.Nanosecond)}, false},
		{"FarPast", eventstore.Start, eventstore.ReadLogOptions{Since: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}, false},
		{"Future", eventstore.Start, eventstore.ReadLogOptions{Since: time.Now().Add(24 * time.Hour)}, false},
		{"Paged", eventstore.Start, eventstore.ReadLogOptions{Since: cut, Limit: 2}, true},
		{"AfterPosition", all[len(all)-3].Position, eventstore.ReadLogOptions{Since: cut}, false},
		{"Types", eventstore.Start, eventstore.ReadLogOptions{Since: cut, Types: []string{"Old", "New"}}, true},
		{"Categories", eventstore.Start, eventstore.ReadLogOptions{Since: cut, Categories: []string{"payment"}}, true},
		{"TypesAndCategories", eventstore.Start, eventstore.ReadLogOptions{Since: cut, Types: []string{"Old", "New"}, Categories: []string{"order"}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := want(tc.after, tc.opts)
			got := readWholeLog(t, ctx, s, tc.after, tc.opts)
			assert.Equal(t, w, ids(got))
			for _, e := range got {
				assert.False(t, e.RecordedAt.Before(tc.opts.Since), "event %s recorded at %s, before %s", e.ID, e.RecordedAt, tc.opts.Since)
			}
			if tc.some {
				assert.NotEmpty(t, w, "the case keeps events")
				assert.Less(t, len(w), len(want(tc.after, eventstore.ReadLogOptions{Types: tc.opts.Types, Categories: tc.opts.Categories})), "the case leaves events out")
			}
			uncapped := tc.opts
			uncapped.Limit = 0
			n, err := eventstore.CountLog(ctx, s, tc.after, uncapped)
			require.NoError(t, err)
			assert.Equal(t, int64(len(w)), n, "CountLog honours Since")
		})
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
