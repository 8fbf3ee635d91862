package projection

import (
	"embed"
	"io/fs"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the projection daemon's control tables (one row per
// projection, dead letters), in the schema of the Manager's pgdb.DB. A
// projection's checkpoint is not among them: it lives in the read model's
// own schema, written in the read model's transaction.
func Migrations() migrations.Set {
	files, err := fs.Sub(sqlFiles, "sql")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return migrations.Set{Name: "projection", Files: files, Legacy: []int32{2}}
}
