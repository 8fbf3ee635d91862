package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/eventstore/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return memory.New(memory.Config{}) })
}

func TestSnapshots(t *testing.T) {
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return memory.New(memory.Config{}) })
}

func events(typ string, n int) []eventstore.Event {
	out := make([]eventstore.Event, n)
	for i := range out {
		out[i] = eventstore.Event{Type: typ, Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}
	}
	return out
}

func TestPositions(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	r1, err := s.Append(ctx, "a-1", eventstore.NoStream, events("T", 2))
	require.NoError(t, err)
	r2, err := s.Append(ctx, "b-1", eventstore.NoStream, events("T", 1))
	require.NoError(t, err)
	// An append that writes nothing uses no position.
	_, err = s.Append(ctx, "b-1", eventstore.Exact(1), nil)
	require.NoError(t, err)
	r3, err := s.Append(ctx, "a-1", eventstore.Exact(2), events("T", 1))
	require.NoError(t, err)

	assert.Equal(t, eventstore.Position{Tx: 1, Seq: 2}, r1.Position)
	assert.Equal(t, eventstore.Position{Tx: 2, Seq: 3}, r2.Position)
	assert.Equal(t, eventstore.Position{Tx: 3, Seq: 4}, r3.Position)
	log, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	var got []eventstore.Position
	for _, e := range log {
		got = append(got, e.Position)
	}
	assert.Equal(t, []eventstore.Position{{Tx: 1, Seq: 1}, {Tx: 1, Seq: 2}, {Tx: 2, Seq: 3}, {Tx: 3, Seq: 4}}, got)

	// ReadLog accepts positions that name no event.
	for _, tc := range []struct {
		after eventstore.Position
		want  int
	}{
		{eventstore.Position{Tx: 0, Seq: 99}, 4},
		{eventstore.Position{Tx: 1, Seq: 0}, 4},
		{eventstore.Position{Tx: 1, Seq: 99}, 2},
		{eventstore.Position{Tx: 3, Seq: 4}, 0},
		{eventstore.Position{Tx: 99, Seq: 0}, 0},
	} {
		events, err := s.ReadLog(ctx, tc.after, eventstore.ReadLogOptions{})
		require.NoError(t, err)
		assert.Len(t, events, tc.want, "after %s", tc.after)
	}
}

func TestMaxEventSize(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{MaxEventSize: 16})
	_, err := s.Append(ctx, "a-1", eventstore.Any, []eventstore.Event{{Type: "T", Data: []byte(`"` + strings.Repeat("x", 14) + `"`)}})
	require.NoError(t, err, "an event of exactly the limit")
	_, err = s.Append(ctx, "a-1", eventstore.Any, []eventstore.Event{{Type: "T", Data: []byte(`"` + strings.Repeat("x", 15) + `"`)}})
	require.ErrorIs(t, err, eventstore.ErrEventTooLarge)
	_, err = s.Append(ctx, "a-1", eventstore.Any, []eventstore.Event{{Type: "T", Data: []byte(`{}`), Metadata: eventstore.Metadata{Extra: map[string]string{"k": strings.Repeat("v", 14)}}}})
	require.ErrorIs(t, err, eventstore.ErrEventTooLarge, "metadata counts towards the limit")

	big := `"` + strings.Repeat("x", eventstore.DefaultMaxEventSize) + `"`
	for _, n := range []int{0, -1} {
		_, err = memory.New(memory.Config{MaxEventSize: n}).Append(ctx, "a-1", eventstore.Any, []eventstore.Event{{Type: "T", Data: []byte(big)}})
		require.ErrorIs(t, err, eventstore.ErrEventTooLarge, "MaxEventSize %d: the default limit", n)
	}
	_, err = memory.New(memory.Config{MaxEventSize: 2 * eventstore.DefaultMaxEventSize}).Append(ctx, "a-1", eventstore.Any, []eventstore.Event{{Type: "T", Data: []byte(big)}})
	require.NoError(t, err, "raised limit")
}

func TestReadLogLimits(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	for i := range 3 {
		_, err := s.Append(ctx, fmt.Sprintf("bulk-%d", i), eventstore.NoStream, events("T", 4000))
		require.NoError(t, err)
	}
	for _, tc := range []struct{ limit, want int }{
		{0, eventstore.DefaultBatchSize},
		{-1, eventstore.DefaultBatchSize},
		{7, 7},
		{eventstore.MaxBatchSize + 1, eventstore.MaxBatchSize},
		{1 << 30, eventstore.MaxBatchSize},
	} {
		got, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: tc.limit})
		require.NoError(t, err)
		assert.Len(t, got, tc.want, "limit %d", tc.limit)
		got, err = s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: tc.limit, Types: []string{"T"}})
		require.NoError(t, err)
		assert.Len(t, got, tc.want, "filtered, limit %d", tc.limit)
	}
}

