package shipping

// The context's commands are sent by the fulfilment saga; they have no HTTP
// route. Both are idempotent.

// ScheduleShipment schedules an order's shipment.
type ScheduleShipment struct {
	OrderID string `json:"order_id"`
}

// CancelShipment cancels an order's shipment, if it is scheduled.
type CancelShipment struct {
	OrderID string `json:"order_id"`
}
