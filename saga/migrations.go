package saga

import (
	"embed"
	"io/fs"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the sagas' and reactors' tables (instances, outbox,
// timeouts, handled events), in the schema of the projection Manager's
// pgdb.DB: a saga's step commits in its projection's transaction.
func Migrations() migrations.Set {
	files, err := fs.Sub(sqlFiles, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return migrations.Set{Name: "saga", Files: files, Legacy: []int32{3, 4}}
}
