package inventory

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/examples/orders/ordering"
	"github.com/cairn-es/cairn/projection"
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

var _ app.Module = Module{}

// Name implements app.Module.
func (Module) Name() string { return "inventory" }

// Register implements app.Module.
func (m Module) Register(d *app.Deps) error {
	h := handlers{stock: aggregate.NewRepository(d.Store, d.Registry, "inventory", NewInventory,
		aggregate.WithSnapshots(d.Store, SnapshotEvery, snapshotVersion), aggregate.WithLogger(d.Logger))}
	levels := newInventoryLevels(d.Registry, m.Prefix+InventoryLevelsProjection)
	q := newQueries(d.Store.Pool(), levels.Name())

	return errors.Join(
		command.Register(d.Dispatcher, h.addStock),
		command.Register(d.Dispatcher, h.reserveInventory),
		command.Register(d.Dispatcher, h.releaseReservation),
		command.Register(d.Dispatcher, h.commitReservation),

		d.Projections.Register(levels, projection.WithPipelining()),

		query.Register(d.Queries, query.HandlerFunc[GetStockLevel, StockLevel](q.getStockLevel), query.ReadsFrom(levels.Name())),

		// Adding stock is the operators' work, not the customers'.
		server.Command[AddStock](d.Server, "/inventory/:sku/stock", server.WithScopes("write", ordering.OperatorScope)),
		server.Query[GetStockLevel, StockLevel](d.Server, "/inventory/:sku"),
	)
}
