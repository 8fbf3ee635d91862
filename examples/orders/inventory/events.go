package inventory

import (
	"errors"

	"github.com/cairn-es/cairn/eventstore"
)

// StockAdded: units of a SKU arrived and are available.
type StockAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// InventoryReserved: units were set aside for an order.
type InventoryReserved struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// InventoryReservationFailed: an order asked for more units than were
// available. Available is how many there were, for the saga's reason and
// for people reading the log.
type InventoryReservationFailed struct {
	SKU       string `json:"sku"`
	OrderID   string `json:"order_id"`
	Quantity  int    `json:"quantity"`
	Available int    `json:"available"`
}

// ReservationReleased: an order's reserved units are available again (the
// order was rejected or cancelled).
type ReservationReleased struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// ReservationCommitted: an order's reserved units are sold.
type ReservationCommitted struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// RegisterEvents registers the context's events; the names are the stored
// type names.
func (Module) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		eventstore.Register[StockAdded](r, "StockAdded"),
		eventstore.Register[InventoryReserved](r, "InventoryReserved"),
		eventstore.Register[InventoryReservationFailed](r, "InventoryReservationFailed"),
		eventstore.Register[ReservationReleased](r, "ReservationReleased"),
		eventstore.Register[ReservationCommitted](r, "ReservationCommitted"),
	)
}
