package ordering

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// SalesByDayProjection names the projection (and, with Module.Prefix, its
// schema) summing completed orders per day, and its table.
const SalesByDayProjection = "sales_by_day"

// salesByDay sums completed orders per UTC day of their completion. It
// needs only OrderCompleted, which carries the total and the unit count for
// exactly this reason.
type salesByDay struct {
	*projection.Handlers
	name string
}

func newSalesByDay(registry *eventstore.Registry, name string) *salesByDay {
	p := &salesByDay{Handlers: projection.NewHandlers(registry), name: name}
	projection.OnQueued(p.Handlers, p.completed)
	return p
}

func (p *salesByDay) Name() string { return p.name }
func (p *salesByDay) Version() int { return 1 }

func (p *salesByDay) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `
		CREATE TABLE sales_by_day (
			day              date PRIMARY KEY,
			orders_completed bigint NOT NULL,
			revenue_cents    bigint NOT NULL,
			items_sold       bigint NOT NULL
		)`)
	return err
}

func (p *salesByDay) completed(ctx context.Context, q *projection.Queue, e OrderCompleted, rec eventstore.RecordedEvent) error {
	// RecordedAt is UTC, so the day is the UTC day, whatever the session's
	// time zone.
	day := rec.RecordedAt.UTC().Format("2006-01-02")
	err := q.Exec(ctx, `
		INSERT INTO sales_by_day (day, orders_completed, revenue_cents, items_sold) VALUES ($1::date, 1, $2, $3)
		ON CONFLICT (day) DO UPDATE SET orders_completed = sales_by_day.orders_completed + 1,
			revenue_cents = sales_by_day.revenue_cents + excluded.revenue_cents,
			items_sold = sales_by_day.items_sold + excluded.items_sold`,
		day, e.TotalCents, e.ItemCount)
	return err
}
