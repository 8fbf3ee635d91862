package ordering

import (
	"context"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/server"
)

// OperatorScope is the scope of the service's operators: they read every
// customer's orders and the sales figures, and may act on any order. Every
// other caller is a customer, the customer whose ID is its token's subject
// (the JWT's sub claim), and reads and cancels only its own orders.
//
// The policies run only with authentication on; without it the API is
// open, as it is in development.
const OperatorScope = "operator"

// policies decide what a caller may do with the orders. Each refusal is a
// 403 (problem type forbidden) and happens before anything is appended.
type policies struct {
	orders *aggregate.Repository[*Order]
}

// placeOrder: a customer places orders for itself only.
func (policies) placeOrder(_ context.Context, p server.Principal, cmd PlaceOrder) error {
	if p.HasScope(OperatorScope) || cmd.CustomerID == p.Subject {
		return nil
	}
	return server.Forbidden("a customer places orders for itself only: customer_id must be the customer ID your token names")
}

// cancelOrder: a customer cancels its own orders only. Whose order it is
// comes from the order itself, in the event store: the read model may not
// have the order yet when its customer cancels it at once. An order that
// does not exist is left to the handler (404); an order of another
// customer is a 403, the answer the issue asks for, although it tells the
// caller that the order exists: order IDs are UUIDs or the client's own,
// so this tells nothing a caller could not already know.
func (pl policies) cancelOrder(ctx context.Context, p server.Principal, cmd CancelOrder) error {
	if p.HasScope(OperatorScope) || cmd.Validate() != nil {
		return nil // an invalid command is the dispatcher's 422
	}
	o, err := pl.orders.Load(ctx, cmd.OrderID)
	if err != nil {
		return err // not found: 404; the database unavailable: 503
	}
	if o.CustomerID != p.Subject {
		return server.Forbidden("a customer cancels its own orders only")
	}
	return nil
}

// getOrder: a customer reads its own orders only. The check needs the
// order's customer, which the query's result carries: a refusal is a 403,
// like a cancellation's, so that the read and write sides answer alike.
func (policies) getOrder(_ context.Context, p server.Principal, _ GetOrder, o OrderView) error {
	if p.HasScope(OperatorScope) || o.CustomerID == p.Subject {
		return nil
	}
	return server.Forbidden("a customer reads its own orders only")
}

// listOrders: a customer lists its own orders only, and says so with the
// customer_id filter; only an operator lists everyone's. Refusing, rather
// than filtering silently, keeps a page's meaning what its URL says, and
// its cursor valid for that URL.
func (policies) listOrders(_ context.Context, p server.Principal, l ListOrders) error {
	if p.HasScope(OperatorScope) || (p.Subject != "" && l.Request.Filters["customer_id"] == p.Subject) {
		return nil
	}
	return server.Forbidden("a customer lists its own orders only: add customer_id=<your customer ID>")
}
