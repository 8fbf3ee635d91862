package postgres

import (
	"embed"
	"io/fs"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the event store's tables: the log, the command log and the
// snapshots. Apply it (with migrations.Up) before New; the read side's and
// the sagas' tables are their owners' sets.
func Migrations() migrations.Set {
	files, err := fs.Sub(sqlFiles, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return migrations.Set{Name: "eventstore", Files: files, Legacy: []int32{1}}
}
