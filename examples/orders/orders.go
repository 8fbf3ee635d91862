// Package orders is Cairn's sample system: an order service made of four
// bounded contexts (ordering, inventory, payment, shipping), the
// fulfilment saga that orchestrates them, and two reactions that
// choreograph around them (notification, analytics).
//
// Run it with `make demo` from the repository's root; its binary is
// cmd/orders (serve, demo, and the embedded projection, saga, migrate and
// events commands).
package orders

import (
	"time"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders/analytics"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/inventory"
	"github.com/cairn-es/cairn/examples/orders/notification"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/examples/orders/shipping"
)

// Config configures the system.
type Config struct {
	// Prefix is prepended to the names of the read models, the saga and
	// the reactions, which name PostgreSQL schemas: tests, and systems
	// sharing a database, set it to keep theirs apart.
	Prefix string
	// Gateway is the payment provider (default: a simulated one that
	// approves everything at once).
	Gateway payment.Gateway
	// PaymentTimeout bounds the saga's wait for a payment (default
	// fulfilment.DefaultPaymentTimeout).
	PaymentTimeout time.Duration
	// RemoteShipping: shipping runs as a service of its own (`orders
	// shipping`), reached through the broker (app.Config.Broker), instead
	// of as a context of this process (see shipping.Proxy).
	RemoteShipping bool
}

// Modules returns the system's modules, in registration order.
func Modules(cfg Config) []app.Module {
	var ship app.Module = shipping.Module{}
	if cfg.RemoteShipping {
		ship = shipping.Proxy{}
	}
	return []app.Module{
		ordering.Module{Prefix: cfg.Prefix},
		inventory.Module{Prefix: cfg.Prefix},
		payment.Module{Prefix: cfg.Prefix, Gateway: cfg.Gateway},
		ship,
		fulfilment.Module{Prefix: cfg.Prefix, PaymentTimeout: cfg.PaymentTimeout},
		notification.Module{Prefix: cfg.Prefix},
		analytics.Module{Prefix: cfg.Prefix},
	}
}

// Projections names the system's read models, with cfg's prefix.
func Projections(cfg Config) []string {
	return []string{
		cfg.Prefix + ordering.OrderSummaryProjection,
		cfg.Prefix + ordering.SalesByDayProjection,
		cfg.Prefix + inventory.InventoryLevelsProjection,
	}
}
