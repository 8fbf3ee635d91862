package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/analytics"
	"github.com/cairn-es/cairn/examples/orders/demo"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/server"
)

func demoCmd() *cobra.Command {
	var (
		// The demo's client sends no tokens: the environment's
		// authentication settings are not for it.
		f    = systemFlags{noEnv: true}
		opts demo.Options
		exit bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Serve the system, drive a few hundred orders through it over HTTP and print a summary",
		Long: "Serve the system as serve does, stock a few products, place --orders orders from\n" +
			"--concurrency clients (some for more than the stock, some paid with a card the simulated\n" +
			"gateway declines), wait until every order is completed, rejected or cancelled, and print\n" +
			"a summary. Then keep serving until Ctrl-C, or return with --exit.\n" +
			"The event log is --store (or $CAIRN_STORE): PostgreSQL by default, or KurrentDB.\n" +
			"The address is bound before the database is touched, and the demo sends its requests\n" +
			"only to the listener it bound: when another process holds --addr, demo exits at once\n" +
			"with status 1, changes nothing and sends that process nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := server.SignalContext(cmd.Context())
			defer stop()
			out := cmd.OutOrStdout()
			// The demo prints its own story; the system logs only warnings.
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			gw := f.gateway()
			sys, err := f.start(ctx, cmd, gw, logger)
			if err != nil {
				return err
			}
			defer sys.close()
			a, ln := sys.app, sys.ln
			runCtx, stopRun := context.WithCancel(ctx)
			defer stopRun()
			running := make(chan error, 1)
			go func() { running <- a.RunWith(runCtx, app.RunOptions{Listener: ln}) }()

			// The listener's own address, not the flag's text: :0 names
			// no port, and a host name could lead somewhere else.
			opts.BaseURL = "http://" + dialAddr(ln.Addr())
			if err := awaitReady(ctx, opts.BaseURL, running); err != nil {
				return err
			}
			fmt.Fprintf(out, "Cairn order system: serving on %s (database schema %q)\n", opts.BaseURL, a.Deps().DB.Schema)
			fmt.Fprintf(out, "Event log: %s\n\n", sys.store.describe())
			report, err := drive(ctx, out, a, gw, opts)
			if err != nil {
				stopRun()
				return errors.Join(err, <-running)
			}
			report.print(out, opts.BaseURL)
			if exit {
				stopRun()
				return <-running
			}
			fmt.Fprintln(out, "\nStill serving; Ctrl-C stops.")
			return <-running
		},
	}
	// The demo waits less for a payment than serve does, so that an order
	// whose payment never answers is cancelled within the demo's run.
	f.register(cmd, 0.2, 20*time.Millisecond, 60*time.Millisecond, demoPaymentTimeout)
	fl := cmd.Flags()
	fl.IntVar(&opts.Orders, "orders", 300, "orders to place")
	fl.IntVar(&opts.Concurrency, "concurrency", 16, "clients placing orders at once")
	fl.IntVar(&opts.SKUs, "skus", 8, "products to stock")
	fl.IntVar(&opts.Stock, "stock", 120, "units of each product")
	fl.Uint64Var(&opts.Seed, "seed", 0, "seed of the generated orders (0: random)")
	fl.BoolVar(&exit, "exit", false, "return after the summary instead of serving on")
	return cmd
}

// demoPaymentTimeout is the demo's default --payment-timeout.
const demoPaymentTimeout = 10 * time.Second

// dialAddr is where to reach a listener of this process: its own address,
// with an unspecified IP (0.0.0.0, ::) replaced by the loopback address of
// the same family, which the listener also covers.
func dialAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	ip := net.IPv6loopback
	if tcp.IP.To4() != nil {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// awaitReady waits for /readyz, or for the system to fail starting.
func awaitReady(ctx context.Context, base string, running <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get(base + server.ReadyPath); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-running:
			return fmt.Errorf("the system stopped while starting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the server did not become ready within 30s")
		}
	}
}

// report is what the demo prints.
type report struct {
	placed      []demo.Order
	views       map[string]demo.OrderView
	elapsed     time.Duration
	events      int64
	lag         map[string]int64
	sagaOutcome map[string]int64
	funnel      map[string]int64
	gateway     payment.Totals
}

