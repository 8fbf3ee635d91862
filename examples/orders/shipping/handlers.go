package shipping

import (
	"context"
	"errors"
	"time"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// handlers are the context's command handlers.
type handlers struct {
	shipments *aggregate.Repository[*Shipment]
	now       func() time.Time
}

func (h handlers) scheduleShipment(ctx context.Context, cmd ScheduleShipment) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, func(s *Shipment) error { return s.Schedule(h.now()) })
}

func (h handlers) cancelShipment(ctx context.Context, cmd CancelShipment) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, (*Shipment).Cancel)
}

// update loads the order's shipment (a new one if there is none yet),
// applies decide and saves. Command methods fail only on domain rules, so
// their errors are rejections (422).
func (h handlers) update(ctx context.Context, orderID string, decide func(*Shipment) error) (eventstore.AppendResult, error) {
	s, err := h.shipments.Load(ctx, orderID)
	if errors.Is(err, aggregate.ErrNotFound) {
		s, err = h.shipments.New(orderID), nil
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := decide(s); err != nil {
		return eventstore.AppendResult{}, command.Reject(err)
	}
	if len(s.Changes()) == 0 {
		// Nothing decided: the dispatcher's contract is a zero result,
		// where Save would report the stream's current version.
		return eventstore.AppendResult{}, nil
	}
	return h.shipments.Save(ctx, s)
}
