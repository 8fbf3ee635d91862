package saga_test

import (
	"time"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/saga"
)

// The example's domain: a subscription that must be paid within a day.
type (
	SubscriptionStarted struct{ ID string }
	InvoicePaid         struct{ SubscriptionID string }
	SendInvoice         struct{ SubscriptionID string }
	CancelSubscription  struct {
		ID     string
		Reason string
	}
)

type billing struct{ Reminded bool }

// A saga reacts to events by correlation key, keeps state, sends commands
// and sets deadlines. Register it with a Manager; the projection daemon
// applies its events and Manager.Run sends its commands and fires its
// timeouts.
func ExampleNew() {
	registry := eventstore.NewRegistry()
	eventstore.MustRegister[SubscriptionStarted](registry, "SubscriptionStarted")
	eventstore.MustRegister[InvoicePaid](registry, "InvoicePaid")

	d := saga.New[billing]("subscription_billing", registry)
	saga.StartOn(d, func(e SubscriptionStarted) string { return e.ID },
		func(c *saga.Context[billing], e SubscriptionStarted) error {
			c.Send(SendInvoice{SubscriptionID: e.ID})
			c.Schedule("unpaid", 24*time.Hour)
			return nil
		})
	saga.On(d, func(e InvoicePaid) string { return e.SubscriptionID },
		func(c *saga.Context[billing], e InvoicePaid) error {
			c.Complete("paid") // drops the pending timeout
			return nil
		})
	saga.OnTimeout(d, "unpaid", func(c *saga.Context[billing]) error {
		c.Send(CancelSubscription{ID: c.InstanceID(), Reason: "unpaid"})
		c.Complete("cancelled")
		return nil
	})
	// sagas := saga.NewManager(store, projections, dispatcher, registry, saga.Config{})
	// sagas.MustRegister(d)
}
