package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/analytics"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/notification"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
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
	s := &system{t: t, pool: pool, schema: pgtest.Schema(t, pool), addr: addr, cfg: cfg}
	t.Cleanup(func() {
		s.halt()
		dropPrefixed(pool, cfg.Prefix)
	})
	return s
}

// start runs a fresh process's worth of the system: new components, the
// same database.
func (s *system) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Config{
		Pool: s.pool, Schema: s.schema, Logger: quietLog,
		Server:     server.Config{Addr: s.addr, NoSignals: true},
		Projection: projection.Config{LeaderRetry: 100 * time.Millisecond},
		Saga:       saga.Config{Concurrency: 32, Poll: 200 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond},
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
	insp := saga.NewInspector(d.Store)
	require.Eventually(t, func() bool {
		st, err := insp.Stats(ctx, cfg.Prefix+fulfilment.SagaName)
		require.NoError(t, err)
		return st[0].Commands["pending"] == 0 && st[0].Instances[saga.StatusActive] == 0
	}, time.Minute, 50*time.Millisecond, "the saga never finished its work")
	head, err := d.Store.Head(ctx)
	require.NoError(t, err)
	require.NoError(t, d.Projections.WaitFor(ctx, head, d.Projections.Names()...))

	log := readLog(t, sys.pool, sys.schema)
	byStatus := map[string]int{}
	for _, o := range placed {
		v := views[o.ID]
		byStatus[v.Status]++
		evs := log.byOrder[o.ID]

		// Exactly one final state, the one the read model shows.
		finals := evs.count("OrderCompleted") + evs.count("OrderRejected") + evs.count("OrderCancelled")
		require.Equal(t, 1, finals, "order %s: final events %v", o.ID, evs.types())
		final := map[string]string{"completed": "OrderCompleted", "rejected": "OrderRejected", "cancelled": "OrderCancelled"}[v.Status]
		require.Equal(t, 1, evs.count(final), "order %s is %s but its events are %v", o.ID, v.Status, evs.types())

		// No payment is charged twice; money is kept only for completed
		// orders.
		charged, refunded := evs.count("PaymentCharged"), evs.count("PaymentRefunded")
		require.LessOrEqual(t, charged, 1, o.ID)
		gs := gw.Charges()[o.ID]
		require.LessOrEqual(t, gs.Charged, 1, o.ID)
		require.Equal(t, charged, gs.Charged, "order %s: the gateway and the log disagree", o.ID)
		if v.Status == "completed" {
			require.Equal(t, 1, charged, o.ID)
			require.Zero(t, refunded, o.ID)
		} else {
			require.Equal(t, charged, refunded, "order %s is %s: its charge must be refunded: %v; saga %s", o.ID, v.Status, evs.types(), sagaDump(sys, cfg, o.ID))
			require.Equal(t, gs.Charged, gs.Refunds, o.ID)
		}

		// Reservations: released unless the order completed, when they
		// are sold instead. A failed payment's reservations are released.
		for _, it := range o.Items {
			reserved := evs.countSKU("InventoryReserved", it.SKU)
			released := evs.countSKU("ReservationReleased", it.SKU)
			committed := evs.countSKU("ReservationCommitted", it.SKU)
			require.LessOrEqual(t, reserved, 1, o.ID)
			if v.Status == "completed" {
				require.Equal(t, [2]int{1, 0}, [2]int{committed, released}, "order %s sku %s", o.ID, it.SKU)
			} else {
				require.Equal(t, [2]int{0, reserved}, [2]int{committed, released}, "order %s (%s) sku %s: %v", o.ID, v.Status, it.SKU, evs.types())
			}
			if evs.count("PaymentFailed") > 0 {
				require.Equal(t, reserved, released, "order %s: a failed payment's reservation stays", o.ID)
			}
		}
	}
	t.Logf("orders: %v; gateway %+v", byStatus, gw.Totals())
	// The run exercised every path.
	require.Positive(t, byStatus["completed"])
	require.Positive(t, byStatus["rejected"], "the stock is meant to run short")
	require.Positive(t, byStatus["cancelled"], "declined and slow payments are meant to cancel orders")
	require.Positive(t, log.count("PaymentRefunded"), "a slow payment that succeeds after the timeout is refunded")

	// Stock is never negative, and available + reserved + sold equals
	// what was added, at every event and in the read model.
	for _, sku := range skus {
		var available, reserved, sold, added int
		for _, e := range log.bySKU[sku] {
			switch e.Type {
			case "StockAdded":
				added += e.Quantity
				available += e.Quantity
			case "InventoryReserved":
				available -= e.Quantity
				reserved += e.Quantity
			case "ReservationReleased":
				reserved -= e.Quantity
				available += e.Quantity
			case "ReservationCommitted":
				reserved -= e.Quantity
				sold += e.Quantity
			}
			require.GreaterOrEqual(t, available, 0, "%s went negative at %s", sku, e.Type)
			require.GreaterOrEqual(t, reserved, 0, sku)
			require.Equal(t, added, available+reserved+sold, sku)
		}
		require.Zero(t, reserved, "%s: every order is final, so nothing stays reserved", sku)
		var level struct{ Available, Reserved, Sold int }
		getJSON(t, opts.BaseURL+"/inventory/"+sku, &level)
		require.Equal(t, [3]int{available, reserved, sold}, [3]int{level.Available, level.Reserved, level.Sold}, sku)
	}

	// Every saga instance ended as its order did, with nothing left to send.
	for _, o := range placed {
		inst, err := insp.Show(ctx, cfg.Prefix+fulfilment.SagaName, o.ID)
		require.NoError(t, err)
		require.Equal(t, saga.StatusCompleted, inst.Status, "%s: %s", o.ID, inst.Outcome)
		require.Equal(t, views[o.ID].Status, inst.Outcome, o.ID)
		require.Zero(t, inst.PendingCommands+inst.DeadCommands, o.ID)
	}

	// The reactions saw the same story, without the saga knowing them:
	// one message per order placed and one per final state; the funnel
	// counts every order once.
	var received, finalNotes int
	require.NoError(t, sys.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'order_received'),
		count(*) FILTER (WHERE kind IN ('order_shipped', 'order_rejected', 'order_cancelled'))
		FROM `+pgx.Identifier{cfg.Prefix + notification.ReactorName, "notifications"}.Sanitize()).Scan(&received, &finalNotes))
	require.Equal(t, [2]int{placeCount, placeCount}, [2]int{received, finalNotes})
	counters, err := analytics.Counters(ctx, sys.pool, cfg.Prefix+analytics.ReactorName)
	require.NoError(t, err)
	require.Equal(t, int64(placeCount), counters["orders_placed"])
	require.Equal(t, int64(byStatus["completed"]), counters["orders_completed"])
	require.Equal(t, int64(byStatus["rejected"]), counters["orders_rejected"])
	require.Equal(t, int64(byStatus["cancelled"]), counters["orders_cancelled"])
	require.Equal(t, int64(log.count("PaymentRefunded")), counters["payments_refunded"])

	// The read models equal a from-scratch rebuild.
	for _, name := range orders.Projections(cfg) {
		rep, err := d.Projections.Rebuild(ctx, name, projection.RebuildOptions{Verify: true})
		require.NoError(t, err)
		require.True(t, rep.Identical(), "%s differs from a rebuild: %+v", name, rep.Differences)
	}
}

func waitReady(ctx context.Context, base string) error {
	for {
		resp, err := http.Get(base + server.ReadyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server never became ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// loggedEvent is the part of an event the checks read.
type loggedEvent struct {
	Type     string
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type events []loggedEvent

func (es events) count(typ string) int {
	n := 0
	for _, e := range es {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func (es events) countSKU(typ, sku string) int {
	n := 0
	for _, e := range es {
		if e.Type == typ && e.SKU == sku {
			n++
		}
	}
	return n
}

func (es events) types() []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

type eventLog struct {
	all     events
	byOrder map[string]events
	bySKU   map[string]events
}

func (l eventLog) count(typ string) int { return l.all.count(typ) }

// readLog reads the whole log in its total order.
func readLog(t *testing.T, pool *pgxpool.Pool, schema string) eventLog {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT type, data FROM `+pgx.Identifier{schema, "events"}.Sanitize()+` ORDER BY tx, seq`)
	require.NoError(t, err)
	l := eventLog{byOrder: map[string]events{}, bySKU: map[string]events{}}
	var typ string
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&typ, &data}, func() error {
		var e loggedEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return err
		}
		e.Type = typ
		l.all = append(l.all, e)
		if e.OrderID != "" {
			l.byOrder[e.OrderID] = append(l.byOrder[e.OrderID], e)
		}
		if e.SKU != "" {
			l.bySKU[e.SKU] = append(l.bySKU[e.SKU], e)
		}
		return nil
	})
	require.NoError(t, err)
	return l
}

// dropPrefixed drops the read-model schemas of a test's system.
func dropPrefixed(pool *pgxpool.Pool, prefix string) {
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) OR starts_with(nspname, 'saga_' || $1)`, prefix)
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		_, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE")
	}
}

func sagaDump(s *system, cfg orders.Config, id string) string {
	d, err := saga.NewInspector(s.current().Deps().Store).Show(context.Background(), cfg.Prefix+fulfilment.SagaName, id)
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
