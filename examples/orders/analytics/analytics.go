// Package analytics is a choreographed reaction of the sample order
// system: it counts how orders move through the funnel (placed, reserved,
// paid, completed; rejected, cancelled) and how payments fare, knowing
// nothing of the fulfilment saga, only the events.
package analytics

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
)

// ReactorName names the reactor and its schema.
const ReactorName = "analytics"

// Linger is how long the reactor lets events gather before it applies
// them (see projection.WithLinger).
const Linger = 25 * time.Millisecond

// Module registers the analytics reactor.
type Module struct {
	// Prefix is prepended to the reactor's name (see
	// ordering.Module.Prefix).
	Prefix string
}

var _ app.ProcessModule = Module{}

// Name implements app.Module.
func (Module) Name() string { return "analytics" }

// RegisterEvents implements app.Module: it has no events of its own.
func (Module) RegisterEvents(*eventstore.Registry) error { return nil }

// RegisterProcesses implements app.ProcessModule.
func (m Module) RegisterProcesses(p *app.Processes) error {
	r := saga.NewReactor(m.Prefix+ReactorName, p.Registry, saga.ReactorConfig{Setup: func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)`)
		return err
	}})
	count[ordering.OrderPlaced](r, "orders_placed")
	count[ordering.OrderReserved](r, "orders_reserved")
	count[ordering.OrderPaid](r, "orders_paid")
	count[ordering.OrderCompleted](r, "orders_completed")
	count[ordering.OrderRejected](r, "orders_rejected")
	count[ordering.OrderCancelled](r, "orders_cancelled")
	count[payment.PaymentCharged](r, "payments_charged")
	count[payment.PaymentFailed](r, "payments_failed")
	count[payment.PaymentRefunded](r, "payments_refunded")
	// Nobody waits on these: they apply what a few milliseconds bring in
	// one transaction rather than one per event.
	return p.Sagas.RegisterReactor(r, projection.WithLinger(Linger))
}

// count makes every event of type E add one to the counter called name.
func count[E any](r *saga.Reactor, name string) {
	saga.React(r, func(ctx context.Context, tx pgx.Tx, _ E, _ eventstore.RecordedEvent) error {
		_, err := tx.Exec(ctx, `INSERT INTO counters (name, value) VALUES ($1, 1)
			ON CONFLICT (name) DO UPDATE SET value = counters.value + 1`, name)
		return err
	})
}

// Counters reads the funnel counters of the reactor's schema.
func Counters(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, schema string) (map[string]int64, error) {
	rows, err := db.Query(ctx, `SELECT name, value FROM `+pgx.Identifier{schema, "counters"}.Sanitize())
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var name string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&name, &v}, func() error { out[name] = v; return nil })
	return out, err
}
