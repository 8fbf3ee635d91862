package inventory

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
)

// ErrInvalidQuantity: a quantity that is not positive. Commands from
// clients are validated before they get here; the check keeps the
// invariant safe from any other sender.
var ErrInvalidQuantity = errors.New("the quantity must be positive")

// Inventory is the stock of one SKU. Its state is in exported fields, the
// JSON of its snapshots.
type Inventory struct {
	aggregate.Base
	// Added counts every unit ever added.
	Added int `json:"added"`
	// Available units can be reserved.
	Available int `json:"available"`
	// Reservations are the units set aside, by order ID. An order leaves
	// the map when its reservation is committed or released.
	Reservations map[string]int `json:"reservations"`
	// Sold units are gone for good.
	Sold int `json:"sold"`
}

// NewInventory returns an empty inventory, for repositories and tests.
func NewInventory() *Inventory { return &Inventory{Reservations: map[string]int{}} }

// Apply changes the state for one event.
func (i *Inventory) Apply(event any) {
	switch e := event.(type) {
	case StockAdded:
		i.Added += e.Quantity
		i.Available += e.Quantity
	case InventoryReserved:
		i.Available -= e.Quantity
		i.Reservations[e.OrderID] = e.Quantity
	case ReservationReleased:
		i.Available += e.Quantity
		delete(i.Reservations, e.OrderID)
	case ReservationCommitted:
		i.Sold += e.Quantity
		delete(i.Reservations, e.OrderID)
	case InventoryReservationFailed:
		// A fact for the saga; the stock is unchanged.
	}
}

// Reserved returns the units reserved for all orders together.
func (i *Inventory) Reserved() int {
	n := 0
	for _, q := range i.Reservations {
		n += q
	}
	return n
}

// AddStock makes quantity more units available.
func (i *Inventory) AddStock(quantity int) error {
	if quantity <= 0 {
		return ErrInvalidQuantity
	}
	aggregate.Record(i, StockAdded{SKU: i.ID(), Quantity: quantity})
	return nil
}

// Reserve sets quantity units aside for an order, or records that it
// could not. An order that holds a reservation already keeps it unchanged,
// so that a saga may send its request again.
func (i *Inventory) Reserve(orderID string, quantity int) error {
	if quantity <= 0 {
		return ErrInvalidQuantity
	}
	if _, ok := i.Reservations[orderID]; ok {
		return nil
	}
	if i.Available < quantity {
		aggregate.Record(i, InventoryReservationFailed{SKU: i.ID(), OrderID: orderID, Quantity: quantity, Available: i.Available})
		return nil
	}
	aggregate.Record(i, InventoryReserved{SKU: i.ID(), OrderID: orderID, Quantity: quantity})
	return nil
}

// Release makes an order's reserved units available again. An order
// without a reservation (never made, failed, released or committed) has
// nothing to release.
func (i *Inventory) Release(orderID string) error {
	if q, ok := i.Reservations[orderID]; ok {
		aggregate.Record(i, ReservationReleased{SKU: i.ID(), OrderID: orderID, Quantity: q})
	}
	return nil
}

// Commit sells an order's reserved units. An order without a reservation
// has nothing to commit.
func (i *Inventory) Commit(orderID string) error {
	if q, ok := i.Reservations[orderID]; ok {
		aggregate.Record(i, ReservationCommitted{SKU: i.ID(), OrderID: orderID, Quantity: q})
	}
	return nil
}
