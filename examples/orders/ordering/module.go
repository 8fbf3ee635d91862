package ordering

import (
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
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

var (
	_ app.CommandModule   = Module{}
	_ app.ReadModelModule = Module{}
	_ app.APIModule       = Module{}
)

func (m Module) readModels(r *eventstore.Registry) (*orderSummary, *salesByDay) {
	return newOrderSummary(r, m.Prefix+OrderSummaryProjection), newSalesByDay(r, m.Prefix+SalesByDayProjection)
}

// RegisterCommands implements app.CommandModule.
func (Module) RegisterCommands(c *app.Commands) error {
	h := handlers{orders: aggregate.NewRepository(c.Store, c.Registry, "order", NewOrder, aggregate.Config{})}
	return errors.Join(
		command.Register(c.Dispatcher, h.placeOrder, command.AppendOnly()),
		command.Register(c.Dispatcher, h.cancelOrder, command.AppendOnly()),
		command.Register(c.Dispatcher, h.markOrderReserved, command.AppendOnly()),
		command.Register(c.Dispatcher, h.markOrderPaid, command.AppendOnly()),
		command.Register(c.Dispatcher, h.completeOrder, command.AppendOnly()),
		command.Register(c.Dispatcher, h.rejectOrder, command.AppendOnly()),
	)
}

// RegisterReadModels implements app.ReadModelModule.
func (m Module) RegisterReadModels(r *app.ReadModels) error {
	summary, sales := m.readModels(r.Registry)
	// Both write through projection.Queue (OnQueued), so catching up and
	// rebuilding pipeline their statements.
	return errors.Join(
		r.Projections.Register(summary),
		r.Projections.Register(sales),
	)
}

// RegisterAPI implements app.APIModule.
func (m Module) RegisterAPI(a *app.API) error {
	summary, sales := m.readModels(a.Registry)
	q := newQueries(a.DB.Pool, summary.Name(), sales.Name(), a.CursorKeys)
	pol := policies{orders: aggregate.NewRepository(a.Store, a.Registry, "order", NewOrder, aggregate.Config{})}
	return errors.Join(
		query.Register(a.Queries, query.HandlerFunc[GetOrder, OrderView](q.getOrder), query.ReadsFrom(summary.Name())),
		query.Register(a.Queries, query.HandlerFunc[ListOrders, query.Page[OrderView]](q.listOrders), query.ReadsFrom(summary.Name())),
		query.Register(a.Queries, query.HandlerFunc[SalesByDay, SalesReport](q.salesByDayRange), query.ReadsFrom(sales.Name())),

		// With authentication on, the policies let customers at their own
		// orders only (see policies), and the sales figures need the
		// operator scope.
		server.CommandWithResponse(a.Server, "/orders", placeOrderResponse, server.WithPolicy(pol.placeOrder)),
		server.Command[CancelOrder](a.Server, "/orders/:id/cancel", server.WithPolicy(pol.cancelOrder)),
		server.Query[GetOrder, OrderView](a.Server, "/orders/:id", server.WithResultPolicy(pol.getOrder)),
		server.Query[ListOrders, query.Page[OrderView]](a.Server, "/orders", server.WithPolicy(pol.listOrders)),
		server.Query[SalesByDay, SalesReport](a.Server, "/stats/sales", server.WithScopes("read", OperatorScope)),
	)
}

// placeOrderResponse names the order in the response. A replayed command
// gets the command as the client sent it again, without an order ID when it
// had none, so the ID is derived again from the (same) command ID.
func placeOrderResponse(cmd PlaceOrder, res command.Result) PlaceOrderResponse {
	id := cmd.OrderID
	if id == "" {
		id = OrderIDFor(res.CommandID)
	}
	return PlaceOrderResponse{OrderID: id, CommandID: res.CommandID, Position: res.Position.String()}
}
