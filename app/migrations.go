package app

import (
	"embed"

	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/saga"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// ownMigrations is the app's own tables: the keys that sign page cursors.
func ownMigrations() migrations.Set {
	return migrations.Embedded("app", sqlFiles, "sql", 5)
}

// Migrations is every set a service built with app applies to its schema,
// in order: the event store's, the projection daemon's, the sagas' and the
// app's own. `migrate up` applies the same list.
func Migrations() []migrations.Set {
	return []migrations.Set{postgres.Migrations(), projection.Migrations(), saga.Migrations(), ownMigrations()}
}

// ReadSideMigrations is Migrations without the event store's set: what a
// service whose log lives elsewhere (KurrentDB) applies to its PostgreSQL.
func ReadSideMigrations() []migrations.Set {
	return []migrations.Set{projection.Migrations(), saga.Migrations(), ownMigrations()}
}
