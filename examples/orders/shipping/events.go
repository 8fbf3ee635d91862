package shipping

import (
	"errors"

	"github.com/cairn-es/cairn/eventstore"
)

// ShipmentScheduled: an order's shipment will leave on ScheduledFor, a
// date (YYYY-MM-DD).
type ShipmentScheduled struct {
	OrderID      string `json:"order_id"`
	ShipmentID   string `json:"shipment_id"`
	ScheduledFor string `json:"scheduled_for"`
}

// ShipmentCancelled: the shipment will not leave.
type ShipmentCancelled struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

// RegisterEvents registers the context's events; the names are the stored
// type names.
func (Module) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		eventstore.Register[ShipmentScheduled](r, "ShipmentScheduled"),
		eventstore.Register[ShipmentCancelled](r, "ShipmentCancelled"),
	)
}
