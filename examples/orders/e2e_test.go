package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// system is the order system running in this process on a fixed address,
// so that clients reach the restarted process where they reached the
// first.
type system struct {
	t      testing.TB
	pool   *pgxpool.Pool
	schema string
	addr   string
	cfg    orders.Config
	// sagas configures the saga manager of the next start.
	sagas saga.Config

	mu      sync.Mutex
	app     *app.App
	stop    context.CancelFunc
	stopped chan error
}

func newSystem(t testing.TB, cfg orders.Config) *system {
	pool := pgtest.Pool(t, 40)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := &system{t: t, pool: pool, schema: pgtest.Schema(t, pool), addr: addr, cfg: cfg,
		sagas: saga.Config{Concurrency: 32, Poll: 200 * time.Millisecond, Retry: retry.Policy{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}}}
	// Cleanups run last first: the schemas go once the system stopped.
	dropPrefixed(t, pool, cfg.Prefix)
	t.Cleanup(s.halt)
	return s
}

// start runs a fresh process's worth of the system: new components, the
// same database.
func (s *system) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Config{
		Pool: s.pool, Schema: s.schema, Logger: quietLog,
		Server:     server.Config{Addr: s.addr},
		Projection: projection.Config{LeaderRetry: 100 * time.Millisecond},
		Saga:       s.sagas,
	}, orders.Modules(s.cfg)...)
	require.NoError(s.t, err)
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx) }()
	s.mu.Lock()
	s.app, s.stop, s.stopped = a, cancel, stopped
	s.mu.Unlock()
}

// halt stops the system as SIGTERM does: the server drains, the
// projections commit their batch, the relay finishes its sends.
func (s *system) halt() {
	s.mu.Lock()
	a, stop, stopped := s.app, s.stop, s.stopped
	s.app = nil
	s.mu.Unlock()
	if a == nil {
		return
	}
	stop()
	require.NoError(s.t, <-stopped)
	a.Close()
}

func (s *system) current() *app.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app
}

// TestOrdersEndToEnd is the sample's proof, through HTTP: 200 orders placed
// concurrently against limited stock, with declined and slow payments, and
// the process restarted once mid-run.
func TestOrdersEndToEnd(t *testing.T) {
	gw := &payment.SimulatedGateway{FailureRate: 0.2, Latency: 5 * time.Millisecond, Seed: 42}
	// One order in eight has a payment that answers a second after the
	// saga's payment timeout, and succeeds: the saga, which cancelled the
	// order meanwhile, must refund it.
	const paymentTimeout = 10 * time.Second
	slow := &slowGateway{SimulatedGateway: gw, delay: paymentTimeout + time.Second}
	cfg := orders.Config{Prefix: fmt.Sprintf("t%07x_", pgtest.Suffix()&0xfffffff), Gateway: slow, PaymentTimeout: paymentTimeout}
	sys := newSystem(t, cfg)
	sys.start()

	const placeCount = 200
	opts := demo.Options{BaseURL: "http://" + sys.addr, Run: "e2e", SKUs: 6, Stock: 90, Orders: placeCount,
		Customers: 20, MaxLines: 3, MaxQuantity: 3, Concurrency: 16, Seed: 7}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, waitReady(ctx, opts.BaseURL))
	skus, err := demo.Stock(ctx, opts)
	require.NoError(t, err)

	restarted := make(chan struct{})
	opts.Placed = func(n int) {
		if n == placeCount/2 {
			go func() {
				defer close(restarted)
				sys.halt() // clients see refused connections and resend
				sys.start()
			}()
		}
	}
	placed, err := demo.Place(ctx, opts, skus)
	require.NoError(t, err)
	<-restarted
	views, err := demo.Await(ctx, opts, placed)
	require.NoError(t, err)
	require.Len(t, views, placeCount)

	a := sys.current()
	d := a.Deps()
	// An order's final state can show before its saga has sent its last
	// commands (a refund after a cancel): wait for the outbox to drain,
	// then for every read model and reaction to reach the head.
	insp := saga.NewInspector(d.DB)
	awaitSagaDrained(ctx, t, insp, sagaOf(cfg.Prefix), time.Minute)
	head, err := d.Store.Head(ctx)
	require.NoError(t, err)
	require.NoError(t, d.Projections.WaitFor(ctx, head, d.Projections.Names()...))

	log := readLog(t, sys.pool, sys.schema)
	byStatus := map[string]int{}
	for _, o := range placed {
		v := views[o.ID]
		byStatus[v.Status]++
		evs := log.byOrder[o.ID]
		checkOrder(t, o, v.Status, evs, func() string { return sagaDump(sys, cfg, o.ID) })

		// The gateway agrees with the log: it charged at most once, and
		// refunded what an order that did not complete was charged.
		gs := gw.Charges()[o.ID]
		require.LessOrEqual(t, gs.Charged, 1, o.ID)
		require.Equal(t, evs.count("PaymentCharged"), gs.Charged, "order %s: the gateway and the log disagree", o.ID)
		if v.Status != "completed" {
			require.Equal(t, gs.Charged, gs.Refunds, o.ID)
		}
	}
	t.Logf("orders: %v; gateway %+v", byStatus, gw.Totals())
	// The run exercised every path.
	require.Positive(t, byStatus["completed"])
	require.Positive(t, byStatus["rejected"], "the stock is meant to run short")
	require.Positive(t, byStatus["cancelled"], "declined and slow payments are meant to cancel orders")
	require.Positive(t, log.count("PaymentRefunded"), "a slow payment that succeeds after the timeout is refunded")

	checkStock(t, log, skus, opts.BaseURL)
	checkSagas(ctx, t, insp, sagaOf(cfg.Prefix), placed, views)
	checkReactions(ctx, t, sys.pool, cfg.Prefix, placeCount, byStatus, log.count("PaymentRefunded"))

	// The read models equal a from-scratch rebuild.
	for _, name := range orders.Projections(cfg) {
		rep, err := d.Projections.Rebuild(ctx, name, projection.RebuildOptions{Verify: true})
		require.NoError(t, err)
		require.True(t, rep.Identical(), "%s differs from a rebuild: %+v", name, rep.Differences)
	}
}

func sagaDump(s *system, cfg orders.Config, id string) string {
	d, err := saga.NewInspector(s.current().Deps().DB).Show(context.Background(), cfg.Prefix+fulfilment.SagaName, id)
	if err != nil {
		return err.Error()
	}
	b, _ := json.MarshalIndent(d, "", " ")
	return string(b)
}

// slowGateway delays the charges of one order in eight by delay.
type slowGateway struct {
	*payment.SimulatedGateway
	delay time.Duration
}

func (g *slowGateway) Charge(ctx context.Context, key string, amountCents int64) (string, error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	if h.Sum32()%8 == 0 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(g.delay):
		}
	}
	return g.SimulatedGateway.Charge(ctx, key, amountCents)
}
