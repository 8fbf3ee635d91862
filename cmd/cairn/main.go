// Command cairn operates a Cairn event store without application code:
// schema migrations, reading and following the event log, and the status,
// pausing and dead letters of the projections the database knows.
// Rebuilding and running projections needs the projectors' code: embed
// package cli in the application's own binary for those.
//
//	cairn migrate up --database-url postgres://... --schema cairn
//	cairn events tail --from start --json
//	cairn projection status --json
package main

import "github.com/cairn-es/cairn/cli"

func main() {
	cli.Main(cli.Config{Name: "cairn"})
}
