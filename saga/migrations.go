package saga

import (
	"embed"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the sagas' and reactors' tables (instances, outbox,
// timeouts, handled events), in the schema of the projection Manager's
// pgdb.DB: a saga's step commits in its projection's transaction.
func Migrations() migrations.Set {
	return migrations.Embedded("saga", sqlFiles, "sql", 3, 4)
}
