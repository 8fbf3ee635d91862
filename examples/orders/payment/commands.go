package payment

// The context's commands are sent by the fulfilment saga; they have no HTTP
// route. Both are idempotent.

// ChargePayment charges an order's total.
type ChargePayment struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// RefundPayment refunds an order's charge, if there is one.
type RefundPayment struct {
	OrderID string `json:"order_id"`
}
