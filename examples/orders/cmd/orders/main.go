// Command orders runs Cairn's sample order system.
//
//	orders serve [--addr 127.0.0.1:8080] [--store URL]          the HTTP API, projections and sagas
//	orders demo [--addr 127.0.0.1:8080] [--store URL] [--exit]  serve, then drive a few hundred orders through it
//	orders serve --broker nats://127.0.0.1:4222                 the same, with shipping reached through NATS
//	orders shipping --broker nats://127.0.0.1:4222 --schema shipping  the shipping service
//	orders projection|saga|migrate|events                       the embedded operations commands
//
// The database is --database-url, else $DATABASE_URL, else the local
// PostgreSQL at 127.0.0.1:5432. The event log is the PostgreSQL store in
// that database unless --store (serve, demo) or $CAIRN_STORE names a
// KurrentDB server (kurrentdb://127.0.0.1:2113?tls=false, say); the read
// models, sagas and the app's tables stay in the PostgreSQL database. The
// operations commands follow $CAIRN_STORE: with a KurrentDB log they read
// it there, and migrate only the read side's tables.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/pgdb"
)

func main() { cli.Main(config()) }

// config is the command line, for main and its tests.
func config() cli.Config { return configFrom(os.Getenv) }

// configFrom is config with the environment given.
func configFrom(getenv func(string) string) cli.Config {
	cfg := app.CLI("orders", orders.Modules(orders.Config{}), serveCmd(), demoCmd(), shippingCmd())
	if url := getenv(EnvStore); app.IsKurrentDBURL(url) {
		cfg.OpenLog = func(ctx context.Context, _ pgdb.DB, logger *slog.Logger) (eventstore.Log, func(), error) {
			store, closeStore, err := app.OpenKurrentDB(ctx, url, logger)
			if err != nil {
				return nil, nil, fmt.Errorf("%w (from $%s)", err, EnvStore)
			}
			return store, closeStore, nil
		}
		cfg.Migrations = app.ReadSideMigrations()
	}
	return cfg
}
