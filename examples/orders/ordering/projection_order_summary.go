package ordering

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// OrderSummaryProjection names the projection (and, with Module.Prefix, its
// schema) keeping one row per order, and its table.
const OrderSummaryProjection = "order_summary"

// orderSummary keeps one row per order: who placed it, its status, total and
// unit count, and when it was placed and last changed (the events' recording
// times, so a rebuild reproduces them exactly).
type orderSummary struct {
	*projection.Handlers
	name string
}

func newOrderSummary(registry *eventstore.Registry, name string) *orderSummary {
	p := &orderSummary{Handlers: projection.NewHandlers(registry), name: name}
	projection.OnQueued(p.Handlers, p.placed)
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e OrderReserved, rec eventstore.RecordedEvent) error {
		return setStatus(ctx, q, e.OrderID, StatusReserved, rec)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e OrderPaid, rec eventstore.RecordedEvent) error {
		return setStatus(ctx, q, e.OrderID, StatusPaid, rec)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e OrderCompleted, rec eventstore.RecordedEvent) error {
		return setStatus(ctx, q, e.OrderID, StatusCompleted, rec)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e OrderRejected, rec eventstore.RecordedEvent) error {
		return setStatus(ctx, q, e.OrderID, StatusRejected, rec)
	})
	projection.OnQueued(p.Handlers, func(ctx context.Context, q *projection.Queue, e OrderCancelled, rec eventstore.RecordedEvent) error {
		return setStatus(ctx, q, e.OrderID, StatusCancelled, rec)
	})
	return p
}

func (p *orderSummary) Name() string { return p.name }

// Version is the shape of the model; bumping it rebuilds the model from the
// log, blue/green.
func (p *orderSummary) Version() int { return 1 }

// Setup creates the table in the projection's fresh schema. The indexes
// serve GET /orders filtered by customer or status, in created_at order
// with order_id as tie-breaker (keyset pagination).
func (p *orderSummary) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `
		CREATE TABLE order_summary (
			order_id    text PRIMARY KEY,
			customer_id text NOT NULL,
			status      text NOT NULL,
			total_cents bigint NOT NULL,
			item_count  integer NOT NULL,
			created_at  timestamptz NOT NULL,
			updated_at  timestamptz NOT NULL
		);
		CREATE INDEX order_summary_by_created ON order_summary (created_at, order_id);
		CREATE INDEX order_summary_by_customer ON order_summary (customer_id, created_at, order_id);
		CREATE INDEX order_summary_by_status ON order_summary (status, created_at, order_id)`)
	return err
}

// placed upserts, so that the projector never depends on what the table
// holds: applying an event twice gives the same row.
func (p *orderSummary) placed(ctx context.Context, q *projection.Queue, e OrderPlaced, rec eventstore.RecordedEvent) error {
	err := q.Exec(ctx, `
		INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)
		ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
			total_cents = excluded.total_cents, item_count = excluded.item_count,
			created_at = excluded.created_at, updated_at = excluded.updated_at`,
		e.OrderID, e.CustomerID, StatusPending, e.TotalCents, itemCount(e.Items), rec.RecordedAt)
	return err
}

// setStatus queues the order's new status: it never needs the row count,
// so it may be pipelined.
func setStatus(ctx context.Context, q *projection.Queue, orderID string, s Status, rec eventstore.RecordedEvent) error {
	err := q.Exec(ctx, `UPDATE order_summary SET status = $2, updated_at = $3 WHERE order_id = $1`,
		orderID, s, rec.RecordedAt)
	return err
}
