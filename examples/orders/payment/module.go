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

var _ app.CommandModule = Module{}

// databaseUser is a gateway that keeps its state in PostgreSQL.
type databaseUser interface {
	UseDatabase(pool *pgxpool.Pool, schema string)
}

// Name implements app.Module.
func (Module) Name() string { return "payment" }

// RegisterCommands implements app.CommandModule.
func (m Module) RegisterCommands(c *app.Commands) error {
	gw := m.Gateway
	if gw == nil {
		gw = &SimulatedGateway{}
	}
	if db, ok := gw.(databaseUser); ok {
		db.UseDatabase(c.DB.Pool, m.Prefix+GatewaySchema)
	}
	h := handlers{payments: aggregate.NewRepository(c.Store, c.Registry, "payment", NewPayment, aggregate.Config{}), gateway: gw}
	return errors.Join(
		command.Register(c.Dispatcher, h.chargePayment),
		command.Register(c.Dispatcher, h.refundPayment),
	)
}
