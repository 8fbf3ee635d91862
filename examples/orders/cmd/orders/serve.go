package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/examples/orders/fulfilment"
	"github.com/cairn-es/cairn/examples/orders/payment"
	"github.com/cairn-es/cairn/server"
)

// systemFlags are the flags serve and demo share.
type systemFlags struct {
	addr                        string
	failureRate                 float64
	latency, jitter, payTimeout time.Duration
	noProjections, noSagas      bool
}

func (f *systemFlags) register(cmd *cobra.Command, failureRate float64, latency, jitter, payTimeout time.Duration) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", server.DefaultAddr, "listen address of the HTTP API (127.0.0.1:0: any free port; :8080: every interface)")
	fl.Float64Var(&f.failureRate, "payment-failure-rate", failureRate, "share of payments the simulated gateway declines, 0 to 1")
	fl.DurationVar(&f.latency, "payment-latency", latency, "how long the simulated gateway takes to answer")
	fl.DurationVar(&f.jitter, "payment-jitter", jitter, "random extra time the simulated gateway takes, up to this")
	fl.DurationVar(&f.payTimeout, "payment-timeout", payTimeout, "how long the saga waits for a payment before cancelling the order")
}

func (f *systemFlags) gateway() *payment.SimulatedGateway {
	return &payment.SimulatedGateway{FailureRate: f.failureRate, Latency: f.latency, Jitter: f.jitter, Seed: uint64(time.Now().UnixNano())}
}

// start binds the HTTP listener, then assembles the system on the command
// line's database and schema. Binding comes first: on a busy address the
// command fails at once, before it connects to a database, migrates or
// sends a request anywhere. The caller passes the listener to RunWith.
func (f *systemFlags) start(ctx context.Context, cmd *cobra.Command, gw payment.Gateway, logger *slog.Logger) (*app.App, net.Listener, error) {
	if f.failureRate < 0 || f.failureRate > 1 {
		return nil, nil, fmt.Errorf("--payment-failure-rate must be between 0 and 1")
	}
	if f.payTimeout <= 0 {
		return nil, nil, fmt.Errorf("--payment-timeout must be positive")
	}
	ln, err := app.Listen(f.addr)
	if err != nil {
		return nil, nil, err
	}
	a, err := app.New(ctx, app.Config{
		DatabaseURL:     cmd.Flag("database-url").Value.String(),
		DatabaseURLFrom: "--database-url",
		Schema:          cmd.Flag("schema").Value.String(),
		Server:          server.Config{Addr: f.addr, NoSignals: true},
		Logger:          logger,
	}, orders.Modules(orders.Config{Gateway: gw, PaymentTimeout: f.payTimeout})...)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	return a, ln, nil
}

func serveCmd() *cobra.Command {
	var f systemFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API and run the projections and sagas until SIGINT or SIGTERM",
		Long: "Serve the HTTP API on --addr, applying migrations first, and run the projections,\n" +
			"the fulfilment saga and the reactions in this process (unless --no-projections or\n" +
			"--no-sagas: run them in another process, with `orders projection run`, say).\n" +
			"The address is bound before the database is touched: when another process holds it,\n" +
			"serve exits at once with status 1 and changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := server.SignalContext(cmd.Context())
			defer stop()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			a, ln, err := f.start(ctx, cmd, f.gateway(), logger)
			if err != nil {
				return err
			}
			defer a.Close()
			logger.Info("orders: serving", "addr", "http://"+ln.Addr().String())
			return a.RunWith(ctx, app.RunOptions{NoProjections: f.noProjections, NoSagas: f.noSagas, Listener: ln})
		},
	}
	f.register(cmd, 0, 0, 0, fulfilment.DefaultPaymentTimeout)
	cmd.Flags().BoolVar(&f.noProjections, "no-projections", false, "do not run the projections and reactions here")
	cmd.Flags().BoolVar(&f.noSagas, "no-sagas", false, "do not send the sagas' commands or fire their timeouts here")
	return cmd
}
