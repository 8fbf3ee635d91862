package ordering

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

// Module is the ordering context's registration in an app.
type Module struct {
	// Prefix is prepended to the names of the context's projections,
	// which are also the names of their PostgreSQL schemas. Leave it empty
	// in a service; tests, and services sharing one database, set it to
	// keep their read models apart (the event store's schema does not
	// separate them).
	Prefix string
}

var _ app.Module = Module{}

// Name implements app.Module.
func (Module) Name() string { return "ordering" }

// PlaceOrderResponse is the body of POST /orders' 202 response: the order's
// ID (the client's, or the one derived from the command ID), the command
// ID and the read-your-writes token, also in the X-Cairn-Position header.
type PlaceOrderResponse struct {
	OrderID   string `json:"order_id"`
	CommandID string `json:"command_id"`
	Position  string `json:"position"`
}

// Register implements app.Module.
func (m Module) Register(d *app.Deps) error {
	h := handlers{orders: aggregate.NewRepository(d.Store, d.Registry, "order", NewOrder)}
	summary := newOrderSummary(d.Registry, m.Prefix+OrderSummaryProjection)
	sales := newSalesByDay(d.Registry, m.Prefix+SalesByDayProjection)
	q := newQueries(d.Store.Pool(), summary.Name(), sales.Name(), d.CursorKeys)
	pol := policies(h)

	// Registration order matters for routes only: a query route needs its
	// handler on the bus and its projections on the manager first.
	return errors.Join(
		command.Register(d.Dispatcher, h.placeOrder),
		command.Register(d.Dispatcher, h.cancelOrder),
		command.Register(d.Dispatcher, h.markOrderReserved),
		command.Register(d.Dispatcher, h.markOrderPaid),
		command.Register(d.Dispatcher, h.completeOrder),
		command.Register(d.Dispatcher, h.rejectOrder),

		// Neither projector reads RowsAffected, so both may pipeline.
		d.Projections.Register(summary, projection.WithPipelining()),
		d.Projections.Register(sales, projection.WithPipelining()),

		query.Register(d.Queries, query.HandlerFunc[GetOrder, OrderView](q.getOrder), query.ReadsFrom(summary.Name())),
		query.Register(d.Queries, query.HandlerFunc[ListOrders, query.Page[OrderView]](q.listOrders), query.ReadsFrom(summary.Name())),
		query.Register(d.Queries, query.HandlerFunc[SalesByDay, SalesReport](q.salesByDayRange), query.ReadsFrom(sales.Name())),

		// With authentication on, the policies let customers at their own
		// orders only (see policies), and the sales figures need the
		// operator scope.
		server.Command[PlaceOrder](d.Server, "/orders", server.WithResponse(placeOrderResponse), server.WithPolicy(pol.placeOrder)),
		server.Command[CancelOrder](d.Server, "/orders/:id/cancel", server.WithPolicy(pol.cancelOrder)),
		server.Query[GetOrder, OrderView](d.Server, "/orders/:id", server.WithResultPolicy(pol.getOrder)),
		server.Query[ListOrders, query.Page[OrderView]](d.Server, "/orders", server.WithPolicy(pol.listOrders)),
		server.Query[SalesByDay, SalesReport](d.Server, "/stats/sales", server.WithScopes("read", OperatorScope)),
	)
}

// placeOrderResponse names the order in the response. A replayed command
// gets the command as the client sent it again, without an order ID when it
// had none, so the ID is derived again from the (same) command ID.
func placeOrderResponse(cmd PlaceOrder, res command.Result) any {
	id := cmd.OrderID
	if id == "" {
		id = OrderIDFor(res.CommandID)
	}
	return PlaceOrderResponse{OrderID: id, CommandID: res.CommandID, Position: res.Position.String()}
}
