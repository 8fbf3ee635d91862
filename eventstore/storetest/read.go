package storetest

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

func testReadStream(t *testing.T, ctx context.Context, s eventstore.Store) {
	// order-1 gets versions 1..10 in three appends, interleaved with
	// another stream.
	mustAppend(t, ctx, s, "order-1", eventstore.NoStream, numbered("T", 1, 4))
	mustAppend(t, ctx, s, "order-2", eventstore.NoStream, numbered("T", 1, 2))
	mustAppend(t, ctx, s, "order-1", eventstore.Exact(4), numbered("T", 5, 3))
	mustAppend(t, ctx, s, "order-2", eventstore.Exact(2), numbered("T", 3, 1))
	mustAppend(t, ctx, s, "order-1", eventstore.Exact(7), numbered("T", 8, 3))

	fwd := eventstore.Forward
	bwd := eventstore.Backward
	tests := []struct {
		name string
		opts eventstore.ReadStreamOptions
		want []int64
	}{
		{"ForwardAll", eventstore.ReadStreamOptions{Direction: fwd}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"ForwardFrom", eventstore.ReadStreamOptions{Direction: fwd, From: 4}, []int64{4, 5, 6, 7, 8, 9, 10}},
		{"ForwardFromLimit", eventstore.ReadStreamOptions{Direction: fwd, From: 4, Limit: 3}, []int64{4, 5, 6}},
		{"ForwardLimit", eventstore.ReadStreamOptions{Direction: fwd, Limit: 2}, []int64{1, 2}},
		{"ForwardFromLast", eventstore.ReadStreamOptions{Direction: fwd, From: 10}, []int64{10}},
		{"ForwardPastEnd", eventstore.ReadStreamOptions{Direction: fwd, From: 11}, []int64{}},
		{"ForwardLimitPastEnd", eventstore.ReadStreamOptions{Direction: fwd, From: 9, Limit: 5}, []int64{9, 10}},
		{"BackwardAll", eventstore.ReadStreamOptions{Direction: bwd}, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"BackwardLimit", eventstore.ReadStreamOptions{Direction: bwd, Limit: 3}, []int64{10, 9, 8}},
		{"BackwardFrom", eventstore.ReadStreamOptions{Direction: bwd, From: 5}, []int64{5, 4, 3, 2, 1}},
		{"BackwardFromLimit", eventstore.ReadStreamOptions{Direction: bwd, From: 5, Limit: 2}, []int64{5, 4}},
		{"BackwardFromFirst", eventstore.ReadStreamOptions{Direction: bwd, From: 1}, []int64{1}},
		{"BackwardLimitPastStart", eventstore.ReadStreamOptions{Direction: bwd, From: 2, Limit: 5}, []int64{2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readStream(t, ctx, s, "order-1", tc.opts)
			assert.Equal(t, tc.want, versions(got))
			for _, e := range got {
				assert.Equal(t, "order-1", e.StreamID)
				// data {"n": version} ties each version to its event
				assert.JSONEq(t, `{"n":`+strconv.FormatInt(e.Version, 10)+`}`, string(e.Data))
			}
		})
	}

	t.Run("PositionsFollowVersions", func(t *testing.T) {
		got := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{})
		requireIncreasing(t, got)
		back := readStream(t, ctx, s, "order-1", eventstore.ReadStreamOptions{Direction: bwd})
		require.Len(t, back, len(got))
		for i := range got {
			assert.Equal(t, got[i].ID, back[len(back)-1-i].ID)
			assert.Equal(t, got[i].Position, back[len(back)-1-i].Position)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		for _, opts := range []eventstore.ReadStreamOptions{{}, {Direction: bwd}, {From: 3, Limit: 1}} {
			events, err := s.ReadStream(ctx, "order-404", opts)
			require.Error(t, err)
			assert.Empty(t, events)
			require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
			var nf *eventstore.StreamNotFoundError
			require.ErrorAs(t, err, &nf)
			assert.Equal(t, "order-404", nf.StreamID)
		}
	})
}

