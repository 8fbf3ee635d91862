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

var _ app.Module = Module{}

// Name implements app.Module.
func (Module) Name() string { return "shipping" }

// Register implements app.Module.
func (m Module) Register(d *app.Deps) error {
	now := m.Now
	if now == nil {
		now = time.Now
	}
	h := handlers{shipments: aggregate.NewRepository(d.Store, d.Registry, "shipment", NewShipment), now: now}
	return errors.Join(
		command.Register(d.Dispatcher, h.scheduleShipment),
		command.Register(d.Dispatcher, h.cancelShipment),
	)
}
