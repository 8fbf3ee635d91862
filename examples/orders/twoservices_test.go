package orders_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/internal/pgserver"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/saga"
)

// shippingSchema holds the shipping service's log and tables, in the same
// private database as the order system's: two services, two logs.
const shippingSchema = "shipping"

// TestTwoServices runs the order system (`orders serve --broker`) and the
// shipping service (`orders shipping`) as two processes that talk only
// through a private NATS server, and places orders from 8 clients while
// first the shipping service, then the order system, then the NATS server
// are killed with SIGKILL and started again. Every acknowledged order reaches its final
// state, every OrderPaid of the order system becomes exactly one shipment
// in the shipping service's log (and no shipment is scheduled for an
// order that was not paid), the shipping service's answer is recorded once
// in the order system, the invariants of TestOrdersEndToEnd hold, and the
// saga's and the shipping service's commands name their causes across the
// broker.
func TestTwoServices(t *testing.T) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, pg, nats := buildOrders(t), pgserver.New(t), startNATS(t)
	broker := nats.url
	logs := t.TempDir()
	addr, shipAddr := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	startOrders := func(n int) *serveProc {
		return startServe(t, bin, pg.URL(), addr, filepath.Join(logs, fmt.Sprintf("serve-%d.log", n)), "--broker", broker)
	}
	startShipping := func(n int) *serveProc {
		return startProc(t, filepath.Join(logs, fmt.Sprintf("shipping-%d.log", n)), bin, "shipping",
			"--addr", shipAddr, "--broker", broker, "--database-url", pg.URL(), "--schema", shippingSchema)
	}
	srv, ship := startOrders(1), startShipping(1)
	require.NoError(t, waitReady(ctx, base))
	require.NoError(t, waitReady(ctx, "http://"+shipAddr))
	skus, err := demo.Stock(ctx, demo.Options{BaseURL: base, Run: "two", SKUs: 8, Stock: 500})
	require.NoError(t, err)
	client := newLoadClient(base)
	trk := newTracker(client)
	load := startLoad(ctx, client, trk, genOrders(21, 400, skus), chaosClients, chaosRate)
	trackCtx, stopTracking := context.WithCancel(ctx)
	defer stopTracking()
	trackDone := make(chan struct{})
	go func() { defer close(trackDone); trk.run(trackCtx) }()

	sleepCtx(ctx, 4*time.Second)
	trk.awaitBusy(ctx, 3, 5*time.Second) // orders on their way when it dies
	ship.kill()
	ship = startShipping(2)
	require.NoError(t, waitReady(ctx, "http://"+shipAddr))
	sleepCtx(ctx, 4*time.Second)
	trk.awaitBusy(ctx, 3, 5*time.Second)
	srv.kill()
	srv = startOrders(2)
	require.NoError(t, waitAnswers(ctx, base))
	sleepCtx(ctx, 4*time.Second)
	trk.awaitBusy(ctx, 3, 5*time.Second)
	nats.kill(t)
	nats.start(t) // same port, same store: both services reconnect by themselves
	sleepCtx(ctx, 4*time.Second)

	acked, err := load.stop()
	require.NoError(t, err, "a client gave up on an order; %s", client.report())
	require.Greater(t, len(acked), 100, "the load placed too few orders to prove anything")
	require.NoError(t, trk.await(ctx, 90*time.Second), "acknowledged orders never reached a final state")
	stopTracking()
	<-trackDone
	assert.Empty(t, client.unexpected, "unexpected answers; %s", client.report())

	pool := privatePool(ctx, t, pg.URL())
	store, err := postgres.New(pool, postgres.Config{Schema: migrations.DefaultSchema, Logger: quietLog})
	require.NoError(t, err)
	defer store.Close()
	insp := saga.NewInspector(pgtest.DB(store))
	sagaName := sagaOf("")
	awaitSagaDrained(ctx, t, insp, sagaName, 60*time.Second)

	log := readLog(t, pool, migrations.DefaultSchema)
	views := trk.views()
	byStatus := map[string]int{}
	for _, o := range acked {
		byStatus[views[o.ID].Status]++
		checkOrder(t, o, views[o.ID].Status, log.byOrder[o.ID], func() string { return showSaga(ctx, insp, sagaName, o.ID) })
	}
	t.Logf("orders: %v", byStatus)
	checkStock(t, log, skus, base)
	checkSagas(ctx, t, insp, sagaName, acked, views)
	checkShipments(ctx, t, pool, log, acked, views)
	srv.stop(t)
	ship.stop(t)
	t.Logf("TestTwoServices took %s", time.Since(started).Round(time.Millisecond))
}

