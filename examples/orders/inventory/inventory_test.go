package inventory_test

import (
	"testing"

	"github.com/cairn-es/cairn/aggregate/aggregatetest"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/inventory"
)

func registry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	if err := (inventory.Module{}).RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func tea(t *testing.T) *aggregatetest.Scenario[*inventory.Inventory] {
	return aggregatetest.For(t, inventory.NewInventory).WithID("tea").WithRegistry(registry(t))
}

// balanced checks the invariant: every unit added is in exactly one place.
func balanced(t *testing.T, i *inventory.Inventory) {
	t.Helper()
	if i.Available+i.Reserved()+i.Sold != i.Added {
		t.Errorf("available %d + reserved %d + sold %d != added %d", i.Available, i.Reserved(), i.Sold, i.Added)
	}
}

var (
	added10    = inventory.StockAdded{SKU: "tea", Quantity: 10}
	reserved3  = inventory.InventoryReserved{SKU: "tea", OrderID: "o-1", Quantity: 3}
	released3  = inventory.ReservationReleased{SKU: "tea", OrderID: "o-1", Quantity: 3}
	committed3 = inventory.ReservationCommitted{SKU: "tea", OrderID: "o-1", Quantity: 3}
)

func TestAddStock(t *testing.T) {
	i := tea(t).When(func(i *inventory.Inventory) error { return i.AddStock(10) }).Then(added10)
	balanced(t, i)
	tea(t).When(func(i *inventory.Inventory) error { return i.AddStock(0) }).ThenError(inventory.ErrInvalidQuantity)
}

func TestReserve(t *testing.T) {
	reserve := func(order string, q int) func(*inventory.Inventory) error {
		return func(i *inventory.Inventory) error { return i.Reserve(order, q) }
	}
	i := tea(t).Given(added10).When(reserve("o-1", 3)).Then(reserved3)
	balanced(t, i)
	if i.Available != 7 || i.Reserved() != 3 {
		t.Errorf("after reserving: %+v", i)
	}

	// All that is left is enough; one more unit is not, and that is a fact.
	tea(t).Given(added10, reserved3).When(reserve("o-2", 7)).
		Then(inventory.InventoryReserved{SKU: "tea", OrderID: "o-2", Quantity: 7})
	i = tea(t).Given(added10, reserved3).When(reserve("o-2", 8)).
		Then(inventory.InventoryReservationFailed{SKU: "tea", OrderID: "o-2", Quantity: 8, Available: 7})
	balanced(t, i)
	tea(t).When(reserve("o-2", 1)).
		Then(inventory.InventoryReservationFailed{SKU: "tea", OrderID: "o-2", Quantity: 1, Available: 0})

	// A second request for the same order changes nothing.
	tea(t).Given(added10, reserved3).When(reserve("o-1", 3)).ThenNothing()
	tea(t).Given(added10, reserved3).When(reserve("o-1", 5)).ThenNothing()

	tea(t).Given(added10).When(reserve("o-1", 0)).ThenError(inventory.ErrInvalidQuantity)
}

func TestReleaseAndCommit(t *testing.T) {
	release := func(i *inventory.Inventory) error { return i.Release("o-1") }
	commit := func(i *inventory.Inventory) error { return i.Commit("o-1") }

	i := tea(t).Given(added10, reserved3).When(release).Then(released3)
	balanced(t, i)
	if i.Available != 10 {
		t.Errorf("available %d after releasing, want 10", i.Available)
	}
	i = tea(t).Given(added10, reserved3).When(commit).Then(committed3)
	balanced(t, i)
	if i.Available != 7 || i.Sold != 3 {
		t.Errorf("after committing: %+v", i)
	}

	// Without a reservation there is nothing to do.
	for name, given := range map[string][]any{
		"never reserved": {added10},
		"released":       {added10, reserved3, released3},
		"committed":      {added10, reserved3, committed3},
		"failed":         {inventory.InventoryReservationFailed{SKU: "tea", OrderID: "o-1", Quantity: 3}},
		"unknown SKU":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			tea(t).Given(given...).When(release).ThenNothing()
			tea(t).Given(given...).When(commit).ThenNothing()
		})
	}
}
