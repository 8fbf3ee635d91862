package inventory

import (
	"context"
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// handlers are the context's command handlers.
type handlers struct {
	stock *aggregate.Repository[*Inventory]
}

func (h handlers) addStock(ctx context.Context, cmd AddStock) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.SKU, func(i *Inventory) error { return i.AddStock(cmd.Quantity) })
}

func (h handlers) reserveInventory(ctx context.Context, cmd ReserveInventory) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.SKU, func(i *Inventory) error { return i.Reserve(cmd.OrderID, cmd.Quantity) })
}

func (h handlers) releaseReservation(ctx context.Context, cmd ReleaseReservation) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.SKU, func(i *Inventory) error { return i.Release(cmd.OrderID) })
}

func (h handlers) commitReservation(ctx context.Context, cmd CommitReservation) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.SKU, func(i *Inventory) error { return i.Commit(cmd.OrderID) })
}

// update loads the SKU's inventory, applies decide and saves. A SKU nobody
// has stocked is an empty inventory, not a 404: reserving it fails as a
// fact (so the saga rejects the order) and the first AddStock creates it.
// Command methods fail only on domain rules, so their errors are
// rejections (422).
func (h handlers) update(ctx context.Context, sku string, decide func(*Inventory) error) (eventstore.AppendResult, error) {
	inv, err := h.stock.Load(ctx, sku)
	if errors.Is(err, aggregate.ErrNotFound) {
		inv, err = h.stock.New(sku), nil
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := decide(inv); err != nil {
		return eventstore.AppendResult{}, command.Reject(err)
	}
	if len(inv.Changes()) == 0 {
		// Nothing decided: the dispatcher's contract is a zero result,
		// where Save would report the stream's current version.
		return eventstore.AppendResult{}, nil
	}
	return h.stock.Save(ctx, inv)
}
