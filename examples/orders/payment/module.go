package payment

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
)

// Module is the payment context's registration in an app.
type Module struct {
	// Gateway charges and refunds; nil means a SimulatedGateway that
	// approves everything at once.
	Gateway Gateway
}

var _ app.Module = Module{}

// Name implements app.Module.
func (Module) Name() string { return "payment" }

// Register implements app.Module.
func (m Module) Register(d *app.Deps) error {
	gw := m.Gateway
	if gw == nil {
		gw = &SimulatedGateway{}
	}
	h := handlers{payments: aggregate.NewRepository(d.Store, d.Registry, "payment", NewPayment), gateway: gw}
	return errors.Join(
		command.Register(d.Dispatcher, h.chargePayment),
		command.Register(d.Dispatcher, h.refundPayment),
	)
}
