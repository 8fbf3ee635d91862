package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
)

// RunSnapshots runs the acceptance suite of snapshot stores, each subtest on
// a fresh store from newStore.
func RunSnapshots(t *testing.T, newStore func(t *testing.T) eventstore.SnapshotStore, opts ...Option) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s eventstore.SnapshotStore)
	}{
		{"Missing", testSnapshotMissing},
		{"SaveLoad", testSnapshotSaveLoad},
		{"NewerReplacesOlder", testSnapshotNewer},
		{"OlderIgnored", testSnapshotOlder},
		{"PerStream", testSnapshotPerStream},
		{"SameVersionReplaces", testSnapshotSameVersion},
		{"TakenAtIsTheStores", testSnapshotTakenAt},
		{"InvalidRefused", testSnapshotInvalid},
		{"DataForm", testSnapshotDataForm},
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

func snapshot(streamID string, version int64, data string) eventstore.Snapshot {
	return eventstore.Snapshot{
		StreamID:      streamID,
		Version:       version,
		Type:          "OrderState",
		SchemaVersion: 2,
		Data:          json.RawMessage(data),
		TakenAt:       time.Now().UTC(),
	}
}

func loadSnapshot(t *testing.T, ctx context.Context, s eventstore.SnapshotStore, streamID string) eventstore.Snapshot {
	t.Helper()
	got, ok, err := s.LoadSnapshot(ctx, streamID)
	require.NoError(t, err)
	require.True(t, ok, "no snapshot of %q", streamID)
	return got
}

func requireSnapshot(t *testing.T, want, got eventstore.Snapshot) {
	t.Helper()
	assert.Equal(t, want.StreamID, got.StreamID)
	assert.Equal(t, want.Version, got.Version)
	assert.Equal(t, want.Type, got.Type)
	assert.Equal(t, want.SchemaVersion, got.SchemaVersion)
	assert.JSONEq(t, string(want.Data), string(got.Data))
	// Stores may keep the given TakenAt or stamp their own clock's time.
	assert.WithinDuration(t, want.TakenAt, got.TakenAt, recentWindow, "TakenAt")
}

func testSnapshotMissing(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	got, ok, err := s.LoadSnapshot(ctx, "order-1")
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Zero(t, got.Version)
}

func testSnapshotSaveLoad(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	want := snapshot("order-1", 5, `{ "status": "paid", "lines": [ {"sku": "A", "qty": 2} ] }`)
	require.NoError(t, s.SaveSnapshot(ctx, want))
	got := loadSnapshot(t, ctx, s, "order-1")
	requireSnapshot(t, want, got)

	// What the loader gets is its own.
	if len(got.Data) > 0 {
		got.Data[0] = 'X'
	}
	requireSnapshot(t, want, loadSnapshot(t, ctx, s, "order-1"))
}

func testSnapshotNewer(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	require.NoError(t, s.SaveSnapshot(ctx, snapshot("order-1", 5, `{"v":5}`)))
	newer := snapshot("order-1", 7, `{"v":7}`)
	newer.SchemaVersion = 3
	require.NoError(t, s.SaveSnapshot(ctx, newer))
	requireSnapshot(t, newer, loadSnapshot(t, ctx, s, "order-1"))
}

func testSnapshotOlder(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	current := snapshot("order-1", 7, `{"v":7}`)
	require.NoError(t, s.SaveSnapshot(ctx, current))
	require.NoError(t, s.SaveSnapshot(ctx, snapshot("order-1", 6, `{"v":6}`)), "saving an older snapshot is not an error")
	requireSnapshot(t, current, loadSnapshot(t, ctx, s, "order-1"))
	require.NoError(t, s.SaveSnapshot(ctx, snapshot("order-1", 1, `{"v":1}`)))
	requireSnapshot(t, current, loadSnapshot(t, ctx, s, "order-1"))
}

func testSnapshotPerStream(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	a := snapshot("order-1", 9, `{"s":"a"}`)
	b := snapshot("order-2", 2, `{"s":"b"}`)
	require.NoError(t, s.SaveSnapshot(ctx, a))
	require.NoError(t, s.SaveSnapshot(ctx, b))
	requireSnapshot(t, a, loadSnapshot(t, ctx, s, "order-1"))
	requireSnapshot(t, b, loadSnapshot(t, ctx, s, "order-2"))
	_, ok, err := s.LoadSnapshot(ctx, "order-3")
	require.NoError(t, err)
	assert.False(t, ok)
}

// Saving twice at one version keeps the second save: an aggregate whose
// snapshot shape changed re-takes it at the same version, and the old
// shape must not stay.
func testSnapshotSameVersion(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	require.NoError(t, s.SaveSnapshot(ctx, snapshot("order-1", 5, `{"v":"first"}`)))
	second := snapshot("order-1", 5, `{"v":"second"}`)
	second.SchemaVersion = 3
	require.NoError(t, s.SaveSnapshot(ctx, second))
	requireSnapshot(t, second, loadSnapshot(t, ctx, s, "order-1"))
}

// TakenAt is the store's clock when it saved, in UTC and whole
// microseconds, whatever the caller put there.
func testSnapshotTakenAt(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	sn := snapshot("order-1", 5, `{"v":5}`)
	sn.TakenAt = time.Date(2001, 2, 3, 4, 5, 6, 789, time.FixedZone("X", 3600))
	require.NoError(t, s.SaveSnapshot(ctx, sn))
	got := loadSnapshot(t, ctx, s, "order-1")
	assert.WithinDuration(t, time.Now(), got.TakenAt, recentWindow, "TakenAt is the store's time of saving")
	assert.Equal(t, time.UTC, got.TakenAt.Location())
	assert.Equal(t, got.TakenAt.Truncate(time.Microsecond), got.TakenAt, "TakenAt has sub-microsecond digits")
}

// A snapshot the store could not give back as it is given is refused, with
// the same typed error as an append, and nothing is stored.
func testSnapshotInvalid(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	tests := []struct {
		name     string
		snap     eventstore.Snapshot
		sentinel error
	}{
		{"EmptyStreamID", snapshot("", 1, `{}`), eventstore.ErrInvalidStreamID},
		{"SpaceInStreamID", snapshot("order 1", 1, `{}`), eventstore.ErrInvalidStreamID},
		{"EmptyData", snapshot("order-1", 1, ``), eventstore.ErrInvalidEvent},
		{"DataNotJSON", snapshot("order-1", 1, `{"a":`), eventstore.ErrInvalidEvent},
		{"NULInData", snapshot("order-1", 1, `{"a":"\u0000"}`), eventstore.ErrInvalidEvent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SaveSnapshot(ctx, tc.snap)
			require.ErrorIs(t, err, tc.sentinel)
			var ve *eventstore.ValidationError
			require.ErrorAs(t, err, &ve)
			_, ok, err := s.LoadSnapshot(ctx, tc.snap.StreamID)
			require.NoError(t, err)
			assert.False(t, ok, "a refused snapshot was stored")
		})
	}
}

func testSnapshotDataForm(t *testing.T, ctx context.Context, s eventstore.SnapshotStore) {
	for i, f := range dataForms {
		id := fmt.Sprintf("order-%d", i)
		require.NoError(t, s.SaveSnapshot(ctx, snapshot(id, 1, f.in)))
		assert.Equal(t, f.want, string(loadSnapshot(t, ctx, s, id).Data), "data %s", f.in)
	}
}
