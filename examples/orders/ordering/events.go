package ordering

import (
	"errors"

	"github.com/cairn-es/cairn/eventstore"
)

// Item is one line of an order: a quantity of a SKU at a unit price.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderPlaced: a customer placed an order. TotalCents is the sum of the
// items' quantity × unit price, fixed at the time of placing so that later
// price changes never rewrite history.
type OrderPlaced struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// OrderReserved: every item of the order is reserved in inventory.
type OrderReserved struct {
	OrderID string `json:"order_id"`
}

// OrderPaid: the order's total was charged.
type OrderPaid struct {
	OrderID string `json:"order_id"`
}

// OrderCompleted: the order was fulfilled. It repeats the customer, the
// total and the item count (units, all lines together) so that reports of
// sales need no other event.
type OrderCompleted struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	TotalCents int64  `json:"total_cents"`
	ItemCount  int    `json:"item_count"`
}

// OrderRejected: the order could not be fulfilled (too little stock, a
// declined payment) before it was reserved.
type OrderRejected struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderCancelled: the order was called off, by its customer or by the
// system, before it was completed.
type OrderCancelled struct {
	OrderID    string `json:"order_id"`
	Reason     string `json:"reason"`
	ByCustomer bool   `json:"by_customer"`
}

// RegisterEvents registers the context's events under their Go type names,
// which are their stored names: renaming a type must keep its name here.
func (Module) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		eventstore.Register[OrderPlaced](r, "OrderPlaced"),
		eventstore.Register[OrderReserved](r, "OrderReserved"),
		eventstore.Register[OrderPaid](r, "OrderPaid"),
		eventstore.Register[OrderCompleted](r, "OrderCompleted"),
		eventstore.Register[OrderRejected](r, "OrderRejected"),
		eventstore.Register[OrderCancelled](r, "OrderCancelled"),
	)
}
