package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/internal/pgserver"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

// Chaos settings. The payment timeout is short so that a stall the saga
// blames on the gateway shows within the run.
const (
	chaosClients   = 8
	chaosMaxOrders = 3000 // a bound; the run places what it can in its time
	// chaosRate paces the clients well below the system's capacity (36 to
	// 50 orders/s end to end on a 2-core machine, issue 11): the test is
	// about faults, and a load past capacity would miss the settle bound
	// without any.
	chaosRate           = 25 // orders/s
	chaosPaymentTimeout = 10 * time.Second
	// settleBound is how long after its acknowledgement, or after the
	// recovery from a fault that struck before it was final, an order may
	// take to reach its final state (the bound).
	settleBound = 10 * time.Second
	// faultGap is the load between faults: the settle bound and some.
	faultGap = settleBound + 3*time.Second
)

// TestChaos runs `orders serve` as a real process on a private PostgreSQL
// and places orders from 8 clients, and restocks, while the server is
// killed with SIGKILL (and started again on the same port) and, later, the
// database is restarted with `pg_ctl restart -m immediate`. Clients resend
// under their Idempotency-Key until acknowledged. After each fault every
// acknowledged order reaches its final state within 10 s of the recovery,
// no response is a 500, no order is cancelled for a payment timeout while
// its charge was not sent, no charge is sent after its order's
// cancellation, and the invariants of TestOrdersEndToEnd hold.
//
// CHAOS_LOG_DIR=dir keeps the servers' logs there.
func TestChaos(t *testing.T) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startChaos(ctx, t)
	t.Logf("setup took %s", time.Since(started).Round(time.Millisecond))
	run := c.load(ctx)
	for _, f := range run.faults {
		t.Logf("%s at +%s, recovered in %s", f.name, f.at.Sub(started).Round(time.Millisecond), f.recovered.Sub(f.at).Round(time.Millisecond))
	}
	t.Logf("%d orders and %d restocks acknowledged; %s", len(run.acked), run.restocks, c.client.report())

	// No 500, nor any answer but an acknowledgement, a 503 or a not-yet-
	// known order. This and the next checks do not stop the test, so that
	// a run shows every way it failed.
	assert.Empty(t, c.client.unexpected, "unexpected answers; %s", c.client.report())
	require.Greater(t, len(run.acked), 100, "the load placed too few orders to prove anything")
	checkSettled(t, c.trk, run.faults)
	c.verify(ctx, run)
	c.srv.stop(t)
	t.Logf("TestChaos took %s", time.Since(started).Round(time.Millisecond))
}

// chaos is TestChaos's system: the binary, its database and its server.
type chaos struct {
	t      *testing.T
	bin    string
	pg     *pgserver.Server
	addr   string
	base   string
	logs   string
	srv    *serveProc
	skus   []string
	client *loadClient
	trk    *tracker
}

// startChaos builds the binary, starts a database and a server on it, and
// stocks the shelves.
func startChaos(ctx context.Context, t *testing.T) *chaos {
	c := &chaos{t: t, bin: buildOrders(t), pg: pgserver.New(t), addr: freeAddr(t), logs: t.TempDir()}
	if dir := os.Getenv("CHAOS_LOG_DIR"); dir != "" {
		c.logs = dir
	}
	c.base = "http://" + c.addr
	c.srv = startServe(t, c.bin, c.pg.URL(), c.addr, filepath.Join(c.logs, "serve-1.log"))
	require.NoError(t, waitReady(ctx, c.base))
	var err error
	c.skus, err = demo.Stock(ctx, demo.Options{BaseURL: c.base, Run: "chaos", SKUs: 8, Stock: 500})
	require.NoError(t, err)
	c.client = newLoadClient(c.base)
	c.trk = newTracker(c.client)
	return c
}

// chaosRun is what the load and the faults left.
type chaosRun struct {
	acked    []demo.Order
	restocks int
	faults   []fault
}

