package ordering

import (
	"errors"
	"fmt"
	"regexp"
	"unicode/utf8"
)

// identifier is the shape of customer IDs, SKUs and order IDs: short, and
// safe inside a stream ID and a URL path.
var identifier = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Limits of PlaceOrder, checked by Validate before any I/O.
const (
	MaxItems          = 50
	MaxQuantity       = 1000
	MaxUnitPriceCents = 100_000_000
	MaxReasonLength   = 500 // characters
)

// PlaceOrder places an order. OrderID is optional: without it the handler
// derives one from the command ID (see OrderIDFor), so that a client that
// resends its POST with the same Idempotency-Key names the same order.
type PlaceOrder struct {
	OrderID    string `json:"order_id,omitempty"`
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
}

// Validate checks the client's input; a failure is answered with 422 and
// the message as detail, and costs no database round trip.
func (c PlaceOrder) Validate() error {
	if c.OrderID != "" && !identifier.MatchString(c.OrderID) {
		return errors.New("order_id must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if !identifier.MatchString(c.CustomerID) {
		return errors.New("customer_id must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if len(c.Items) < 1 || len(c.Items) > MaxItems {
		return fmt.Errorf("an order has 1 to %d items", MaxItems)
	}
	seen := make(map[string]bool, len(c.Items))
	for i, it := range c.Items {
		switch {
		case !identifier.MatchString(it.SKU):
			return fmt.Errorf("items[%d].sku must be 1 to 64 of A-Z a-z 0-9 . _ -", i)
		case seen[it.SKU]:
			return fmt.Errorf("items[%d].sku %s appears twice: one line per SKU", i, it.SKU)
		case it.Quantity < 1 || it.Quantity > MaxQuantity:
			return fmt.Errorf("items[%d].quantity must be between 1 and %d", i, MaxQuantity)
		case it.UnitPriceCents < 0 || it.UnitPriceCents > MaxUnitPriceCents:
			return fmt.Errorf("items[%d].unit_price_cents must be between 0 and %d", i, MaxUnitPriceCents)
		}
		seen[it.SKU] = true
	}
	return nil
}

// CancelOrder cancels an order that is not yet completed. On the HTTP route
// (POST /orders/:id/cancel) BindPath takes the order ID from the path and
// sets ByCustomer: a caller of the public API is always the customer.
//
// OrderID and ByCustomer keep their JSON names, although the route
// overwrites them, because the command's JSON encoding is what the
// dispatcher hashes to tell a reused Idempotency-Key from a resubmission:
// a field tagged `json:"-"` would not take part.
type CancelOrder struct {
	OrderID    string `json:"order_id"`
	Reason     string `json:"reason,omitempty"`
	ByCustomer bool   `json:"by_customer"`
}

// BindPath implements server.PathBinder.
func (c *CancelOrder) BindPath(path map[string]string) error {
	c.OrderID = path["id"]
	c.ByCustomer = true
	return nil
}

// Validate checks the client's input.
func (c CancelOrder) Validate() error {
	if !identifier.MatchString(c.OrderID) {
		return errors.New("the order ID must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if utf8.RuneCountInString(c.Reason) > MaxReasonLength {
		return fmt.Errorf("reason must be at most %d characters", MaxReasonLength)
	}
	return nil
}

// The commands below are sent by the fulfilment saga only; they have no
// HTTP route. Each is idempotent: repeating a transition already made
// appends nothing.

// MarkOrderReserved records that the order's items are reserved.
type MarkOrderReserved struct {
	OrderID string `json:"order_id"`
}

// MarkOrderPaid records that the order's total was charged.
type MarkOrderPaid struct {
	OrderID string `json:"order_id"`
}

// CompleteOrder records that the order was fulfilled.
type CompleteOrder struct {
	OrderID string `json:"order_id"`
}

// RejectOrder gives up on a pending order.
type RejectOrder struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}
