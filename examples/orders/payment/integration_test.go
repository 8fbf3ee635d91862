package payment_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// lossy charges through its gateway but, once, loses the answer on the
// way back: the outcome the handler sees is unknown. It embeds the
// simulated gateway, so that the module gives it its database.
type lossy struct {
	*payment.SimulatedGateway
	lose atomic.Bool
}

func (l *lossy) Charge(ctx context.Context, key string, cents int64) (string, error) {
	id, err := l.SimulatedGateway.Charge(ctx, key, cents)
	if l.lose.CompareAndSwap(true, false) {
		return "", errors.New("connection reset by peer")
	}
	return id, err
}

func newApp(t *testing.T, gw payment.Gateway) *app.Deps {
	t.Helper()
	pool := pgtest.Pool(t, 10)
	return startApp(t, pool, pgtest.Schema(t, pool), testPrefix(t, pool), gw)
}

// startApp runs the payment module on an event store schema, with the
// gateway's schema under prefix: one process's worth of it.
func startApp(t *testing.T, pool *pgxpool.Pool, schema, prefix string, gw payment.Gateway) *app.Deps {
	t.Helper()
	a, err := app.New(context.Background(), app.Config{
		Pool: pool, Schema: schema, NoMigrate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, payment.Module{Prefix: prefix, Gateway: gw})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a.Deps()
}

// events returns the payment's events, decoded.
func events(t *testing.T, d *app.Deps, orderID string) []any {
	t.Helper()
	evs, err := d.Store.ReadStream(context.Background(), "payment-"+orderID, eventstore.ReadStreamOptions{})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil
	}
	require.NoError(t, err)
	var out []any
	for _, rec := range evs {
		e, err := d.Registry.Decode(rec)
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

func TestPayment(t *testing.T) {
	ctx := context.Background()
	sim := &payment.SimulatedGateway{}
	gw := &lossy{SimulatedGateway: sim}
	d := newApp(t, gw)
	dispatch := func(cmd any) (command.Result, error) { return d.Dispatcher.Dispatch(ctx, cmd) }

	// The gateway charges but the answer is lost: an error for the sender,
	// nothing recorded. The retry gets the first charge, not a second one.
	gw.lose.Store(true)
	_, err := dispatch(payment.ChargePayment{OrderID: "o-1", AmountCents: 1200})
	require.ErrorContains(t, err, "connection reset by peer")
	require.NotErrorIs(t, err, command.ErrRejected)
	require.Nil(t, events(t, d, "o-1"))
	res, err := dispatch(payment.ChargePayment{OrderID: "o-1", AmountCents: 1200})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Version)
	require.Equal(t, 2, sim.Charges()["o-1"].Calls, "the retry asked again")
	chargeID := sim.Charges()["o-1"].ChargeID
	charged := payment.PaymentCharged{OrderID: "o-1", ChargeID: chargeID, AmountCents: 1200}
	refunded := payment.PaymentRefunded{OrderID: "o-1", ChargeID: chargeID, AmountCents: 1200}
	again, err := dispatch(payment.ChargePayment{OrderID: "o-1", AmountCents: 1200})
	require.NoError(t, err)
	require.Zero(t, again.Version, "a charged payment is not charged again")
	require.Equal(t, []any{charged}, events(t, d, "o-1"))

	// Refund, once.
	_, err = dispatch(payment.RefundPayment{OrderID: "o-1"})
	require.NoError(t, err)
	again, err = dispatch(payment.RefundPayment{OrderID: "o-1"})
	require.NoError(t, err)
	require.Zero(t, again.Version)
	require.Equal(t, []any{charged, refunded}, events(t, d, "o-1"))

	// Refunding what was never charged does nothing.
	res, err = dispatch(payment.RefundPayment{OrderID: "o-2"})
	require.NoError(t, err)
	require.Zero(t, res.Version)
	require.Nil(t, events(t, d, "o-2"))

	_, err = dispatch(payment.ChargePayment{OrderID: "o-3", AmountCents: -5})
	require.ErrorIs(t, err, command.ErrRejected)
	require.ErrorIs(t, err, payment.ErrNegativeAmount)

	// Many attempts at once, under different command IDs: the losers of
	// the race to save are retried by the dispatcher, find the payment
	// charged, and the customer pays once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := dispatch(payment.ChargePayment{OrderID: "o-4", AmountCents: 700})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Len(t, events(t, d, "o-4"), 1)

	o4 := sim.Charges()["o-4"]
	require.Equal(t, 1, o4.Charged)
	require.LessOrEqual(t, o4.Calls, 8, "attempts that load the charged payment do not call the gateway")
	tot := sim.Totals()
	tot.Calls = 0
	require.Equal(t, payment.Totals{Charges: 2, Refunds: 1, ChargedCents: 1900, RefundedCents: 1200}, tot)
}

func TestPaymentDeclined(t *testing.T) {
	ctx := context.Background()
	sim := &payment.SimulatedGateway{FailureRate: 1}
	d := newApp(t, sim)
	for range 2 {
		_, err := d.Dispatcher.Dispatch(ctx, payment.ChargePayment{OrderID: "o-1", AmountCents: 1200})
		require.NoError(t, err, "a decline is a fact, not an error")
	}
	require.Equal(t, []any{failed}, events(t, d, "o-1"))
	_, err := d.Dispatcher.Dispatch(ctx, payment.RefundPayment{OrderID: "o-1"})
	require.NoError(t, err)
	require.Len(t, events(t, d, "o-1"), 1)
	require.Equal(t, payment.Totals{Calls: 1, Declines: 1}, sim.Totals())
}

// Without a gateway, the module approves every charge.
func TestPaymentDefaultGateway(t *testing.T) {
	d := newApp(t, nil)
	_, err := d.Dispatcher.Dispatch(context.Background(), payment.ChargePayment{OrderID: "o-1", AmountCents: 1})
	require.NoError(t, err)
	evs := events(t, d, "o-1")
	require.Len(t, evs, 1)
	charged, ok := evs[0].(payment.PaymentCharged)
	require.True(t, ok, "%#v", evs[0])
	require.Regexp(t, `^ch_[0-9a-f-]{36}$`, charged.ChargeID)
	require.Equal(t, payment.PaymentCharged{OrderID: "o-1", ChargeID: charged.ChargeID, AmountCents: 1}, charged)
}
