package shipping

import (
	"errors"
	"time"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
)

// Module is the shipping context's registration in an app.
type Module struct {
	// Now is the clock shipments are scheduled by; nil means time.Now.
	Now func() time.Time
}

var _ app.CommandModule = Module{}

// Name implements app.Module.
func (Module) Name() string { return "shipping" }

// RegisterCommands implements app.CommandModule.
func (m Module) RegisterCommands(c *app.Commands) error {
	now := m.Now
	if now == nil {
		now = time.Now
	}
	h := handlers{shipments: aggregate.NewRepository(c.Store, c.Registry, "shipment", NewShipment, aggregate.Config{}), now: now}
	return errors.Join(
		command.Register(c.Dispatcher, h.scheduleShipment, command.AppendOnly()),
		command.Register(c.Dispatcher, h.cancelShipment, command.AppendOnly()),
	)
}
