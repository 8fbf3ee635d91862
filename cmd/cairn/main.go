// Command cairn is Cairn's own binary. It operates an event store without
// application code: schema migrations, reading and following the event log,
// the status, pausing and dead letters of the projections the database
// knows, and the saga instances it holds. Rebuilding, resetting, retrying
// and running projections needs the projectors' code: embed package cli in
// the application's own binary for those (as a generated service does).
//
//	cairn migrate up --database-url postgres://... --schema cairn
//	cairn events tail --from start --json
//	cairn projection status --json
//	cairn saga list --status failed
//
// It also generates services and their parts (see cairn new --help):
//
//	cairn new service shop --module example.com/shop
//	cairn new context billing          # inside the service
//	cairn new command ArchiveInvoice --context billing
//	cairn new sync                     # after editing //cairn: directives
//
// A service requires the Cairn this binary was built from: its released
// version, or (built from a checkout, go install ./cmd/cairn) that checkout
// through a replace directive; --cairn-version and --cairn-replace choose.
package main

import (
	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/internal/scaffold"
)

func main() {
	cli.Main(config())
}

// short is the root's description: the operations commands and the
// generators.
const short = "Operate a Cairn event store (migrations, the event log, projections, sagas) and generate services (cairn new)"

// config is the command line: the framework's operations commands and the
// generators.
func config() cli.Config {
	cfg := app.CLI("cairn", nil, scaffold.NewCommand())
	cfg.Short = short
	return cfg
}
