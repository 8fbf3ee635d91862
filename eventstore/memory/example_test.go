package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
)

func Example() {
	ctx := context.Background()
	store := memory.New(memory.Config{})

	// Open a stream: NoStream makes the append fail if it already exists.
	res, err := store.Append(ctx, "order-42", eventstore.NoStream, []eventstore.Event{
		{Type: "OrderPlaced", Data: json.RawMessage(`{"sku":"A-1","qty":2}`)},
		{Type: "OrderPaid", Data: json.RawMessage(`{"amount":"25.00"}`)},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("appended versions %d-%d at %s\n", res.FirstVersion, res.Version, res.Position)

	// Continue it, expecting version 2.
	if _, err := store.Append(ctx, "order-42", eventstore.Exact(2), []eventstore.Event{
		{Type: "OrderShipped", Data: json.RawMessage(`{"carrier":"post"}`)},
	}); err != nil {
		panic(err)
	}

	// A writer that read version 2 earlier loses the race.
	_, err = store.Append(ctx, "order-42", eventstore.Exact(2), []eventstore.Event{{Type: "OrderCancelled"}})
	var conflict *eventstore.ConcurrencyError
	if errors.As(err, &conflict) {
		fmt.Printf("conflict: expected %s, stream is at %d\n", conflict.Expected, conflict.Actual)
	}

	events, err := store.ReadStream(ctx, "order-42", eventstore.ReadStreamOptions{})
	if err != nil {
		panic(err)
	}
	// Data comes back as PostgreSQL's jsonb gives it: keys ordered by
	// length, then bytewise, with ", " and ": " between items.
	for _, e := range events {
		fmt.Printf("v%d %s %s\n", e.Version, e.Type, e.Data)
	}
	// Output:
	// appended versions 1-2 at 1.2
	// conflict: expected version 2, stream is at 3
	// v1 OrderPlaced {"qty": 2, "sku": "A-1"}
	// v2 OrderPaid {"amount": "25.00"}
	// v3 OrderShipped {"carrier": "post"}
}

func ExampleStore_ReadLog() {
	ctx := context.Background()
	store := memory.New(memory.Config{})
	for _, stream := range []string{"order-1", "customer-7", "order-2"} {
		if _, err := store.Append(ctx, stream, eventstore.Any, []eventstore.Event{{Type: "Created"}}); err != nil {
			panic(err)
		}
	}

	// Every event of category "order", in log order, a page at a time.
	after := eventstore.Start
	for {
		page, err := store.ReadLog(ctx, after, eventstore.ReadLogOptions{Categories: []string{"order"}, Limit: 1})
		if err != nil {
			panic(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			fmt.Println(e.Position, e.StreamID, e.Type)
		}
		after = page[len(page)-1].Position
	}
	// Output:
	// 1.1 order-1 Created
	// 3.3 order-2 Created
}

func ExampleStore_Subscribe() {
	ctx := context.Background()
	store := memory.New(memory.Config{})
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "OrderPlaced"}}); err != nil {
		panic(err)
	}

	sub, err := store.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{})
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	// Catch up, then receive an event appended later.
	go func() {
		if _, err := store.Append(ctx, "order-1", eventstore.Exact(1), []eventstore.Event{{Type: "OrderPaid"}}); err != nil {
			panic(err)
		}
	}()
	for range 2 {
		e, err := sub.Next(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(e.StreamID, e.Version, e.Type)
	}
	fmt.Println("checkpoint", sub.Position())
	// Output:
	// order-1 1 OrderPlaced
	// order-1 2 OrderPaid
	// checkpoint 2.2
}
