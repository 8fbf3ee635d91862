package shipping_test

import (
	"testing"
	"time"

	"github.com/cairn-es/cairn/aggregate/aggregatetest"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/shipping"
)

func registry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	if err := (shipping.Module{}).RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func forOrder(t *testing.T) *aggregatetest.Scenario[*shipping.Shipment] {
	return aggregatetest.For(t, shipping.NewShipment).WithID("o-1").WithRegistry(registry(t))
}

var (
	friday    = time.Date(2024, 5, 3, 16, 30, 0, 0, time.UTC)
	shipID    = shipping.ShipmentIDFor("o-1")
	scheduled = shipping.ShipmentScheduled{OrderID: "o-1", ShipmentID: shipID, ScheduledFor: "2024-05-06"}
	cancelled = shipping.ShipmentCancelled{OrderID: "o-1", ShipmentID: shipID}
)

func schedule(now time.Time) func(*shipping.Shipment) error {
	return func(s *shipping.Shipment) error { return s.Schedule(now) }
}

func TestSchedule(t *testing.T) {
	forOrder(t).When(schedule(friday)).Then(scheduled)
	forOrder(t).Given(scheduled).When(schedule(friday.AddDate(0, 0, 7))).ThenNothing()
	forOrder(t).Given(scheduled, cancelled).When(schedule(friday)).ThenNothing()

	if shipID != shipping.ShipmentIDFor("o-1") || shipID == shipping.ShipmentIDFor("o-2") {
		t.Error("shipment IDs must be a function of the order ID")
	}
}

func TestCancel(t *testing.T) {
	forOrder(t).Given(scheduled).When((*shipping.Shipment).Cancel).Then(cancelled)
	forOrder(t).Given(scheduled, cancelled).When((*shipping.Shipment).Cancel).ThenNothing()
	forOrder(t).When((*shipping.Shipment).Cancel).ThenNothing()
}

func TestNextWorkingDay(t *testing.T) {
	for now, want := range map[string]string{
		"2024-05-02T23:59:00Z":      "2024-05-03", // Thursday → Friday
		"2024-05-03T10:00:00Z":      "2024-05-06", // Friday → Monday
		"2024-05-04T10:00:00Z":      "2024-05-06", // Saturday → Monday
		"2024-05-05T10:00:00Z":      "2024-05-06", // Sunday → Monday
		"2024-05-05T23:30:00-02:00": "2024-05-07", // Monday 01:30 UTC → Tuesday
		"2024-12-31T12:00:00Z":      "2025-01-01",
	} {
		at, err := time.Parse(time.RFC3339, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := shipping.NextWorkingDay(at).Format(time.DateOnly); got != want {
			t.Errorf("NextWorkingDay(%s) = %s, want %s", now, got, want)
		}
	}
}