func drive(ctx context.Context, out io.Writer, a *app.App, gw *payment.SimulatedGateway, opts demo.Options) (*report, error) {
	d := a.Deps()
	startHead, err := d.Store.Head(ctx)
	if err != nil {
		return nil, err
	}
	skus, err := demo.Stock(ctx, opts)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Stocked %d products (%s … %s), %d units each.\n", len(skus), skus[0], skus[len(skus)-1], max(opts.Stock, 1))
	start := time.Now()
	total := opts.Orders
	opts.Placed = func(n int) {
		if n%100 == 0 || n == total {
			fmt.Fprintf(out, "  placed %d/%d orders\n", n, total)
		}
	}
	placed, err := demo.Place(ctx, opts, skus)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Placed %d orders in %s; waiting for each to be completed, rejected or cancelled…\n", len(placed), time.Since(start).Round(time.Millisecond))
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	views, err := demo.Await(waitCtx, opts, placed)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(placed))
	for i, o := range placed {
		ids[i] = o.ID
	}
	// An order can be final before its saga has sent its last commands
	// (stock committed as sold, a late payment refunded): wait for them,
	// so that the summary and the inventory add up.
	for {
		var pending int
		if err := d.DB.Pool.QueryRow(waitCtx, `SELECT count(*) FROM `+d.DB.Schema+`.saga_outbox
			WHERE saga = $1 AND instance_id = ANY($2) AND status = 'pending'`, fulfilment.SagaName, ids).Scan(&pending); err != nil {
			return nil, fmt.Errorf("waiting for the saga's last commands: %w", err)
		}
		if pending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// This run's charges only: the gateway's table keeps every run's.
	gwTotals, err := gw.TotalsContext(ctx, ids...)
	if err != nil {
		return nil, err
	}
	r := &report{placed: placed, views: views, elapsed: time.Since(start), gateway: gwTotals, lag: map[string]int64{}}
	if r.events, err = eventstore.CountLog(ctx, d.Store, startHead, eventstore.ReadLogOptions{}); err != nil {
		return nil, err
	}
	for _, name := range orders.Projections(orders.Config{}) {
		st, err := d.Projections.Status(ctx, name)
		if err != nil {
			return nil, err
		}
		r.lag[name] = st.Lag
	}
	r.sagaOutcome = map[string]int64{}
	rows, err := d.DB.Pool.Query(ctx, `SELECT outcome, count(*) FROM `+d.DB.Schema+`.saga_instances
		WHERE saga = $1 AND instance_id = ANY($2) GROUP BY 1`, fulfilment.SagaName, ids)
	if err != nil {
		return nil, err
	}
	var outcome string
	var n int64
	for rows.Next() {
		if err := rows.Scan(&outcome, &n); err != nil {
			return nil, err
		}
		r.sagaOutcome[outcome] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if r.funnel, err = analytics.Counters(ctx, d.DB.Pool, analytics.ReactorName); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *report) print(out io.Writer, base string) {
	byStatus := map[string]int{}
	var latencies []time.Duration
	for _, v := range r.views {
		byStatus[v.Status]++
		latencies = append(latencies, v.UpdatedAt.Sub(v.CreatedAt))
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Round(time.Millisecond)
	}
	fmt.Fprintf(out, "\nAll %d orders reached a final state in %s (%.0f orders/s end to end).\n\n",
		len(r.views), r.elapsed.Round(time.Millisecond), float64(len(r.views))/r.elapsed.Seconds())
	fmt.Fprintf(out, "Orders by final state:   completed %d, rejected %d (too little stock), cancelled %d (payment declined or timed out)\n",
		byStatus["completed"], byStatus["rejected"], byStatus["cancelled"])
	fmt.Fprintf(out, "Placement to final:      p50 %s, p99 %s (placed in a burst: mostly queueing)\n", pct(0.50), pct(0.99))
	fmt.Fprintf(out, "Events appended:         %d\n", r.events)
	fmt.Fprintf(out, "Projection lag (events):")
	for _, name := range orders.Projections(orders.Config{}) {
		fmt.Fprintf(out, " %s %d", name, r.lag[name])
	}
	fmt.Fprintf(out, "\nSaga outcomes:           completed %d, rejected %d, cancelled %d\n",
		r.sagaOutcome[fulfilment.OutcomeCompleted], r.sagaOutcome[fulfilment.OutcomeRejected], r.sagaOutcome[fulfilment.OutcomeCancelled])
	fmt.Fprintf(out, "Payment gateway:         %d charged, %d declined, %d refunded\n", r.gateway.Charges, r.gateway.Declines, r.gateway.Refunds)
	fmt.Fprintf(out, "Analytics (all runs):    placed %d, completed %d, rejected %d, cancelled %d\n",
		r.funnel["orders_placed"], r.funnel["orders_completed"], r.funnel["orders_rejected"], r.funnel["orders_cancelled"])
	if len(r.placed) > 0 {
		o := r.placed[0]
		fmt.Fprintf(out, "\nTry:\n  curl -s %s/orders/%s\n  curl -s '%s/orders?customer_id=%s&limit=5'\n  curl -s %s/inventory/%s\n  orders saga show %s\n",
			base, o.ID, base, o.CustomerID, base, o.Items[0].SKU, o.ID)
	}
}
