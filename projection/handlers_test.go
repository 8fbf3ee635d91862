package projection_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

type Renamed struct {
	N int `json:"n"`
}

// A handler of a type with aliases filters on, and handles, the events
// stored under its old names too.
func TestHandlersHandleEventsStoredUnderAnAlias(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.MustRegister[Renamed](reg, "Renamed", eventstore.Alias("OldName"))
	h := projection.NewHandlers(reg)
	var got []int
	projection.On(h, func(_ context.Context, _ pgx.Tx, e Renamed, _ eventstore.RecordedEvent) error {
		got = append(got, e.N)
		return nil
	})
	require.Equal(t, []string{"OldName", "Renamed"}, h.EventTypes())
	for _, typ := range []string{"OldName", "Renamed"} {
		rec := eventstore.RecordedEvent{Type: typ, SchemaVersion: 1, Data: json.RawMessage(`{"n": 7}`)}
		require.NoError(t, h.Apply(context.Background(), nil, rec))
	}
	require.Equal(t, []int{7, 7}, got)
}
