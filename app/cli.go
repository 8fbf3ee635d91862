package app

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
)

// CLI returns the configuration of the embedded command line (package cli)
// for a service made of modules: its projection commands know the modules'
// projectors. commands are the service's own (serve, say). With no
// modules it is the framework's own command line (cmd/cairn).
func CLI(name string, modules []Module, commands ...*cobra.Command) cli.Config {
	cfg := cli.Config{
		Name:       name,
		Short:      "Run and operate " + name,
		Commands:   commands,
		OpenLog:    OpenPostgresLog,
		Migrations: Migrations(),
	}
	if len(modules) > 0 {
		cfg.Setup = func(ctx context.Context, m *projection.Manager) error {
			// Only the read models and processes: the command line
			// runs, rebuilds and reports projections.
			return registerOn(m, modules)
		}
	}
	return cfg
}

// OpenPostgresLog opens the PostgreSQL event store in db's schema, for
// cli.Config.OpenLog.
func OpenPostgresLog(_ context.Context, db pgdb.DB, logger *slog.Logger) (eventstore.Log, func(), error) {
	store, err := postgres.New(db.Pool, postgres.Config{Schema: db.Schema, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return store, store.Close, nil
}