// checkShipments checks the shipments across the two services' logs, once
// the shipping service's publisher has caught up.
func checkShipments(ctx context.Context, t *testing.T, pool *pgxpool.Pool, log eventLog, acked []demo.Order, views map[string]demo.OrderView) {
	t.Helper()
	var shipped eventLog
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		shipped = readLog(t, pool, shippingSchema)
		for _, o := range acked {
			paid := log.byOrder[o.ID].count("OrderPaid")
			assert.Equal(c, paid, shipped.byOrder[o.ID].count("ShipmentScheduled"),
				"order %s (%s): paid %d times, shipments in the shipping service %v", o.ID, views[o.ID].Status, paid, shipped.byOrder[o.ID].types())
		}
	}, 30*time.Second, 200*time.Millisecond)
	paid := 0
	for _, o := range acked {
		evs := log.byOrder[o.ID]
		paid += evs.count("OrderPaid")
		require.LessOrEqual(t, evs.count("OrderPaid"), 1, o.ID)
		require.Equal(t, evs.count("ShipmentRequested"), evs.count("OrderPaid"), "order %s: one request per payment: %v", o.ID, evs.types())
		if views[o.ID].Status == "completed" {
			require.Equal(t, 1, evs.count("ShipmentScheduled"), "order %s: the shipment is recorded once in the order system: %v", o.ID, evs.types())
		}
	}
	require.Positive(t, paid, "no order was paid: nothing crossed the broker")
	require.Equal(t, paid, shipped.count("ShipmentScheduled"), "every shipment scheduled belongs to a paid order")

	// The shipping service's events name, through the broker, the event of
	// the order system that caused them (the command's cause, caused_by),
	// and share its correlation ID.
	var orphans int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM shipping.events s
		WHERE s.type = 'ShipmentScheduled' AND NOT EXISTS (
			SELECT 1 FROM cairn.events o WHERE o.type = 'ShipmentRequested'
			AND o.event_id::text = s.metadata->'extra'->>'caused_by'
			AND o.metadata->>'correlation_id' = s.metadata->>'correlation_id')`).Scan(&orphans))
	require.Zero(t, orphans, "shipments that name no request of the order system as their cause")
}

// natsServer is a private nats-server with JetStream, for one test: its
// streams and consumers are the test's own, and killing it touches nothing
// else.
type natsServer struct {
	bin, addr, url, dir string
	cmd                 *exec.Cmd
	done                chan struct{}
}

// startNATS starts a private nats-server on a free port.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	require.NoError(t, err, "this test starts a private NATS server: install nats-server (Debian package nats-server)")
	addr := freeAddr(t)
	s := &natsServer{bin: bin, addr: addr, url: "nats://" + addr, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			<-s.done
		}
	})
	return s
}

// start starts the server on its address and store, and waits until it
// listens.
func (s *natsServer) start(t *testing.T) {
	t.Helper()
	_, port, err := net.SplitHostPort(s.addr)
	require.NoError(t, err)
	logFile, err := os.OpenFile(filepath.Join(s.dir, "nats.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(s.dir, "js"))
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	require.NoError(t, s.cmd.Start())
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}(s.cmd)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the private nats-server never listened on %s", s.addr)
}

// kill kills the server with SIGKILL.
func (s *natsServer) kill(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}
