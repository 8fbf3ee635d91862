// Command orders runs Cairn's sample order system.
//
//	orders serve [--addr 127.0.0.1:8080]          the HTTP API, projections and sagas
//	orders demo [--addr 127.0.0.1:8080] [--exit]  serve, then drive a few hundred orders through it
//	orders projection|saga|migrate|events         the embedded operations commands
//
// The database is --database-url, else $DATABASE_URL, else the local
// PostgreSQL at 127.0.0.1:5432.
package main

import (
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/examples/orders"
)

func main() { cli.Main(config()) }

// config is the command line, for main and its tests.
func config() cli.Config {
	return app.CLI("orders", orders.Modules(orders.Config{}), serveCmd(), demoCmd())
}
