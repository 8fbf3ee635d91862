package main

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders/shipping"
	"github.com/cairn-es/cairn/server"
)

// shippingCmd runs the shipping context as a service of its own: its log
// and tables in --schema of --database-url's database, its only link to
// the order system the broker.
func shippingCmd() *cobra.Command {
	var addr, broker string
	cmd := &cobra.Command{
		Use:   "shipping",
		Short: "Run the shipping service, which the order system reaches through NATS (serve --broker)",
		Long: "Run the shipping context as a service of its own until SIGINT or SIGTERM: it takes the\n" +
			"order system's shipment requests from the broker (the ORDERS stream), schedules and\n" +
			"cancels shipments in its own event log, and publishes what it did (the SHIPPING stream).\n" +
			"Give it a schema of its own (--schema shipping) so that its log is not the order system's.\n" +
			"It serves /healthz, /readyz and /metrics on --addr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if broker == "" {
				return errors.New("shipping needs --broker, the NATS server (nats://127.0.0.1:4222) the order system publishes to")
			}
			ctx, stop := server.SignalContext(cmd.Context())
			defer stop()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ln, err := app.Listen(addr)
			if err != nil {
				return err
			}
			a, err := app.New(ctx, app.Config{
				DatabaseURL:     cmd.Flag("database-url").Value.String(),
				DatabaseURLFrom: "--database-url",
				Schema:          cmd.Flag("schema").Value.String(),
				Server:          server.Config{Addr: addr},
				Logger:          logger,
				Broker:          app.BrokerConfig{URL: broker},
			}, shipping.Service{})
			if err != nil {
				_ = ln.Close()
				return err
			}
			defer a.Close()
			logger.Info("orders: shipping service running", "addr", "http://"+ln.Addr().String(), "broker", broker)
			return a.RunWith(ctx, app.RunOptions{Listener: ln})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "listen address of the service's health and metrics endpoints")
	cmd.Flags().StringVar(&broker, "broker", "", "NATS server with JetStream (nats://127.0.0.1:4222)")
	return cmd
}
