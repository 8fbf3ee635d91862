package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/retry"
)

// PlaceOrder validates itself and is named after its Go type.
type PlaceOrder struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

func (c PlaceOrder) Validate() error {
	if c.OrderID == "" {
		return errors.New("order ID is required")
	}
	return nil
}

// cancelOrder is named by its CommandName method, on a pointer receiver.
type cancelOrder struct {
	OrderID string `json:"order_id"`
}

func (*cancelOrder) CommandName() string { return "CancelOrder" }

// OrderPlaced is the event PlaceOrder's handler appends.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

// quiet keeps test output free of command logs.
var quiet = command.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

// quietWith is quiet with a retry policy.
func quietWith(p retry.Policy) command.Config { c := quiet; c.Retry = p; return c }

// fastRetry keeps retry tests quick.
var fastRetry = retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}

// counter counts handler calls.
type counter struct{ n atomic.Int32 }

func (c *counter) inc()       { c.n.Add(1) }
func (c *counter) get() int32 { return c.n.Load() }

// save is what an aggregate repository does on Save: stamp the events with
// the command's causation and append them with the command record.
func save(ctx context.Context, store eventstore.Appender, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	var opts []eventstore.AppendOption
	if c, ok := eventstore.CausationFrom(ctx); ok {
		opts = c.Stamp(events)
	}
	return store.Append(ctx, streamID, expected, events, opts...)
}

func event(typ string, data any) eventstore.Event {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return eventstore.Event{Type: typ, Data: b}
}

// placeOrder is PlaceOrder's handler: it creates the order's stream.
func placeOrder(store eventstore.Appender, calls *counter) func(context.Context, PlaceOrder) (eventstore.AppendResult, error) {
	return func(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
		calls.inc()
		return save(ctx, store, "order-"+cmd.OrderID, eventstore.NoStream, event("OrderPlaced", OrderPlaced(cmd)))
	}
}
