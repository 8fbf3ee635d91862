package postgres

import (
	"embed"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the event store's tables: the log, the command log and the
// snapshots. Apply it (with migrations.Up) before New; the read side's and
// the sagas' tables are their owners' sets.
func Migrations() migrations.Set {
	return migrations.Embedded("eventstore", sqlFiles, "sql", 1)
}
