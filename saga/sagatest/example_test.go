package sagatest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/saga/sagatest"
)

// The example's domain: a subscription that must be paid within a day of
// its invoice being sent.
type (
	SubscriptionStarted struct{ ID string }
	InvoicePaid         struct{ SubscriptionID string }
	SendInvoice         struct{ SubscriptionID string }
	CancelSubscription  struct {
		ID     string
		Reason string
	}
)

type billing struct{ CancelledAt time.Time }

func billingSaga() *saga.Definition[billing] {
	registry := eventstore.NewRegistry()
	eventstore.MustRegister[SubscriptionStarted](registry, "SubscriptionStarted")
	eventstore.MustRegister[InvoicePaid](registry, "InvoicePaid")

	d := saga.New[billing]("subscription_billing", registry)
	saga.StartOn(d, func(e SubscriptionStarted) string { return e.ID },
		func(c *saga.Context[billing], e SubscriptionStarted) error {
			c.Send(SendInvoice{SubscriptionID: e.ID}, saga.Deadline("unpaid", 24*time.Hour))
			return nil
		})
	saga.On(d, func(e InvoicePaid) string { return e.SubscriptionID },
		func(c *saga.Context[billing], e InvoicePaid) error {
			c.Complete("paid")
			return nil
		})
	saga.OnTimeout(d, "unpaid", func(c *saga.Context[billing]) error {
		c.State.CancelledAt = c.Now()
		c.Send(CancelSubscription{ID: c.InstanceID(), Reason: "unpaid"}, saga.Always())
		c.Complete("cancelled")
		return nil
	})
	return d
}

// exampleT stands in for the *testing.T of a real test.
type exampleT struct {
	testing.TB
	failed bool
}

func (t *exampleT) Helper()               {}
func (t *exampleT) Name() string          { return "ExampleFor" }
func (t *exampleT) Errorf(string, ...any) { t.failed = true }
func (t *exampleT) Failed() bool          { return t.failed }

func ExampleFor() {
	t := &exampleT{} // in a test, the *testing.T
	monday := time.Date(2025, time.March, 3, 9, 0, 0, 0, time.UTC)

	// Started, the saga sends the invoice with a day to pay it.
	sagatest.For(t, billingSaga()).
		When(SubscriptionStarted{ID: "s-1"}).
		Then(sagatest.Expect{Commands: []sagatest.Command{
			sagatest.Send(SendInvoice{SubscriptionID: "s-1"}, saga.Deadline("unpaid", 24*time.Hour)),
		}})
	fmt.Println(t.Failed())

	// Unpaid a day after the invoice went out (the relay sent it an hour
	// after the start), the subscription is cancelled.
	s := sagatest.For(t, billingSaga()).WithStart(monday).
		Given(sagatest.Unsent(SubscriptionStarted{ID: "s-1"}), sagatest.After(time.Hour), sagatest.Relay()).
		When(sagatest.Timeout("unpaid")).
		Then(sagatest.Expect{
			Commands: []sagatest.Command{sagatest.Send(CancelSubscription{ID: "s-1", Reason: "unpaid"}, saga.Always())},
			Status:   saga.StatusCompleted, Outcome: "cancelled",
		})
	fmt.Println(s.CancelledAt, t.Failed())

	// Paid in time, the deadline never fires: the instance has ended.
	sagatest.For(t, billingSaga()).
		Given(SubscriptionStarted{ID: "s-1"}, InvoicePaid{SubscriptionID: "s-1"}).
		When(sagatest.Timeout("unpaid")).
		ThenIgnored()
	fmt.Println(t.Failed())

	// Output:
	// false
	// 2025-03-04 10:00:00 +0000 UTC false
	// false
}
