package inventory

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// InventoryLevelsProjection names the projection (and, with Module.Prefix,
// its schema) keeping one row per SKU, and its table.
const InventoryLevelsProjection = "inventory_levels"

// inventoryLevels keeps the units available, reserved and sold per SKU.
// Every event moves units between columns, so every handler is the same
// upsert of deltas.
type inventoryLevels struct {
	*projection.Handlers
	name string
}

func newInventoryLevels(registry *eventstore.Registry, name string) *inventoryLevels {
	p := &inventoryLevels{Handlers: projection.NewHandlers(registry), name: name}
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e StockAdded, rec eventstore.RecordedEvent) error {
		return move(ctx, q, rec, e.SKU, e.Quantity, 0, 0)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e InventoryReserved, rec eventstore.RecordedEvent) error {
		return move(ctx, q, rec, e.SKU, -e.Quantity, e.Quantity, 0)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e ReservationReleased, rec eventstore.RecordedEvent) error {
		return move(ctx, q, rec, e.SKU, e.Quantity, -e.Quantity, 0)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e ReservationCommitted, rec eventstore.RecordedEvent) error {
		return move(ctx, q, rec, e.SKU, 0, -e.Quantity, e.Quantity)
	})
	// InventoryReservationFailed changes no level, so the projection does
	// not subscribe to it (and a SKU that was only ever asked for has no
	// row: GET /inventory/:sku answers 404).
	return p
}

func (p *inventoryLevels) Name() string { return p.name }
func (p *inventoryLevels) Version() int { return 1 }

func (p *inventoryLevels) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `
		CREATE TABLE inventory_levels (
			sku        text PRIMARY KEY,
			available  bigint NOT NULL,
			reserved   bigint NOT NULL,
			sold       bigint NOT NULL,
			updated_at timestamptz NOT NULL
		)`)
	return err
}

// move queues the deltas for the SKU's row, creating it at zero first: it
// never needs the row count, so it may be pipelined.
func move(ctx context.Context, q *projection.Queue, rec eventstore.RecordedEvent, sku string, available, reserved, sold int) error {
	err := q.Exec(ctx, `
		INSERT INTO inventory_levels AS l (sku, available, reserved, sold, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (sku) DO UPDATE SET available = l.available + excluded.available,
			reserved = l.reserved + excluded.reserved, sold = l.sold + excluded.sold,
			updated_at = excluded.updated_at`,
		sku, available, reserved, sold, rec.RecordedAt)
	return err
}