// load runs the clients, the restocking and the tracker through both
// faults, then waits until every acknowledged order is final.
func (c *chaos) load(ctx context.Context) chaosRun {
	t := c.t
	orders := startLoad(ctx, c.client, c.trk, genOrders(11, chaosMaxOrders, c.skus), chaosClients, chaosRate)
	restock := startRestock(ctx, c.client, c.skus)
	trackCtx, stopTracking := context.WithCancel(ctx)
	defer stopTracking()
	trackDone := make(chan struct{})
	go func() { defer close(trackDone); c.trk.run(trackCtx) }()

	var run chaosRun
	sleepCtx(ctx, 5*time.Second)
	// Fault 1: the server dies with the work it had in flight; a new one
	// takes its port, as a supervisor would start it.
	c.trk.awaitBusy(ctx, 3, 5*time.Second)
	f := fault{name: "SIGKILL of the server", at: time.Now()}
	c.srv.kill()
	c.srv = startServe(t, c.bin, c.pg.URL(), c.addr, filepath.Join(c.logs, "serve-2.log"))
	require.NoError(t, waitAnswers(ctx, c.base), "the restarted server never answered")
	f.recovered = time.Now()
	run.faults = append(run.faults, f)
	sleepCtx(ctx, faultGap)

	// Fault 2: the database crashes and recovers under the live server.
	c.trk.awaitBusy(ctx, 3, 5*time.Second)
	f = fault{name: "pg_ctl restart -m immediate", at: time.Now()}
	require.NoError(t, c.pg.Restart(pgserver.Immediate))
	f.recovered = time.Now() // pg_ctl -w returns once it accepts connections
	run.faults = append(run.faults, f)
	sleepCtx(ctx, faultGap)

	var err error
	run.restocks, err = restock()
	require.NoError(t, err, "a restock was never acknowledged; %s", c.client.report())
	run.acked, err = orders.stop()
	require.NoError(t, err, "a client gave up on an order; %s", c.client.report())
	// Long enough to see a minute's stall through, so that the checks
	// can say what it did.
	require.NoError(t, c.trk.await(ctx, 90*time.Second), "acknowledged orders never reached a final state")
	stopTracking()
	<-trackDone
	return run
}

// verify checks the log, the saga and the read models once the system is
// quiet.
func (c *chaos) verify(ctx context.Context, run chaosRun) {
	t := c.t
	pool := privatePool(ctx, t, c.pg.URL())
	store, err := postgres.New(pool, postgres.Config{Schema: migrations.DefaultSchema, Logger: quietLog})
	require.NoError(t, err)
	defer store.Close()
	insp := saga.NewInspector(pgtest.DB(store))
	sagaName := sagaOf("")
	awaitSagaDrained(ctx, t, insp, sagaName, 75*time.Second)
	awaitProjections(ctx, t, c.bin, c.pg.URL())

	log := readLog(t, pool, migrations.DefaultSchema)
	checkPaymentOrder(ctx, t, pool, migrations.DefaultSchema, sagaName, log, run.acked)
	require.Equal(t, len(run.acked), log.count("OrderPlaced"), "every acknowledged order is placed once, and no other")
	require.Equal(t, len(c.skus)+run.restocks, log.count("StockAdded"), "every acknowledged restock is recorded once, and no other")
	views := c.trk.views()
	byStatus := map[string]int{}
	for _, o := range run.acked {
		byStatus[views[o.ID].Status]++
		checkOrder(t, o, views[o.ID].Status, log.byOrder[o.ID], func() string { return showSaga(ctx, insp, sagaName, o.ID) })
	}
	t.Logf("orders: %v; refunds %d", byStatus, log.count("PaymentRefunded"))
	checkStock(t, log, c.skus, c.base)
	checkSagas(ctx, t, insp, sagaName, run.acked, views)
	checkReactions(ctx, t, pool, "", len(run.acked), byStatus, log.count("PaymentRefunded"))

	// The read models equal a from-scratch rebuild, as the operator's
	// command verifies it.
	for _, name := range orders.Projections(orders.Config{}) {
		out, err := runOrders(ctx, c.bin, c.pg.URL(), "projection", "rebuild", name, "--verify")
		require.NoError(t, err, "%s differs from a rebuild:\n%s", name, out)
	}
}

// startRestock adds 5 units to one SKU after another, every 300ms, through
// the same careful client, until the returned function is called; that
// returns how many restocks were acknowledged.
func startRestock(ctx context.Context, c *loadClient, skus []string) func() (int, error) {
	stop, done := make(chan struct{}), make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err = c.command(ctx, "/inventory/"+skus[i%len(skus)]+"/stock", []byte(`{"quantity": 5}`), time.Minute); err != nil {
				return
			}
			n++
		}
	}()
	return func() (int, error) {
		close(stop)
		<-done
		return n, err
	}
}

