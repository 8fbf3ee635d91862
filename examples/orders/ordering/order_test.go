package ordering_test

import (
	"testing"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/aggregate/aggregatetest"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/ordering"
)

func registry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	if err := (ordering.Module{}).RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// order starts a scenario for order "o-1" whose history goes through the
// registry's JSON encoding, as a repository's would.
func order(t *testing.T) *aggregatetest.Scenario[*ordering.Order] {
	return aggregatetest.For(t, ordering.NewOrder).WithID("o-1").WithRegistry(registry(t))
}

var (
	items = []ordering.Item{
		{SKU: "tea", Quantity: 2, UnitPriceCents: 450},
		{SKU: "cup", Quantity: 1, UnitPriceCents: 1200},
	}
	placed    = ordering.OrderPlaced{OrderID: "o-1", CustomerID: "c-1", Items: items, TotalCents: 2100}
	reserved  = ordering.OrderReserved{OrderID: "o-1"}
	paid      = ordering.OrderPaid{OrderID: "o-1"}
	completed = ordering.OrderCompleted{OrderID: "o-1", CustomerID: "c-1", TotalCents: 2100, ItemCount: 3}
	rejected  = ordering.OrderRejected{OrderID: "o-1", Reason: "out of stock"}
	cancelled = ordering.OrderCancelled{OrderID: "o-1", Reason: "changed my mind", ByCustomer: true}
)

func TestPlace(t *testing.T) {
	o := order(t).
		When(func(o *ordering.Order) error { return o.Place("c-1", items) }).
		Then(placed)
	if o.Status != ordering.StatusPending || o.TotalCents != 2100 || o.ItemCount != 3 {
		t.Errorf("state after placing: %+v", o)
	}

	order(t).Given(placed).
		When(func(o *ordering.Order) error { return o.Place("c-1", items) }).
		ThenError(ordering.ErrOrderExists)
	order(t).
		When(func(o *ordering.Order) error { return o.Place("c-1", nil) }).
		ThenError(ordering.ErrNoItems)
}

func TestHappyPath(t *testing.T) {
	order(t).Given(placed).When((*ordering.Order).MarkReserved).Then(reserved)
	order(t).Given(placed, reserved).When((*ordering.Order).MarkPaid).Then(paid)
	o := order(t).Given(placed, reserved, paid).When((*ordering.Order).Complete).Then(completed)
	if o.Status != ordering.StatusCompleted {
		t.Errorf("status %s, want completed", o.Status)
	}
}

// The saga may send a transition again: an order at or past it stays as it
// is, without an error.
func TestTransitionsAreIdempotent(t *testing.T) {
	order(t).Given(placed, reserved).When((*ordering.Order).MarkReserved).ThenNothing()
	order(t).Given(placed, reserved, paid).When((*ordering.Order).MarkReserved).ThenNothing()
	order(t).Given(placed, reserved, paid).When((*ordering.Order).MarkPaid).ThenNothing()
	order(t).Given(placed, reserved, paid, completed).When((*ordering.Order).MarkPaid).ThenNothing()
	order(t).Given(placed, reserved, paid, completed).When((*ordering.Order).Complete).ThenNothing()
	order(t).Given(placed, rejected).
		When(func(o *ordering.Order) error { return o.Reject("again") }).
		ThenNothing()
}

func TestTransitionsOutOfOrderAreRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		given []any
		when  func(*ordering.Order) error
	}{
		"pay a pending order":      {[]any{placed}, (*ordering.Order).MarkPaid},
		"complete a pending order": {[]any{placed}, (*ordering.Order).Complete},
		"complete a reserved one":  {[]any{placed, reserved}, (*ordering.Order).Complete},
		"reserve a rejected order": {[]any{placed, rejected}, (*ordering.Order).MarkReserved},
		"reserve a cancelled one":  {[]any{placed, cancelled}, (*ordering.Order).MarkReserved},
		"pay a cancelled order":    {[]any{placed, reserved, cancelled}, (*ordering.Order).MarkPaid},
		"reject a reserved order":  {[]any{placed, reserved}, func(o *ordering.Order) error { return o.Reject("late") }},
		"reject a cancelled order": {[]any{placed, cancelled}, func(o *ordering.Order) error { return o.Reject("late") }},
	} {
		t.Run(name, func(t *testing.T) {
			order(t).Given(tc.given...).When(tc.when).ThenError(ordering.ErrInvalidTransition)
		})
	}
}

func TestCancel(t *testing.T) {
	cancel := func(o *ordering.Order) error { return o.Cancel("changed my mind", true) }
	order(t).Given(placed).When(cancel).Then(cancelled)
	order(t).Given(placed, reserved).When(cancel).Then(cancelled)
	order(t).Given(placed, reserved, paid).When(cancel).Then(cancelled)

	bySystem := ordering.OrderCancelled{OrderID: "o-1", Reason: "payment timed out"}
	order(t).Given(placed, reserved).
		When(func(o *ordering.Order) error { return o.Cancel("payment timed out", false) }).
		Then(bySystem)

	order(t).Given(placed, reserved, paid, completed).When(cancel).ThenError(ordering.ErrOrderNotCancellable)
	order(t).Given(placed, rejected).When(cancel).ThenError(ordering.ErrOrderNotCancellable)
	order(t).Given(placed, cancelled).When(cancel).ThenError(ordering.ErrOrderNotCancellable)
}

func TestStatusErrorSaysWhy(t *testing.T) {
	o := aggregate.New(ordering.NewOrder, "o-1")
	aggregate.Replay(o, placed, rejected)
	err := o.MarkPaid()
	want := "cannot pay order o-1: it is rejected"
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
