package shipping_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/shipping"
	"github.com/cairn-es/cairn/internal/pgtest"
)

func TestShipping(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 10)
	a, err := app.New(ctx, app.Config{
		Pool: pool, Schema: pgtest.Schema(t, pool), NoMigrate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, shipping.Module{Now: func() time.Time { return friday }})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	d := a.Deps()
	dispatch := func(cmd any) command.Result {
		t.Helper()
		res, err := d.Dispatcher.Dispatch(ctx, cmd)
		require.NoError(t, err)
		return res
	}
	stream := func(orderID string) []any {
		t.Helper()
		recs, err := d.Store.ReadStream(ctx, "shipment-"+orderID, eventstore.ReadStreamOptions{})
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		require.NoError(t, err)
		var out []any
		for _, rec := range recs {
			e, err := d.Registry.Decode(rec)
			require.NoError(t, err)
			out = append(out, e)
		}
		return out
	}

	require.Equal(t, "shipment-o-1", dispatch(shipping.ScheduleShipment{OrderID: "o-1"}).StreamID)
	require.Equal(t, command.Result{CommandID: "again"},
		dispatch(command.Envelope{ID: "again", Payload: shipping.ScheduleShipment{OrderID: "o-1"}}))
	dispatch(shipping.CancelShipment{OrderID: "o-1"})
	require.Equal(t, command.Result{CommandID: "twice"},
		dispatch(command.Envelope{ID: "twice", Payload: shipping.CancelShipment{OrderID: "o-1"}}))
	require.Equal(t, []any{scheduled, cancelled}, stream("o-1"))

	// Cancelling a shipment never scheduled does nothing, and leaves no
	// stream behind.
	require.Equal(t, command.Result{CommandID: "none"},
		dispatch(command.Envelope{ID: "none", Payload: shipping.CancelShipment{OrderID: "o-2"}}))
	require.Nil(t, stream("o-2"))
}
