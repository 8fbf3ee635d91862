// Command cairn operates a Cairn event store without application code:
// schema migrations, reading and following the event log, and the status,
// pausing and dead letters of the projections the database knows.
// Rebuilding and running projections needs the projectors' code: embed
// package cli in the application's own binary for those.
//
//	cairn migrate up --database-url postgres://... --schema cairn
//	cairn events tail --from start --json
//	cairn projection status --json
//
// It also generates services and their parts:
//
//	cairn new service shop --module example.com/shop
//	cairn new context billing          # inside the service
//	cairn new command ArchiveInvoice --context billing
//
// See cairn new --help.
package main

import (
	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/internal/scaffold"
)

func main() {
	cli.Main(config())
}

// config is the command line: the framework's operations commands and the
// generators.
func config() cli.Config {
	return cli.Config{Name: "cairn", Commands: []*cobra.Command{scaffold.NewCommand()}}
}
