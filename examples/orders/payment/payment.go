package payment

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-es/cairn/aggregate"
)

// ErrNegativeAmount: a charge of less than nothing.
var ErrNegativeAmount = errors.New("the amount must not be negative")

// Status is where a payment is.
type Status string

// The statuses of a payment; a new one has status "".
const (
	StatusCharged  Status = "charged"
	StatusFailed   Status = "failed"
	StatusRefunded Status = "refunded"
)

// Payment is the payment of one order; its ID is the order's.
type Payment struct {
	aggregate.Base
	Status      Status `json:"status"`
	ChargeID    string `json:"charge_id"`
	AmountCents int64  `json:"amount_cents"`
}

// NewPayment returns an empty payment, for repositories and tests.
func NewPayment() *Payment { return &Payment{} }

// Apply changes the state for one event.
func (p *Payment) Apply(event any) {
	switch e := event.(type) {
	case PaymentCharged:
		p.Status, p.ChargeID, p.AmountCents = StatusCharged, e.ChargeID, e.AmountCents
	case PaymentFailed:
		p.Status, p.AmountCents = StatusFailed, e.AmountCents
	case PaymentRefunded:
		p.Status = StatusRefunded
	}
}

// Charge takes amountCents through gw, once: a payment that was charged or
// failed already is left as it is. The order ID is the idempotency key, so
// that a retry after an unknown outcome (a timeout, a crash before the save,
// a concurrent attempt that lost the race to save) gets the gateway's first
// answer instead of charging again.
//
// A decline is recorded as PaymentFailed. Any other gateway error is
// returned as it is: the outcome is unknown, nothing is recorded, and the
// sender retries the command.
func (p *Payment) Charge(ctx context.Context, gw Gateway, amountCents int64) error {
	switch {
	case p.Status != "":
		return nil
	case amountCents < 0:
		return ErrNegativeAmount
	case amountCents == 0:
		// Nothing to take; the gateway would refuse a zero charge.
		aggregate.Record(p, PaymentCharged{OrderID: p.ID()})
		return nil
	}
	chargeID, err := gw.Charge(ctx, p.ID(), amountCents)
	switch {
	case errors.Is(err, ErrDeclined):
		aggregate.Record(p, PaymentFailed{OrderID: p.ID(), AmountCents: amountCents, Reason: err.Error()})
		return nil
	case err != nil:
		return fmt.Errorf("charging order %s: %w", p.ID(), err)
	}
	aggregate.Record(p, PaymentCharged{OrderID: p.ID(), ChargeID: chargeID, AmountCents: amountCents})
	return nil
}

// Refund gives a charged payment back through gw. Anything else (never
// charged, failed, refunded already) has nothing to refund. A gateway
// error is returned as it is, for the sender to retry.
func (p *Payment) Refund(ctx context.Context, gw Gateway) error {
	if p.Status != StatusCharged {
		return nil
	}
	if p.ChargeID != "" {
		if err := gw.Refund(ctx, p.ChargeID); err != nil {
			return fmt.Errorf("refunding order %s: %w", p.ID(), err)
		}
	}
	aggregate.Record(p, PaymentRefunded{OrderID: p.ID(), ChargeID: p.ChargeID, AmountCents: p.AmountCents})
	return nil
}
