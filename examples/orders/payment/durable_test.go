package payment_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// testPrefix returns a prefix of the test's own, whose gateway schema is
// dropped when the test ends.
func testPrefix(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	prefix := fmt.Sprintf("t%x_", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, prefix+payment.GatewaySchema)
	return prefix
}

// newGateway gives g a gateway schema of the test's own.
func newGateway(t *testing.T, g *payment.SimulatedGateway) *payment.SimulatedGateway {
	t.Helper()
	pool := pgtest.Pool(t, 10)
	g.UseDatabase(pool, testPrefix(t, pool)+payment.GatewaySchema)
	return g
}

// A gateway used before it has a database says so, and charges nothing.
func TestSimulatedGatewayNeedsADatabase(t *testing.T) {
	g := &payment.SimulatedGateway{}
	_, err := g.Charge(context.Background(), "o-1", 100)
	require.ErrorIs(t, err, payment.ErrNoDatabase)
	require.ErrorIs(t, g.Refund(context.Background(), "ch_1"), payment.ErrNoDatabase)
	require.ErrorIs(t, g.Setup(context.Background()), payment.ErrNoDatabase)
}

// A new gateway instance on the same table (a restarted process) replays
// the charges the first made, refunds them, and knows what was refunded.
func TestSimulatedGatewayChargesSurviveARestart(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 10)
	schema := testPrefix(t, pool) + payment.GatewaySchema
	first := &payment.SimulatedGateway{Seed: 1}
	first.UseDatabase(pool, schema)
	a, err := first.Charge(ctx, "o-1", 1200)
	require.NoError(t, err)
	b, err := first.Charge(ctx, "o-2", 500)
	require.NoError(t, err)

	second := &payment.SimulatedGateway{Seed: 1, FailureRate: 1}
	second.UseDatabase(pool, schema)
	again, err := second.Charge(ctx, "o-1", 1200)
	require.NoError(t, err, "the first outcome stands, whatever the new instance would decide")
	require.Equal(t, a, again)
	require.NoError(t, second.Refund(ctx, b), "a charge made by a process that exited can be refunded")
	_, err = second.Charge(ctx, "o-1", 1300)
	require.ErrorIs(t, err, payment.ErrKeyReused)

	want := map[string]payment.KeyStats{
		"o-1": {Calls: 3, Charged: 1, AmountCents: 1200, ChargeID: a},
		"o-2": {Calls: 1, Charged: 1, Refunds: 1, AmountCents: 500, ChargeID: b},
	}
	require.Equal(t, want, second.Charges())
	require.Equal(t, want, first.Charges(), "both instances read the one table")
	only, err := first.ChargesContext(ctx, "o-2", "o-9")
	require.NoError(t, err)
	require.Equal(t, map[string]payment.KeyStats{"o-2": want["o-2"]}, only)
	tot, err := second.TotalsContext(ctx, "o-1")
	require.NoError(t, err)
	require.Equal(t, payment.Totals{Calls: 3, Charges: 1, ChargedCents: 1200}, tot)
}

// Two instances (two processes) charging at once, under distinct keys and
// under the same keys: charge IDs never collide, each key has one outcome,
// and a refund by either lands on the charge it names.
func TestSimulatedGatewayInstancesDoNotCollide(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 20)
	schema := testPrefix(t, pool) + payment.GatewaySchema
	gws := []*payment.SimulatedGateway{{Seed: 7}, {Seed: 7}} // the same seed, as two processes started alike
	for _, g := range gws {
		g.UseDatabase(pool, schema)
	}
	require.NoError(t, gws[0].Setup(ctx))

	var mu sync.Mutex
	ids := map[string]string{} // charge ID → key
	var wg sync.WaitGroup
	for i := range 40 {
		for n, g := range gws {
			wg.Go(func() {
				key := fmt.Sprintf("o-%d-%d", n, i)
				if i%4 == 0 {
					key = fmt.Sprintf("shared-%d", i) // both instances charge it
				}
				id, err := g.Charge(ctx, key, int64(100+i))
				require.NoError(t, err)
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := ids[id]; ok {
					require.Equal(t, key, prev, "charge %s was given to two keys", id)
				}
				ids[id] = key
			})
		}
	}
	wg.Wait()
	all := gws[0].Charges()
	require.Len(t, all, 70, "30 keys of each instance and 10 shared")
	require.Len(t, ids, 70, "one charge ID per key")
	for key, s := range all {
		require.Equal(t, key, ids[s.ChargeID])
		if strings.HasPrefix(key, "shared-") {
			require.Equal(t, 2, s.Calls, key)
		}
	}

	// Refund every other charge, each through the instance that did not
	// make it: exactly those are refunded.
	refunded := map[string]bool{}
	n := 0
	for id, key := range ids {
		if n++; n%2 == 0 {
			require.NoError(t, gws[n%2].Refund(ctx, id))
			refunded[key] = true
		}
	}
	for key, s := range gws[1].Charges() {
		require.Equal(t, refunded[key], s.Refunds == 1, key)
	}
}

// Through the payment module: orders charged by one process, the process
// gone, a new one (a new app and a new gateway on the same database)
// refunds one of them: the gateway refunds that order's charge and no
// other, and a retried charge of the other replays its first outcome.
func TestRefundAfterARestartHitsTheRightCharge(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, 10)
	schema, prefix := pgtest.Schema(t, pool), testPrefix(t, pool)

	before := &payment.SimulatedGateway{}
	d := startApp(t, pool, schema, prefix, before)
	for _, id := range []string{"o-1", "o-2"} {
		_, err := d.Dispatcher.Dispatch(ctx, payment.ChargePayment{OrderID: id, AmountCents: 1000})
		require.NoError(t, err)
	}
	charged := before.Charges()

	after := &payment.SimulatedGateway{}
	d = startApp(t, pool, schema, prefix, after)
	_, err := d.Dispatcher.Dispatch(ctx, payment.RefundPayment{OrderID: "o-2"})
	require.NoError(t, err)
	require.Equal(t, []any{
		payment.PaymentCharged{OrderID: "o-2", ChargeID: charged["o-2"].ChargeID, AmountCents: 1000},
		payment.PaymentRefunded{OrderID: "o-2", ChargeID: charged["o-2"].ChargeID, AmountCents: 1000},
	}, events(t, d, "o-2"))
	now := after.Charges()
	require.Equal(t, 1, now["o-2"].Refunds)
	require.Zero(t, now["o-1"].Refunds, "another order's charge was refunded")

	id, err := after.Charge(ctx, "o-1", 1000)
	require.NoError(t, err)
	require.Equal(t, charged["o-1"].ChargeID, id)
}
