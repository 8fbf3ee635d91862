package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

// kurrentLog is a KurrentDB store for the test's log: on a fresh
// in-process stand-in, or on KURRENTDB_URL in a namespace of its own.
func kurrentLog(t *testing.T) *kurrentdb.Store { return kurrentdbtest.NewTarget(t).Open(t) }

// readKurrentLog is readLog for a log in KurrentDB: the whole log in its
// total order.
func readKurrentLog(t *testing.T, store eventstore.LogReader) eventLog {
	t.Helper()
	l := eventLog{byOrder: map[string]events{}, bySKU: map[string]events{}}
	after := eventstore.Start
	for {
		page, err := store.ReadLog(context.Background(), after, eventstore.ReadLogOptions{Limit: 500})
		require.NoError(t, err)
		if len(page) == 0 {
			return l
		}
		for _, r := range page {
			var e loggedEvent
			require.NoError(t, json.Unmarshal(r.Data, &e))
			e.Type, e.Index = r.Type, len(l.all)
			l.all = append(l.all, e)
			if e.OrderID != "" {
				l.byOrder[e.OrderID] = append(l.byOrder[e.OrderID], e)
			}
			if e.SKU != "" {
				l.bySKU[e.SKU] = append(l.bySKU[e.SKU], e)
			}
		}
		after = page[len(page)-1].Position
	}
}

// TestOrdersEndToEndOnKurrentDB is TestOrdersEndToEnd with the log in
// KurrentDB and the read models, sagas and the app's tables in a
// PostgreSQL schema that holds no event table: orders placed concurrently
// over HTTP against limited stock, with declined and slow payments, and
// the process restarted mid-run. The same invariants hold, checked
// against the KurrentDB log.
func TestOrdersEndToEndOnKurrentDB(t *testing.T) {
	gw := &payment.SimulatedGateway{FailureRate: 0.2, Latency: 5 * time.Millisecond, Seed: 43}
	const paymentTimeout = 5 * time.Second
	slow := &slowGateway{SimulatedGateway: gw, delay: paymentTimeout + time.Second}
	cfg := orders.Config{Prefix: fmt.Sprintf("t%07x_", pgtest.Suffix()&0xfffffff), Gateway: slow, PaymentTimeout: paymentTimeout}
	log := kurrentLog(t)
	pool := pgtest.Pool(t, 40)
	schema := fmt.Sprintf("t_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, schema)
	dropPrefixed(t, pool, cfg.Prefix)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	var a *app.App
	var stop context.CancelFunc
	var stopped chan error
	start := func() {
		ctx, cancel := context.WithCancel(context.Background())
		var err error
		a, err = app.New(ctx, app.Config{
			Pool: pool, Schema: schema, Logger: quietLog, EventStore: log,
			Server:     server.Config{Addr: addr},
			Projection: projection.Config{LeaderRetry: 100 * time.Millisecond},
			Saga:       saga.Config{Concurrency: 32, Poll: 200 * time.Millisecond, Retry: retry.Policy{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}},
		}, orders.Modules(cfg)...)
		require.NoError(t, err)
		stop, stopped = cancel, make(chan error, 1)
		go func() { stopped <- a.Run(ctx) }()
	}
	halt := func() {
		stop()
		require.NoError(t, <-stopped)
		a.Close()
	}
	start()
	defer func() { halt() }()

	const placeCount = 120
	opts := demo.Options{BaseURL: "http://" + addr, Run: "kdb", SKUs: 5, Stock: 60, Orders: placeCount,
		Customers: 20, MaxLines: 3, MaxQuantity: 3, Concurrency: 16, Seed: 11}
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
				halt() // clients see refused connections and resend
				start()
			}()
		}
	}
	placed, err := demo.Place(ctx, opts, skus)
	require.NoError(t, err)
	<-restarted
	views, err := demo.Await(ctx, opts, placed)
	require.NoError(t, err)
	require.Len(t, views, placeCount)

	d := a.Deps()
	insp := saga.NewInspector(d.DB)
	awaitSagaDrained(ctx, t, insp, sagaOf(cfg.Prefix), time.Minute)
	head, err := d.Store.Head(ctx)
	require.NoError(t, err)
	require.NoError(t, d.Projections.WaitFor(ctx, head, d.Projections.Names()...))

	var pgLog bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", schema+".events").Scan(&pgLog))
	require.False(t, pgLog, "the PostgreSQL schema holds no event table")

	kl := readKurrentLog(t, log)
	byStatus := map[string]int{}
	for _, o := range placed {
		v := views[o.ID]
		byStatus[v.Status]++
		evs := kl.byOrder[o.ID]
		checkOrder(t, o, v.Status, evs, func() string { return o.ID })
		gs := gw.Charges()[o.ID]
		require.LessOrEqual(t, gs.Charged, 1, o.ID)
		require.Equal(t, evs.count("PaymentCharged"), gs.Charged, "order %s: the gateway and the log disagree", o.ID)
		if v.Status != "completed" {
			require.Equal(t, gs.Charged, gs.Refunds, o.ID)
		}
	}
	t.Logf("orders: %v; gateway %+v; %d events in KurrentDB", byStatus, gw.Totals(), len(kl.all))
	require.Positive(t, byStatus["completed"])
	require.Positive(t, byStatus["rejected"], "the stock is meant to run short")
	require.Positive(t, byStatus["cancelled"], "declined and slow payments are meant to cancel orders")

	checkStock(t, kl, skus, opts.BaseURL)
	checkSagas(ctx, t, insp, sagaOf(cfg.Prefix), placed, views)
	checkReactions(ctx, t, pool, cfg.Prefix, placeCount, byStatus, kl.count("PaymentRefunded"))
	for _, name := range orders.Projections(cfg) {
		rep, err := d.Projections.Rebuild(ctx, name, projection.RebuildOptions{Verify: true})
		require.NoError(t, err)
		require.True(t, rep.Identical(), "%s differs from a rebuild from KurrentDB: %+v", name, rep.Differences)
	}
}
