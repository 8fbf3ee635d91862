package cli_test

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// orderCount is an application's projector: orders placed per customer.
type orderCount struct{}

func (orderCount) Name() string         { return "order_count" }
func (orderCount) Version() int         { return 1 }
func (orderCount) EventTypes() []string { return []string{"OrderPlaced"} }
func (orderCount) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE order_count (customer text PRIMARY KEY, orders int NOT NULL)`)
	return err
}
func (orderCount) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	_, err := tx.Exec(ctx, `INSERT INTO order_count VALUES ($1->>'customer', 1)
		ON CONFLICT (customer) DO UPDATE SET orders = order_count.orders + 1`, string(e.Data))
	return err
}

// An application embeds the command line in its binary: it names the
// binary and registers its projectors; cli.Main parses os.Args, runs the
// command and exits with its status. Here the root command runs in-process
// instead, as tests do, on the database of $DATABASE_URL (or the local
// default).
func Example() {
	cfg := cli.Config{
		Name:       "shop",
		Schema:     "shop",
		OpenLog:    app.OpenPostgresLog, // the log: the PostgreSQL store in --schema
		Migrations: app.Migrations(),    // what migrate up applies
		Setup: func(ctx context.Context, m *projection.Manager) error {
			return m.Register(orderCount{})
		},
	}
	// In the application's main: cli.Main(cfg)

	root := cli.New(cfg)
	root.SetArgs([]string{"migrate", "status", "--schema", "example_never_migrated"})
	_ = root.Execute()
	// Output:
	// schema example_never_migrated: version 0 of 9, 9 pending; run 'shop migrate up'
}
