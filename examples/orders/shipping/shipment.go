package shipping

import (
	"time"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/aggregate"
)

// shipmentIDNamespace is the UUID namespace of shipment IDs. It is part of
// their meaning: changing it would rename every shipment scheduled again.
var shipmentIDNamespace = uuid.MustParse("10cf465e-1ae6-4116-9006-adaa4cb0906d")

// ShipmentIDFor returns the ID of an order's shipment: a name-based (SHA-1)
// UUID of the order ID, the same however often it is computed.
func ShipmentIDFor(orderID string) string {
	return uuid.NewSHA1(shipmentIDNamespace, []byte(orderID)).String()
}

// Shipment is the shipment of one order; its ID is the order's.
type Shipment struct {
	aggregate.Base
	ShipmentID   string `json:"shipment_id"`
	ScheduledFor string `json:"scheduled_for"`
	Cancelled    bool   `json:"cancelled"`
}

// NewShipment returns an empty shipment, for repositories and tests.
func NewShipment() *Shipment { return &Shipment{} }

// Apply changes the state for one event.
func (s *Shipment) Apply(event any) {
	switch e := event.(type) {
	case ShipmentScheduled:
		s.ShipmentID, s.ScheduledFor = e.ShipmentID, e.ScheduledFor
	case ShipmentCancelled:
		s.Cancelled = true
	}
}

// Scheduled reports whether the shipment was ever scheduled.
func (s *Shipment) Scheduled() bool { return s.ShipmentID != "" }

// Schedule schedules the order's shipment for the next working day after
// now. An order is shipped once: a shipment scheduled before, even one
// cancelled since, is left as it is. The clock is the caller's, which
// keeps the decision a function of its inputs.
func (s *Shipment) Schedule(now time.Time) error {
	if s.Scheduled() {
		return nil
	}
	aggregate.Record(s, ShipmentScheduled{
		OrderID:      s.ID(),
		ShipmentID:   ShipmentIDFor(s.ID()),
		ScheduledFor: NextWorkingDay(now).Format(time.DateOnly),
	})
	return nil
}

// Cancel cancels a scheduled shipment; anything else has nothing to cancel.
func (s *Shipment) Cancel() error {
	if !s.Scheduled() || s.Cancelled {
		return nil
	}
	aggregate.Record(s, ShipmentCancelled{OrderID: s.ID(), ShipmentID: s.ShipmentID})
	return nil
}

// NextWorkingDay returns the first day after t's (in UTC) that is not a
// Saturday or a Sunday, at midnight UTC.
func NextWorkingDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	day := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
	for day.Weekday() == time.Saturday || day.Weekday() == time.Sunday {
		day = day.AddDate(0, 0, 1)
	}
	return day
}
