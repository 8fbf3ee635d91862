package payment

import (
	"context"
	"errors"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// handlers are the context's command handlers.
type handlers struct {
	payments *aggregate.Repository[*Payment]
	gateway  Gateway
}

func (h handlers) chargePayment(ctx context.Context, cmd ChargePayment) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, func(p *Payment) error { return p.Charge(ctx, h.gateway, cmd.AmountCents) })
}

func (h handlers) refundPayment(ctx context.Context, cmd RefundPayment) (eventstore.AppendResult, error) {
	return h.update(ctx, cmd.OrderID, func(p *Payment) error { return p.Refund(ctx, h.gateway) })
}

// update loads the order's payment (a new one if there is none yet),
// applies decide and saves.
//
// Unlike other contexts' methods, Payment's call the gateway, so their
// errors are not all domain refusals: only ErrNegativeAmount is rejected
// (422); gateway failures go back to the sender as they are, to retry. A
// concurrency conflict (two attempts at once) makes the dispatcher run the
// handler again, which finds the payment charged, or charges with the same
// idempotency key and gets the same answer.
func (h handlers) update(ctx context.Context, orderID string, decide func(*Payment) error) (eventstore.AppendResult, error) {
	p, err := h.payments.Load(ctx, orderID)
	if errors.Is(err, aggregate.ErrNotFound) {
		p, err = h.payments.New(orderID), nil
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := decide(p); err != nil {
		if errors.Is(err, ErrNegativeAmount) {
			err = command.Reject(err)
		}
		return eventstore.AppendResult{}, err
	}
	if len(p.Changes()) == 0 {
		// Nothing decided: the dispatcher's contract is a zero result,
		// where Save would report the stream's current version.
		return eventstore.AppendResult{}, nil
	}
	return h.payments.Save(ctx, p)
}