// fault is one fault injected into the run: when it struck and when the
// part that failed answered again.
type fault struct {
	name          string
	at, recovered time.Time
}

// checkSettled checks each order's time to its final state. Its clock
// starts when it was acknowledged, or when the system recovered from a
// fault that struck before the order was final, whichever is later.
func checkSettled(t *testing.T, trk *tracker, faults []fault) {
	t.Helper()
	var late []string
	var worst time.Duration
	for _, o := range trk.all() {
		start := o.ackAt
		for _, f := range faults {
			if f.at.Before(o.finalAt) && f.recovered.After(start) {
				start = f.recovered
			}
		}
		took := o.finalAt.Sub(start)
		worst = max(worst, took)
		if took > settleBound {
			late = append(late, fmt.Sprintf("%s (%s) took %s", o.order.ID, o.view.Status, took.Round(time.Millisecond)))
		}
	}
	t.Logf("slowest settle: %s", worst.Round(time.Millisecond))
	// Each fault must have caught orders on their way, or it proved
	// nothing.
	for _, f := range faults {
		caught, slowest := 0, time.Duration(0)
		for _, o := range trk.all() {
			if o.ackAt.Before(f.at) && o.finalAt.After(f.at) {
				caught++
				slowest = max(slowest, o.finalAt.Sub(f.recovered))
			}
		}
		t.Logf("%s caught %d orders on their way; the last settled %s after the recovery", f.name, caught, slowest.Round(time.Millisecond))
		require.Positive(t, caught, "%s caught no order on its way: raise chaosRate", f.name)
	}
	assert.Empty(t, late[:min(10, len(late))], "%d orders took longer than %s to settle after their acknowledgement or a recovery, among them", len(late), settleBound)
}

// checkPaymentOrder checks the order of payments and cancellations, from
// the saga's outbox and the command log.
//
// The relay records neither when it claimed a command nor when its send
// began, only when the send's outcome was recorded (the outbox's done_at)
// and when the command's events were appended (the command log's
// handled_at); the saga's decision to cancel is dated by the outbox row of
// its CancelOrder (created_at: the start of the transaction that decided).
// In this run that is enough, because the saga decides to cancel only on a
// declined payment (nothing charged) or on the payment timeout, whose clock
// may start only once the charge has been sent. So:
//
//   - an order cancelled because its payment was "not answered" must have
//     had its ChargePayment sent (status sent, done_at) before the cancel
//     was decided: else the saga blamed the gateway for our own queue;
//   - an order both charged and cancelled must have had the charge
//     recorded (handled_at) before the cancel was decided: a charge whose
//     event was appended later was sent after the decision (a charge in
//     flight at the decision would need a timeout that started before its
//     send). Which event comes first in the log does not matter: the
//     saga's CancelOrder waits in its instance's queue behind the charge,
//     so a charge sent after the decision still precedes OrderCancelled.
func checkPaymentOrder(ctx context.Context, t *testing.T, pool *pgxpool.Pool, schema, sagaName string, log eventLog, acked []demo.Order) {
	t.Helper()
	type cmd struct {
		status              string
		created             time.Time
		done, handled       *time.Time
		commandType, reason string
	}
	rows, err := pool.Query(ctx, `SELECT o.instance_id, o.command_type, o.status, o.created_at, o.done_at, c.handled_at, coalesce(o.payload->>'reason', '')
		FROM `+pgx.Identifier{schema, "saga_outbox"}.Sanitize()+` o
		LEFT JOIN `+pgx.Identifier{schema, "commands"}.Sanitize()+` c ON c.command_id = o.command_id
		WHERE o.saga = $1 AND (o.command_type LIKE '%ChargePayment' OR o.command_type LIKE '%CancelOrder')`, sagaName)
	require.NoError(t, err)
	charges, cancels := map[string]cmd{}, map[string]cmd{}
	var id string
	var c cmd
	_, err = pgx.ForEachRow(rows, []any{&id, &c.commandType, &c.status, &c.created, &c.done, &c.handled, &c.reason}, func() error {
		if strings.HasSuffix(c.commandType, "ChargePayment") {
			charges[id] = c
		} else {
			cancels[id] = c
		}
		return nil
	})
	require.NoError(t, err)

	var violations []string
	timeouts, late := 0, 0
	for _, o := range acked {
		evs := log.byOrder[o.ID]
		cancelled, ok := evs.first("OrderCancelled")
		if !ok {
			continue
		}
		decision, decided := cancels[o.ID]
		if !decided {
			violations = append(violations, fmt.Sprintf("%s: cancelled (%q) without the saga's CancelOrder", o.ID, cancelled.Reason))
			continue
		}
		charge, queued := charges[o.ID]
		sentBefore := queued && charge.status == "sent" && charge.done != nil && !charge.done.After(decision.created)
		if strings.HasPrefix(cancelled.Reason, "payment not answered") {
			timeouts++
			if !sentBefore {
				violations = append(violations, fmt.Sprintf("%s: cancelled for a payment timeout decided at %s, and its ChargePayment not sent by then (status %q, done %v); events %v",
					o.ID, decision.created.Format(time.StampMicro), charge.status, charge.done, evs.types()))
			}
		}
		if evs.count("PaymentCharged") > 0 && (charge.handled == nil || !charge.handled.Before(decision.created)) {
			late++
			violations = append(violations, fmt.Sprintf("%s: charged at %v, after its cancellation was decided at %s (%q); events %v",
				o.ID, charge.handled, decision.created.Format(time.StampMicro), cancelled.Reason, evs.types()))
		}
	}
	t.Logf("cancelled for a payment timeout: %d; charged after the cancel: %d", timeouts, late)
	assert.Empty(t, violations[:min(10, len(violations))], "%d payments and cancellations out of order, the first", len(violations))
}

