// Package notification is a choreographed reaction of the sample order
// system: it tells customers what happened to their orders, knowing
// nothing of the fulfilment saga, only the order events.
//
// It does not send mail: it writes each message to its outbox table
// (notifications), keyed by the event that caused it, which is what a
// mailer would read. Its handler runs at least once per event (see
// saga.Reactor); the key makes a message be written once.
package notification

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
)

// ReactorName names the reactor and its schema.
const ReactorName = "notifications"

// Linger is how long the reactor lets events gather before it applies
// them (see projection.WithLinger).
const Linger = 25 * time.Millisecond

// Module registers the notification reactor.
type Module struct {
	// Prefix is prepended to the reactor's name (see
	// ordering.Module.Prefix).
	Prefix string
}

var _ app.ProcessModule = Module{}

// Name implements app.Module.
func (Module) Name() string { return "notification" }

// RegisterEvents implements app.Module: it has no events of its own.
func (Module) RegisterEvents(*eventstore.Registry) error { return nil }

// RegisterProcesses implements app.ProcessModule.
func (m Module) RegisterProcesses(p *app.Processes) error {
	r := saga.NewReactor(m.Prefix+ReactorName, p.Registry, saga.ReactorConfig{Setup: setup})
	saga.React(r, func(ctx context.Context, tx pgx.Tx, e ordering.OrderPlaced, rec eventstore.RecordedEvent) error {
		return notify(ctx, tx, rec, e.OrderID, e.CustomerID, "order_received",
			fmt.Sprintf("We received your order %s (%d lines, %d cents).", e.OrderID, len(e.Items), e.TotalCents))
	})
	saga.React(r, func(ctx context.Context, tx pgx.Tx, e ordering.OrderCompleted, rec eventstore.RecordedEvent) error {
		return notify(ctx, tx, rec, e.OrderID, e.CustomerID, "order_shipped",
			fmt.Sprintf("Your order %s is on its way.", e.OrderID))
	})
	saga.React(r, func(ctx context.Context, tx pgx.Tx, e ordering.OrderRejected, rec eventstore.RecordedEvent) error {
		return notify(ctx, tx, rec, e.OrderID, "", "order_rejected",
			fmt.Sprintf("Sorry, we could not fulfil order %s: %s.", e.OrderID, e.Reason))
	})
	saga.React(r, func(ctx context.Context, tx pgx.Tx, e ordering.OrderCancelled, rec eventstore.RecordedEvent) error {
		return notify(ctx, tx, rec, e.OrderID, "", "order_cancelled",
			fmt.Sprintf("Order %s was cancelled: %s.", e.OrderID, e.Reason))
	})
	// Nobody waits on these: they apply what a few milliseconds bring in
	// one transaction rather than one per event.
	return p.Sagas.RegisterReactor(r, projection.WithLinger(Linger))
}

func setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE notifications (
		event_id    uuid PRIMARY KEY,
		order_id    text NOT NULL,
		customer_id text NOT NULL,
		kind        text NOT NULL,
		message     text NOT NULL,
		created_at  timestamptz NOT NULL DEFAULT now())`)
	return err
}

// notify writes one message. The customer of a rejected or cancelled
// order is not in its event: it is filled from the order's first message.
func notify(ctx context.Context, tx pgx.Tx, rec eventstore.RecordedEvent, orderID, customerID, kind, message string) error {
	_, err := tx.Exec(ctx, `INSERT INTO notifications (event_id, order_id, customer_id, kind, message)
		VALUES ($1, $2, coalesce(nullif($3, ''), (SELECT customer_id FROM notifications WHERE order_id = $2 AND kind = 'order_received'), ''), $4, $5)
		ON CONFLICT (event_id) DO NOTHING`, rec.ID, orderID, customerID, kind, message)
	return err
}
