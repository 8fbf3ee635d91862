package ordering

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// orderIDNamespace is the UUID namespace of derived order IDs. It is part
// of the IDs' meaning: changing it would give a resubmitted command a
// different order.
var orderIDNamespace = uuid.MustParse("1a88de76-408f-4bd3-a23f-f38a49b3ad07")

// OrderIDFor returns the order ID PlaceOrder derives from a command ID when
// the client names none: a name-based (SHA-1) UUID, the same for every
// submission of the command.
func OrderIDFor(commandID string) string {
	return uuid.NewSHA1(orderIDNamespace, []byte(commandID)).String()
}

// handlers are the context's command handlers. Each loads the order, calls
// one command method and saves what it recorded; the repository stamps the
// events with the command's causation, which makes the save idempotent per
// command ID.
type handlers struct {
	orders *aggregate.Repository[*Order]
}

func (h handlers) placeOrder(ctx context.Context, cmd PlaceOrder) (eventstore.AppendResult, error) {
	id := cmd.OrderID
	if id == "" {
		env, ok := command.EnvelopeFrom(ctx)
		if !ok {
			return eventstore.AppendResult{}, errors.New("ordering: PlaceOrder without an order ID must go through the dispatcher")
		}
		id = OrderIDFor(env.ID)
	}
	// A new aggregate saves with expected version NoStream: placing an
	// order ID that exists already is a concurrency conflict (409), found
	// by the store without a read.
	o := h.orders.New(id)
	if err := o.Place(cmd.CustomerID, cmd.Items); err != nil {
		return eventstore.AppendResult{}, command.Reject(err)
	}
	return h.orders.Save(ctx, o)
}

func (h handlers) cancelOrder(ctx context.Context, cmd CancelOrder) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, func(o *Order) error { return o.Cancel(cmd.Reason, cmd.ByCustomer) })
}

func (h handlers) markOrderReserved(ctx context.Context, cmd MarkOrderReserved) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, (*Order).MarkReserved)
}

func (h handlers) markOrderPaid(ctx context.Context, cmd MarkOrderPaid) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, (*Order).MarkPaid)
}

func (h handlers) completeOrder(ctx context.Context, cmd CompleteOrder) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, (*Order).Complete)
}

func (h handlers) rejectOrder(ctx context.Context, cmd RejectOrder) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, func(o *Order) error { return o.Reject(cmd.Reason) })
}

// update loads an existing order (an unknown ID is aggregate.ErrNotFound,
// a 404), applies decide and saves. Command methods fail only on domain
// rules, so their errors are rejections (422).
func (h handlers) update(ctx context.Context, id string, decide func(*Order) error) (eventstore.AppendResult, error) {
	o, err := h.orders.Load(ctx, id)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := decide(o); err != nil {
		return eventstore.AppendResult{}, command.Reject(err)
	}
	if len(o.Changes()) == 0 {
		// Nothing decided: the dispatcher's contract is a zero result,
		// where Save would report the stream's current version.
		return eventstore.AppendResult{}, nil
	}
	return h.orders.Save(ctx, o)
}