// tracked is an acknowledged order as the tracker saw it.
type tracked struct {
	order   demo.Order
	ackAt   time.Time
	finalAt time.Time // zero until GET /orders/{id} shows a final state
	view    demo.OrderView
}

// tracker polls the orders acknowledged and not yet final, to time when
// each reaches its final state.
type tracker struct {
	client *loadClient
	mu     sync.Mutex
	orders map[string]*tracked
}

func newTracker(c *loadClient) *tracker { return &tracker{client: c, orders: map[string]*tracked{}} }

func (k *tracker) add(o demo.Order) {
	k.mu.Lock()
	k.orders[o.ID] = &tracked{order: o, ackAt: o.PlacedAt}
	k.mu.Unlock()
}

func (k *tracker) pending() []*tracked {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*tracked
	for _, o := range k.orders {
		if o.finalAt.IsZero() {
			out = append(out, o)
		}
	}
	return out
}

// run polls until ctx ends, every 100ms, 8 requests at a time.
func (k *tracker) run(ctx context.Context) {
	for ctx.Err() == nil {
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for _, o := range k.pending() {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				v, ok := k.client.view(ctx, o.order.ID)
				if ok && demo.Final[v.Status] {
					k.mu.Lock()
					o.finalAt, o.view = time.Now(), v
					k.mu.Unlock()
				}
			}()
		}
		wg.Wait()
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// awaitBusy waits, for at most within, until at least n orders are on
// their way (acknowledged, not final): a fault then strikes work in
// flight, as checkSettled requires.
func (k *tracker) awaitBusy(ctx context.Context, n int, within time.Duration) {
	deadline := time.Now().Add(within)
	for len(k.pending()) < n && time.Now().Before(deadline) && ctx.Err() == nil {
		sleepCtx(ctx, 5*time.Millisecond)
	}
}

// await waits, for at most within, until every order is final.
func (k *tracker) await(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		left := k.pending()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ids := make([]string, 0, 5)
			for _, o := range left[:min(5, len(left))] {
				ids = append(ids, o.order.ID)
			}
			return fmt.Errorf("%d orders are not final after %s, among them %v", len(left), within, ids)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (k *tracker) all() []tracked {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]tracked, 0, len(k.orders))
	for _, o := range k.orders {
		out = append(out, *o)
	}
	return out
}

func (k *tracker) views() map[string]demo.OrderView {
	out := map[string]demo.OrderView{}
	for _, o := range k.all() {
		out[o.order.ID] = o.view
	}
	return out
}

// loadRun is the clients placing orders.
type loadRun struct {
	stopping chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	acked    []demo.Order
	errs     []error
}

