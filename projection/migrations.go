package projection

import (
	"embed"

	"github.com/cairn-es/cairn/migrations"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the projection daemon's control tables (one row per
// projection, dead letters), in the schema of the Manager's pgdb.DB. A
// projection's checkpoint is not among them: it lives in the read model's
// own schema, written in the read model's transaction.
func Migrations() migrations.Set {
	return migrations.Embedded("projection", sqlFiles, "sql", 2)
}
