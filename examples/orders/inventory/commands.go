package inventory

import (
	"errors"
	"fmt"
	"regexp"
)

// sku is the shape of a SKU: short, and safe inside a stream ID and a URL
// path (the same rule as the ordering context's).
var sku = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// MaxStockAdded bounds one delivery, to catch typos before they become
// stock.
const MaxStockAdded = 1_000_000

// AddStock adds units of a SKU (POST /inventory/:sku/stock). The route
// takes SKU from the path, which wins over a "sku" in the body; the field
// keeps its JSON name so that it takes part in the payload hash that tells
// a reused Idempotency-Key from a resubmission.
type AddStock struct {
	SKU      string `json:"sku" param:"sku"`
	Quantity int    `json:"quantity"`
}

// Validate checks the client's input; a failure is a 422.
func (c AddStock) Validate() error {
	if !sku.MatchString(c.SKU) {
		return errors.New("the SKU must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if c.Quantity < 1 || c.Quantity > MaxStockAdded {
		return fmt.Errorf("quantity must be between 1 and %d", MaxStockAdded)
	}
	return nil
}

// The commands below are sent by the fulfilment saga only, one per line of
// an order; they have no HTTP route and are idempotent.

// ReserveInventory reserves units of a SKU for an order. Too little stock
// is not an error: the handler records InventoryReservationFailed.
type ReserveInventory struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// ReleaseReservation makes an order's reserved units available again.
type ReleaseReservation struct {
	SKU     string `json:"sku"`
	OrderID string `json:"order_id"`
}

// CommitReservation sells an order's reserved units.
type CommitReservation struct {
	SKU     string `json:"sku"`
	OrderID string `json:"order_id"`
}

// Target implements command.Targeted for every command on a SKU's stock:
// orders reserve and commit the same few products all the time, and
// commands on one product are handled one at a time instead of colliding.
func (c AddStock) Target() string { return "inventory-" + c.SKU }

// Target implements command.Targeted (see AddStock.Target).
func (c ReserveInventory) Target() string { return "inventory-" + c.SKU }

// Target implements command.Targeted (see AddStock.Target).
func (c ReleaseReservation) Target() string { return "inventory-" + c.SKU }

// Target implements command.Targeted (see AddStock.Target).
func (c CommitReservation) Target() string { return "inventory-" + c.SKU }
