package payment_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/examples/orders/payment"
)

func TestSimulatedGatewayIsIdempotentPerKey(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, &payment.SimulatedGateway{})
	id, err := g.Charge(ctx, "o-1", 1200)
	require.NoError(t, err)
	again, err := g.Charge(ctx, "o-1", 1200)
	require.NoError(t, err)
	require.Equal(t, id, again)
	_, err = g.Charge(ctx, "o-1", 1300)
	require.ErrorIs(t, err, payment.ErrKeyReused)
	other, err := g.Charge(ctx, "o-2", 500)
	require.NoError(t, err)
	require.NotEqual(t, id, other)

	require.NoError(t, g.Refund(ctx, id))
	require.NoError(t, g.Refund(ctx, id), "a repeated refund succeeds")
	require.ErrorIs(t, g.Refund(ctx, "ch_nope"), payment.ErrUnknownCharge)

	require.Equal(t, map[string]payment.KeyStats{
		"o-1": {Calls: 3, Charged: 1, Refunds: 1, AmountCents: 1200, ChargeID: id},
		"o-2": {Calls: 1, Charged: 1, AmountCents: 500, ChargeID: other},
	}, g.Charges())
	require.Equal(t, payment.Totals{Calls: 4, Charges: 2, Refunds: 1, ChargedCents: 1700, RefundedCents: 1200}, g.Totals())
}

func TestSimulatedGatewayDeclines(t *testing.T) {
	ctx := context.Background()
	declines := func(seed uint64) []bool {
		g := newGateway(t, &payment.SimulatedGateway{FailureRate: 0.3, Seed: seed})
		var out []bool
		for i := range 1000 {
			_, err := g.Charge(ctx, fmt.Sprint(i), 100)
			if err != nil && !errors.Is(err, payment.ErrDeclined) {
				t.Fatal(err)
			}
			out = append(out, err != nil)
		}
		require.Equal(t, 1000, g.Totals().Charges+g.Totals().Declines)
		return out
	}
	a := declines(7)
	require.Equal(t, a, declines(7), "one seed, one sequence of declines")
	n := 0
	for _, d := range a {
		if d {
			n++
		}
	}
	require.InDelta(t, 300, n, 60)

	// A declined key stays declined: the outcome is the first one.
	g := newGateway(t, &payment.SimulatedGateway{FailureRate: 1})
	_, err := g.Charge(ctx, "o-1", 100)
	require.ErrorIs(t, err, payment.ErrDeclined)
	g.FailureRate = 0 // (set between calls here only because nothing runs concurrently)
	_, err = g.Charge(ctx, "o-1", 100)
	require.ErrorIs(t, err, payment.ErrDeclined)
	require.Equal(t, payment.Totals{Calls: 2, Declines: 1}, g.Totals())
}

func TestSimulatedGatewayLatencyHonoursTheContext(t *testing.T) {
	g := newGateway(t, &payment.SimulatedGateway{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := g.Charge(ctx, "o-1", 100)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, g.Charges(), "a call that gave up charged nothing")

	g = newGateway(t, &payment.SimulatedGateway{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond})
	start := time.Now()
	_, err = g.Charge(context.Background(), "o-1", 100)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond)
}

func TestSimulatedGatewayConcurrentCharges(t *testing.T) {
	g := newGateway(t, &payment.SimulatedGateway{Jitter: time.Millisecond, FailureRate: 0.5, Seed: 1})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, _ = g.Charge(context.Background(), fmt.Sprint(i%5), 100)
		})
	}
	wg.Wait()
	tot := g.Totals()
	require.Equal(t, 50, tot.Calls)
	require.Equal(t, 5, tot.Charges+tot.Declines, "one outcome per key")
}
