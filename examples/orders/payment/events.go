package payment

import (
	"errors"

	"github.com/cairn-es/cairn/eventstore"
)

// PaymentCharged: the order's total was taken. ChargeID is the gateway's
// reference, needed to refund it; it is empty for an order of zero cents,
// which needs no charge.
type PaymentCharged struct {
	OrderID     string `json:"order_id"`
	ChargeID    string `json:"charge_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentFailed: the gateway declined the charge; the order cannot be paid.
type PaymentFailed struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

// PaymentRefunded: the charge was given back.
type PaymentRefunded struct {
	OrderID     string `json:"order_id"`
	ChargeID    string `json:"charge_id"`
	AmountCents int64  `json:"amount_cents"`
}

// RegisterEvents registers the context's events; the names are the stored
// type names.
func (Module) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		eventstore.Register[PaymentCharged](r, "PaymentCharged"),
		eventstore.Register[PaymentFailed](r, "PaymentFailed"),
		eventstore.Register[PaymentRefunded](r, "PaymentRefunded"),
	)
}