func testReadLog(t *testing.T, ctx context.Context, s eventstore.Store) {
	t.Run("Empty", func(t *testing.T) {
		assert.True(t, head(t, ctx, s).IsZero(), "head of an empty store is not Start")
		events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
		require.NoError(t, err)
		assert.Empty(t, events)
	})

	type appended struct {
		stream string
		types  []string
	}
	plan := []appended{
		{"order-1", []string{"OrderPlaced", "OrderPaid"}},
		{"customer-1", []string{"CustomerRegistered"}},
		{"order-2", []string{"OrderPlaced"}},
		{"order", []string{"OrderPlaced"}},    // category "order" (no dash)
		{"orders-1", []string{"OrderPlaced"}}, // category "orders", not "order"
		{"order-1", []string{"OrderShipped", "OrderPaid", "OrderNoted"}},
		{"customer-1", []string{"CustomerMoved", "OrderPlaced"}},
		{"order-2", []string{"OrderPaid"}},
	}
	type entry struct{ stream, typ string }
	var all []entry
	var last eventstore.AppendResult
	for _, a := range plan {
		events := make([]eventstore.Event, len(a.types))
		for i, typ := range a.types {
			events[i] = newEvent(typ, `{"i":`+strconv.FormatInt(int64(len(all)), 10)+`}`)
			all = append(all, entry{a.stream, typ})
		}
		last = mustAppend(t, ctx, s, a.stream, eventstore.Any, events)
	}
	n := len(all)

	log := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{})
	require.Len(t, log, n)
	requireIncreasing(t, log)
	for i, e := range log {
		assert.Equal(t, all[i].stream, e.StreamID, "log[%d]", i)
		assert.Equal(t, all[i].typ, e.Type, "log[%d]", i)
		assert.JSONEq(t, `{"i":`+strconv.FormatInt(int64(i), 10)+`}`, string(e.Data), "log[%d]", i)
	}
	assert.Equal(t, log[n-1].Position, head(t, ctx, s))
	assert.Equal(t, last.Position, log[n-1].Position)

	filter := func(keep func(entry) bool) []eventstore.RecordedEvent {
		var out []eventstore.RecordedEvent
		for i, w := range all {
			if keep(w) {
				out = append(out, log[i])
			}
		}
		return out
	}

	t.Run("OneRead", func(t *testing.T) {
		events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: 100})
		require.NoError(t, err)
		assert.Equal(t, ids(log), ids(events))
	})
	t.Run("AfterPositions", func(t *testing.T) {
		for k := range log {
			events, err := s.ReadLog(ctx, log[k].Position, eventstore.ReadLogOptions{Limit: 100})
			require.NoError(t, err)
			assert.Equal(t, ids(log[k+1:]), ids(events), "after log[%d]", k)
		}
	})
	t.Run("AfterHead", func(t *testing.T) {
		events, err := s.ReadLog(ctx, head(t, ctx, s), eventstore.ReadLogOptions{})
		require.NoError(t, err)
		assert.Empty(t, events)
	})
	t.Run("Limit", func(t *testing.T) {
		events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, ids(log[:2]), ids(events))
		events, err = s.ReadLog(ctx, log[2].Position, eventstore.ReadLogOptions{Limit: 3})
		require.NoError(t, err)
		assert.Equal(t, ids(log[3:6]), ids(events))
		for _, limit := range []int{1, 2, 3, 5} {
			paged := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Limit: limit})
			assert.Equal(t, ids(log), ids(paged), "paging by %d", limit)
		}
	})
	t.Run("Types", func(t *testing.T) {
		want := filter(func(w entry) bool { return w.typ == "OrderPlaced" })
		require.Len(t, want, 5)
		got := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: []string{"OrderPlaced"}})
		assert.Equal(t, ids(want), ids(got))

		want = filter(func(w entry) bool { return w.typ == "OrderPaid" || w.typ == "CustomerMoved" })
		got = readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: []string{"OrderPaid", "CustomerMoved"}})
		assert.Equal(t, ids(want), ids(got))
		got = readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: []string{"OrderPaid", "CustomerMoved"}, Limit: 1})
		assert.Equal(t, ids(want), ids(got), "paging by 1")

		got = readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: []string{"NoSuchType"}})
		assert.Empty(t, got)
	})
	t.Run("Categories", func(t *testing.T) {
		want := filter(func(w entry) bool { return eventstore.Category(w.stream) == "order" })
		require.Len(t, want, 8)
		got := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Categories: []string{"order"}})
		assert.Equal(t, ids(want), ids(got))
		for _, e := range got {
			assert.Contains(t, []string{"order-1", "order-2", "order"}, e.StreamID)
		}

		want = filter(func(w entry) bool { return w.stream == "customer-1" || w.stream == "orders-1" })
		got = readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Categories: []string{"customer", "orders"}, Limit: 2})
		assert.Equal(t, ids(want), ids(got))

		// Resuming from a position in the middle.
		want = filter(func(w entry) bool { return eventstore.Category(w.stream) == "order" })
		got = readWholeLog(t, ctx, s, log[4].Position, eventstore.ReadLogOptions{Categories: []string{"order"}})
		var tail []eventstore.RecordedEvent
		for _, e := range want {
			if log[4].Position.Before(e.Position) {
				tail = append(tail, e)
			}
		}
		assert.Equal(t, ids(tail), ids(got))
	})
	t.Run("TypesAndCategories", func(t *testing.T) {
		want := filter(func(w entry) bool {
			return w.typ == "OrderPlaced" && (eventstore.Category(w.stream) == "order" || eventstore.Category(w.stream) == "customer")
		})
		require.Len(t, want, 4)
		got := readWholeLog(t, ctx, s, eventstore.Start, eventstore.ReadLogOptions{Types: []string{"OrderPlaced"}, Categories: []string{"order", "customer"}})
		assert.Equal(t, ids(want), ids(got))
	})
}

func testReadLogDefaultLimit(t *testing.T, ctx context.Context, s eventstore.Store) {
	n := eventstore.DefaultBatchSize + 50
	mustAppend(t, ctx, s, "bulk-1", eventstore.NoStream, numbered("T", 0, n))
	events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	assert.Len(t, events, eventstore.DefaultBatchSize, "limit 0 means DefaultBatchSize")
	rest, err := s.ReadLog(ctx, events[len(events)-1].Position, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	assert.Len(t, rest, 50)
	all := append(events, rest...)
	requireIncreasing(t, all)
	for i, e := range all {
		require.Equal(t, int64(i+1), e.Version)
	}
}
