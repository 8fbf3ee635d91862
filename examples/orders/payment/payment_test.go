package payment_test

import (
	"context"
	"testing"

	"github.com/cairn-es/cairn/aggregate/aggregatetest"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/payment"
)

func registry(t *testing.T) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry()
	if err := (payment.Module{}).RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func forOrder(t *testing.T) *aggregatetest.Scenario[*payment.Payment] {
	return aggregatetest.For(t, payment.NewPayment).WithID("o-1").WithRegistry(registry(t))
}

var (
	charged  = payment.PaymentCharged{OrderID: "o-1", ChargeID: "ch_000001", AmountCents: 1200}
	failed   = payment.PaymentFailed{OrderID: "o-1", AmountCents: 1200, Reason: "payment: card declined"}
	refunded = payment.PaymentRefunded{OrderID: "o-1", ChargeID: "ch_000001", AmountCents: 1200}
)

func charge(gw payment.Gateway, cents int64) func(*payment.Payment) error {
	return func(p *payment.Payment) error { return p.Charge(context.Background(), gw, cents) }
}

func refund(gw payment.Gateway) func(*payment.Payment) error {
	return func(p *payment.Payment) error { return p.Refund(context.Background(), gw) }
}

func TestCharge(t *testing.T) {
	gw := newGateway(t, &payment.SimulatedGateway{})
	// The gateway's charge IDs are random: ask it first for o-1's, which
	// the payment's own call then gets again (the key is the order ID).
	id, err := gw.Charge(context.Background(), "o-1", 1200)
	if err != nil {
		t.Fatal(err)
	}
	forOrder(t).When(charge(gw, 1200)).Then(payment.PaymentCharged{OrderID: "o-1", ChargeID: id, AmountCents: 1200})
	check(t, gw.Totals() == payment.Totals{Calls: 2, Charges: 1, ChargedCents: 1200}, "totals %+v", gw.Totals())

	declining := newGateway(t, &payment.SimulatedGateway{FailureRate: 1})
	forOrder(t).When(charge(declining, 1200)).Then(failed)

	// Once charged or failed, a payment is settled: no second call.
	forOrder(t).Given(charged).When(charge(declining, 1200)).ThenNothing()
	forOrder(t).Given(failed).When(charge(gw, 1200)).ThenNothing()
	forOrder(t).Given(charged, refunded).When(charge(gw, 1200)).ThenNothing()
	check(t, declining.Totals().Calls == 1 && gw.Totals().Calls == 2, "a settled payment called the gateway")

	// A free order needs no charge.
	forOrder(t).When(charge(declining, 0)).Then(payment.PaymentCharged{OrderID: "o-1"})
	forOrder(t).When(charge(gw, -1)).ThenError(payment.ErrNegativeAmount)
}

// An unknown outcome is an error, and records nothing: the sender retries.
func TestChargeGatewayFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gw := newGateway(t, &payment.SimulatedGateway{})
	forOrder(t).
		When(func(p *payment.Payment) error { return p.Charge(ctx, gw, 1200) }).
		ThenError(context.Canceled)
}

func TestRefund(t *testing.T) {
	ctx := context.Background()
	gw := newGateway(t, &payment.SimulatedGateway{})
	id, err := gw.Charge(ctx, "o-1", 1200)
	if err != nil {
		t.Fatal(err)
	}
	charged := payment.PaymentCharged{OrderID: "o-1", ChargeID: id, AmountCents: 1200}
	refunded := payment.PaymentRefunded{OrderID: "o-1", ChargeID: id, AmountCents: 1200}
	forOrder(t).Given(charged).When(refund(gw)).Then(refunded)
	check(t, gw.Charges()["o-1"].Refunds == 1, "the gateway did not refund: %+v", gw.Charges())

	for name, given := range map[string][]any{
		"never charged": nil,
		"failed":        {failed},
		"refunded":      {charged, refunded},
	} {
		t.Run(name, func(t *testing.T) {
			forOrder(t).Given(given...).When(refund(gw)).ThenNothing()
		})
	}
	forOrder(t).Given(payment.PaymentCharged{OrderID: "o-1"}).When(refund(gw)).
		Then(payment.PaymentRefunded{OrderID: "o-1"})
	forOrder(t).Given(payment.PaymentCharged{OrderID: "o-1", ChargeID: "ch_unknown", AmountCents: 5}).
		When(refund(gw)).ThenError(payment.ErrUnknownCharge)
}

func check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}
