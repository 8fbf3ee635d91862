package payment

import (
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
)

// Module is the payment context's registration in an app.
type Module struct {
	// Prefix is prepended to GatewaySchema, the schema of the simulated
	// gateway's charges (see ordering.Module.Prefix).
	Prefix string
	// Gateway charges and refunds; nil means a SimulatedGateway that
	// approves everything at once. A gateway that keeps its state in the
	// system's database (a SimulatedGateway, or a type embedding one) is
	// given it, in schema Prefix+GatewaySchema.
	Gateway Gateway
}

var _ app.Module = Module{}

// databaseUser is a gateway that keeps its state in PostgreSQL.
type databaseUser interface {
	UseDatabase(pool *pgxpool.Pool, schema string)
}

// Name implements app.Module.
func (Module) Name() string { return "payment" }

// Register implements app.Module.
func (m Module) Register(d *app.Deps) error {
	gw := m.Gateway
	if gw == nil {
		gw = &SimulatedGateway{}
	}
	if db, ok := gw.(databaseUser); ok {
		db.UseDatabase(d.Store.Pool(), m.Prefix+GatewaySchema)
	}
	h := handlers{payments: aggregate.NewRepository(d.Store, d.Registry, "payment", NewPayment), gateway: gw}
	return errors.Join(
		command.Register(d.Dispatcher, h.chargePayment),
		command.Register(d.Dispatcher, h.refundPayment),
	)
}