// TestFilteredReadLog compares filtered log reads, which use the store's
// indexes, with filtering the whole log.
func TestFilteredReadLog(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	cats := []string{"a", "b", "c", "d"}
	types := []string{"T1", "T2", "T3"}
	for range 300 {
		stream := fmt.Sprintf("%s-%d", cats[rng.IntN(len(cats))], rng.IntN(10))
		batch := make([]eventstore.Event, 1+rng.IntN(4))
		for i := range batch {
			batch[i] = eventstore.Event{Type: types[rng.IntN(len(types))]}
		}
		_, err := s.Append(ctx, stream, eventstore.Any, batch)
		require.NoError(t, err)
	}
	all, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: eventstore.MaxBatchSize})
	require.NoError(t, err)

	subset := func(from []string) []string {
		var out []string
		for _, x := range from {
			if rng.IntN(3) == 0 {
				out = append(out, x)
			}
		}
		if len(out) > 0 && rng.IntN(4) == 0 {
			out = append(out, out[0]) // repeated keys are harmless
		}
		return out
	}
	for range 200 {
		opts := eventstore.ReadLogOptions{Types: subset(types), Categories: subset(cats), Limit: 1 + rng.IntN(40)}
		start := rng.IntN(len(all) + 1)
		after := eventstore.Start
		if start > 0 {
			after = all[start-1].Position
		}
		var want []eventstore.RecordedEvent
		for _, e := range all[start:] {
			if len(want) == opts.Limit {
				break
			}
			if (len(opts.Types) == 0 || slices.Contains(opts.Types, e.Type)) &&
				(len(opts.Categories) == 0 || slices.Contains(opts.Categories, eventstore.Category(e.StreamID))) {
				want = append(want, e)
			}
		}
		got, err := s.ReadLog(ctx, after, opts)
		require.NoError(t, err)
		require.Equal(t, len(want), len(got), "%+v after %s", opts, after)
		for i := range want {
			require.Equal(t, want[i].ID, got[i].ID, "%+v after %s, event %d", opts, after, i)
		}
	}
}

func TestChanges(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	wake, stop := s.Changes()
	defer stop()
	_, err := s.Append(ctx, "a-1", eventstore.Any, events("T", 1))
	require.NoError(t, err)
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after an append")
	}
	// Failed and empty appends wake nobody.
	_, err = s.Append(ctx, "a-1", eventstore.NoStream, events("T", 1))
	require.ErrorIs(t, err, eventstore.ErrConcurrency)
	_, err = s.Append(ctx, "a-1", eventstore.Any, nil)
	require.NoError(t, err)
	select {
	case <-wake:
		t.Fatal("wake-up without a write")
	default:
	}
}

func TestSnapshotValidation(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "bad id", Version: 1})
	require.ErrorIs(t, err, eventstore.ErrInvalidStreamID)
	err = s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "a-1", Version: 1, Data: []byte(`{`)})
	require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
	err = s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "a-1", Version: 1})
	require.ErrorIs(t, err, eventstore.ErrInvalidEvent, "empty data")
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "a-1", Version: 1, Data: []byte(`{}`)}))
	got, ok, err := s.LoadSnapshot(ctx, "a-1")
	require.NoError(t, err)
	require.True(t, ok)
	assert.False(t, got.TakenAt.IsZero(), "TakenAt filled in")
	assert.Equal(t, time.UTC, got.TakenAt.Location())
}

// TestConcurrentReadersAndWriters runs appends, reads and snapshot calls
// together, for the race detector.
func TestConcurrentReadersAndWriters(t *testing.T) {
	ctx := t.Context()
	s := memory.New(memory.Config{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				_, err := s.Append(ctx, fmt.Sprintf("s-%d", i%5), eventstore.Any, events("T", 1+i%3),
					eventstore.WithCommand(eventstore.CommandRecord{ID: fmt.Sprintf("c-%d-%d", w, i)}))
				assert.NoError(t, err)
				assert.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "s-0", Version: int64(i), Data: []byte(`{}`)}))
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 200 {
				_, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Categories: []string{"s"}})
				assert.NoError(t, err)
				if _, err := s.ReadStream(ctx, "s-1", eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 3}); err != nil {
					assert.ErrorIs(t, err, eventstore.ErrStreamNotFound)
				}
				_, _, err = s.HandledCommand(ctx, "c-0-0")
				assert.NoError(t, err)
				_, _, err = s.LoadSnapshot(ctx, "s-0")
				assert.NoError(t, err)
				_, err = s.Head(ctx)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	log, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{Limit: eventstore.MaxBatchSize})
	require.NoError(t, err)
	assert.Len(t, log, 4*(67*1+67*2+66*3))
}

func TestCancelledReads(t *testing.T) {
	s := memory.New(memory.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.ReadStream(ctx, "a-1", eventstore.ReadStreamOptions{})
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.Head(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{})
	assert.ErrorIs(t, err, context.Canceled)
}

func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	s := memory.New(memory.Config{})
	batch := events("T", 1)
	i := 0
	for b.Loop() {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i%1000), eventstore.Any, batch); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	ctx := context.Background()
	s := memory.New(memory.Config{})
	b.RunParallel(func(pb *testing.PB) {
		batch := events("T", 1)
		i := 0
		for pb.Next() {
			if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i%1000), eventstore.Any, batch); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkReadLog(b *testing.B) {
	ctx := context.Background()
	s := memory.New(memory.Config{})
	for i := range 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i), eventstore.NoStream, events("T", 1000)); err != nil {
			b.Fatal(err)
		}
	}
	for _, filtered := range []bool{false, true} {
		b.Run(fmt.Sprintf("filtered=%v", filtered), func(b *testing.B) {
			opts := eventstore.ReadLogOptions{}
			if filtered {
				opts.Categories = []string{"bench"}
			}
			after := eventstore.Start
			for b.Loop() {
				page, err := s.ReadLog(ctx, after, opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					after = eventstore.Start
					continue
				}
				after = page[len(page)-1].Position
			}
		})
	}
}

func TestQueries(t *testing.T) {
	storetest.RunQueries(t, func(t *testing.T) eventstore.Store { return memory.New(memory.Config{}) })
}
