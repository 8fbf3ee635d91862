package aggregate_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
)

// Events are plain values, registered under stable names.

type OrderPlaced struct {
	Customer string `json:"customer"`
}

type ItemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type OrderShipped struct{}

var (
	ErrAlreadyPlaced = errors.New("order already placed")
	ErrNotPlaced     = errors.New("order not placed")
	ErrEmptyOrder    = errors.New("cannot ship an empty order")
	ErrShipped       = errors.New("order already shipped")
)

// Order embeds aggregate.Base; its state is in exported fields so that
// snapshots can encode it.
type Order struct {
	aggregate.Base
	Placed  bool           `json:"placed"`
	Shipped bool           `json:"shipped"`
	Items   map[string]int `json:"items"`
}

func NewOrder() *Order { return &Order{Items: map[string]int{}} }

// Apply changes the state for one event; it never fails.
func (o *Order) Apply(event any) {
	switch e := event.(type) {
	case OrderPlaced:
		o.Placed = true
	case ItemAdded:
		o.Items[e.SKU] += e.Quantity
	case OrderShipped:
		o.Shipped = true
	}
}

// Command methods check invariants, then record events.

func (o *Order) Place(customer string) error {
	if o.Placed {
		return ErrAlreadyPlaced
	}
	aggregate.Record(o, OrderPlaced{Customer: customer})
	return nil
}

func (o *Order) AddItem(sku string, quantity int) error {
	switch {
	case !o.Placed:
		return ErrNotPlaced
	case o.Shipped:
		return ErrShipped
	}
	aggregate.Record(o, ItemAdded{SKU: sku, Quantity: quantity})
	return nil
}

func (o *Order) Ship() error {
	switch {
	case !o.Placed:
		return ErrNotPlaced
	case o.Shipped:
		return ErrShipped
	case len(o.Items) == 0:
		return ErrEmptyOrder
	}
	aggregate.Record(o, OrderShipped{})
	return nil
}

func Example() {
	ctx := context.Background()

	reg := eventstore.NewRegistry()
	eventstore.MustRegister[OrderPlaced](reg, "OrderPlaced")
	eventstore.MustRegister[ItemAdded](reg, "ItemAdded")
	eventstore.MustRegister[OrderShipped](reg, "OrderShipped")

	store := memory.New(memory.Config{})
	orders := aggregate.NewRepository(store, reg, "order", NewOrder,
		aggregate.Config{Snapshots: store, SnapshotEvery: 100, SnapshotSchemaVersion: 1})

	// Handle "place order 42": a new aggregate, saved as a new stream.
	o := orders.New("42")
	if err := o.Place("ann"); err != nil {
		panic(err)
	}
	_ = o.AddItem("apple", 3)
	res, err := orders.Save(ctx, o)
	fmt.Println(res.StreamID, res.Version, err)

	// Handle "ship order 42": load, decide, save.
	o, err = orders.Load(ctx, "42")
	if err != nil {
		panic(err)
	}
	fmt.Println(o.Ship(), o.Ship())
	res, err = orders.Save(ctx, o)
	fmt.Println(res.Version, err)

	_, err = orders.Load(ctx, "43")
	fmt.Println(errors.Is(err, aggregate.ErrNotFound))

	// Output:
	// order-42 2 <nil>
	// <nil> order already shipped
	// 3 <nil>
	// true
}