// startLoad starts clients placing the orders of todo, at most rate a
// second (0: as fast as they can), until they are all placed or stop is
// called; each client gives up on an order after two minutes. trk, when
// set, tracks the orders acknowledged.
func startLoad(ctx context.Context, c *loadClient, trk *tracker, todo []demo.Order, clients, rate int) *loadRun {
	l := &loadRun{stopping: make(chan struct{})}
	next := make(chan int)
	go func() {
		defer close(next)
		var pace <-chan time.Time
		if rate > 0 {
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			pace = tick.C
		}
		for i := range todo {
			if pace != nil {
				select {
				case <-pace:
				case <-l.stopping:
					return
				case <-ctx.Done():
					return
				}
			}
			select {
			case next <- i:
			case <-l.stopping:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range next {
				o := todo[i]
				err := c.place(ctx, &o, 2*time.Minute)
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, err)
				} else {
					l.acked = append(l.acked, o)
				}
				l.mu.Unlock()
				if err == nil && trk != nil {
					trk.add(o)
				}
			}
		}()
	}
	return l
}

// stop lets every client finish the order it is placing (an order sent
// but not acknowledged may be placed: it is resent until it is), then
// returns the acknowledged orders.
func (l *loadRun) stop() ([]demo.Order, error) {
	close(l.stopping)
	return l.wait()
}

// wait waits until the clients have placed every order, or stopped.
func (l *loadRun) wait() ([]demo.Order, error) {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		return l.acked, fmt.Errorf("%d orders not placed, the first: %w", len(l.errs), l.errs[0])
	}
	return l.acked, nil
}

// serveProc is `orders serve` running as a child process.
type serveProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startServe starts `orders serve` on addr and database url, with extra
// arguments, logging to logPath; the test's end stops it.
func startServe(t *testing.T, bin, url, addr, logPath string, extra ...string) *serveProc {
	t.Helper()
	return startProc(t, logPath, bin, append([]string{"serve", "--addr", addr, "--database-url", url,
		"--payment-timeout", chaosPaymentTimeout.String(), "--payment-failure-rate", "0.1", "--payment-latency", "20ms", "--payment-jitter", "30ms"}, extra...)...)
}

// startProc starts bin with args as a child process logging to logPath;
// the test's end stops it.
func startProc(t *testing.T, logPath, bin string, args ...string) *serveProc {
	t.Helper()
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	p := &serveProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("the last warnings and errors of %s:\n%s", filepath.Base(logPath), warnings(logPath, 30))
		}
	})
	return p
}

// kill kills the server with SIGKILL, as a crash does.
func (p *serveProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop stops the server with SIGTERM, as an operator does, killing it if
// it has not exited after 30s.
func (p *serveProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s: the server did not stop within 30s of SIGTERM", filepath.Base(p.log))
		p.kill()
	}
}

// buildOrders builds the sample's binary once for the test.
func buildOrders(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orders")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/orders").CombinedOutput()
	require.NoError(t, err, "building cmd/orders: %s", out)
	return bin
}

// runOrders runs one of the binary's operations commands.
func runOrders(ctx context.Context, bin, url string, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return exec.CommandContext(cctx, bin, append(args, "--database-url", url)...).CombinedOutput()
}

// awaitProjections waits until every projection and reaction has caught up
// with the head of the log, as `orders projection status` reports them.
func awaitProjections(ctx context.Context, t *testing.T, bin, url string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out, err := runOrders(ctx, bin, url, "projection", "status", "--json")
		require.NoError(c, err, "%s", out)
		var all []projection.Status
		require.NoError(c, json.Unmarshal(out, &all), "%s", out)
		assert.NotEmpty(c, all)
		assert.False(c, slices.ContainsFunc(all, func(s projection.Status) bool {
			return s.Lag > 0 || s.State != projection.Running
		}), "the projections never caught up:\n%s", out)
	}, 30*time.Second, 200*time.Millisecond)
}

// waitAnswers waits until the server at base answers HTTP at all: a
// restarted server counts as recovered from then.
func waitAnswers(ctx context.Context, base string) error {
	for {
		resp, err := http.Get(base + server.HealthPath)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func privatePool(ctx context.Context, t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func showSaga(ctx context.Context, insp *saga.Inspector, sagaName, id string) string {
	d, err := insp.Show(ctx, sagaName, id)
	if err != nil {
		return err.Error()
	}
	b, _ := json.MarshalIndent(d, "", " ")
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// warnings returns the last n lines of a server log above level INFO
// (the request log is INFO and drowns them).
func warnings(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		if !strings.Contains(l, "level=INFO") && !strings.Contains(l, "level=DEBUG") {
			lines = append(lines, strings.TrimRight(l, "\n"))
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
