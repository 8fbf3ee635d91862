package inventory

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

// SnapshotEvery is how many events of a SKU's stream pass between two
// snapshots: loading replays at most that many.
const SnapshotEvery = 50

// snapshotVersion is the version of the snapshots' shape (Inventory's
// JSON): change it with the shape, and older snapshots are ignored.
const snapshotVersion = 1

// Module is the inventory context's registration in an app.
type Module struct {
	// Prefix is prepended to the name of the context's projection, which
	// is also the name of its PostgreSQL schema. Leave it empty in a
	// service; tests, and services sharing one database, set it to keep
	// their read models apart.
	Prefix string
}

// Name implements app.Module.
func (Module) Name() string { return "inventory" }

var (
	_ app.CommandModule   = Module{}
	_ app.ReadModelModule = Module{}
	_ app.APIModule       = Module{}
)

// RegisterCommands implements app.CommandModule.
func (Module) RegisterCommands(c *app.Commands) error {
	h := handlers{stock: aggregate.NewRepository(c.Store, c.Registry, "inventory", NewInventory,
		aggregate.Config{Snapshots: c.Store, SnapshotEvery: SnapshotEvery, SnapshotSchemaVersion: snapshotVersion, Logger: c.Logger})}
	return errors.Join(
		command.Register(c.Dispatcher, h.addStock, command.AppendOnly()),
		command.Register(c.Dispatcher, h.reserveInventory, command.AppendOnly()),
		command.Register(c.Dispatcher, h.releaseReservation, command.AppendOnly()),
		command.Register(c.Dispatcher, h.commitReservation, command.AppendOnly()),
	)
}

// RegisterReadModels implements app.ReadModelModule.
func (m Module) RegisterReadModels(r *app.ReadModels) error {
	return r.Projections.Register(newInventoryLevels(r.Registry, m.Prefix+InventoryLevelsProjection))
}

// RegisterAPI implements app.APIModule.
func (m Module) RegisterAPI(a *app.API) error {
	levels := m.Prefix + InventoryLevelsProjection
	q := newQueries(a.DB.Pool, levels)
	return errors.Join(
		query.Register(a.Queries, query.HandlerFunc[GetStockLevel, StockLevel](q.getStockLevel), query.ReadsFrom(levels)),

		// Adding stock is the operators' work, not the customers'.
		server.Command[AddStock](a.Server, "/inventory/:sku/stock", server.WithScopes("write", ordering.OperatorScope)),
		server.Query[GetStockLevel, StockLevel](a.Server, "/inventory/:sku"),
	)
}
