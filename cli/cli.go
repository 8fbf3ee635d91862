// Package cli is Cairn's command line, built on cobra, for an application to
// embed in its own binary: the application supplies its projections, the
// package supplies the commands that operate them.
//
//	func main() {
//		cli.Main(cli.Config{
//			Name: "shop",
//			Setup: func(ctx context.Context, m *projection.Manager) error {
//				return m.Register(orders.NewSummary(registry))
//			},
//		})
//	}
//
// gives
//
//	shop projection list
//	shop projection status [NAME] [--json]
//	shop projection rebuild NAME [--in-place | --verify] [--json]
//	shop projection reset NAME
//	shop projection pause NAME | resume NAME
//	shop projection dead-letters NAME [--json]
//	shop projection retry NAME (--all | ID...)
//	shop projection run
//	shop migrate up | status [--json]
//	shop events read STREAM [--from N] [--backward] [--limit N] [--json]
//	shop events tail [--from POSITION] [--type T]... [--category C]... [--json]
//	shop saga list [--saga S] [--status active|completed|failed] [--limit N] [--json]
//	shop saga show ID [--saga S] [--json]
//
// Every command takes --database-url (default $DATABASE_URL, then
// Config.DatabaseURL, then a local PostgreSQL, app.DefaultDatabaseURL) and
// --schema, the schema of Cairn's tables (default Config.Schema, then
// migrations.DefaultSchema).
// Rebuilding, resetting, retrying and running need the projectors' code, so
// they exist only when Config.Setup is set; the rest also work on
// projections known only to the database. That is what the framework's own
// binary, cmd/cairn, offers.
//
// Results go to the command's standard output (cmd.OutOrStdout()), progress,
// logs and errors to its standard error. --json selects stable JSON for
// scripts: one indented document for status, dead letters, migration status
// and rebuild reports, and JSON Lines (one event per line) for events.
// Main exits 0 on success, 1 on failure, 2 on a usage error and 3 when
// rebuild --verify finds differences (see ExitCode).
//
// Every command stops gracefully on SIGINT or SIGTERM: projection run and
// events tail return cleanly, a rebuild drops its unfinished shadow copy. A
// second signal kills the process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgconnect"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
)

// Config describes the application embedding the command line. The zero
// value is the framework's own binary: no projectors, default names.
type Config struct {
	// Name is the command's name as users type it (default "cairn").
	Name string
	// Short is the one-line description shown by help.
	Short string
	// DatabaseURL replaces the local PostgreSQL of app.DefaultDatabaseURL
	// as the database used when neither --database-url nor $DATABASE_URL is
	// given.
	DatabaseURL string
	// Schema is the default of --schema, the PostgreSQL schema holding
	// Cairn's tables (default migrations.DefaultSchema).
	Schema string
	// Connect opens the connection pool for a database URL; set it to tune
	// the pool (sizes, TLS, tracing). Default: pgxpool.New. The command
	// line closes the pool when the command ends.
	Connect func(ctx context.Context, databaseURL string) (*pgxpool.Pool, error)
	// OpenLog opens the event log the commands read (events, and the
	// projections' source) for the session's database, --schema included,
	// and returns what closes it. Without it the commands that open the log
	// fail with ErrNoLog. app.CLI sets it to the service's store.
	OpenLog func(ctx context.Context, db pgdb.DB, logger *slog.Logger) (eventstore.Log, func(), error)
	// Migrations are the sets `migrate up` applies, in order, and that the
	// other commands require applied. app.CLI sets them to app.Migrations.
	Migrations []migrations.Set
	// Projection configures the projection manager (batch size, retries,
	// default failure policy). Its Logger defaults to Logger.
	Projection projection.Config
	// Setup registers the application's projectors on the manager. When
	// nil, the commands that need the projectors' code (rebuild, reset,
	// retry, run) are left out.
	Setup func(ctx context.Context, m *projection.Manager) error
	// Logger receives the store's and the projection daemon's logs.
	// Default: text on the command's standard error, at --log-level.
	Logger *slog.Logger
	// Commands are the application's own commands, added to the root
	// beside the framework's (a service's serve, say).
	Commands []*cobra.Command
}

// Errors the commands return, besides those of the packages they call.
var (
	// ErrModelsDiffer: rebuild --verify found the live model differs from
	// a fresh rebuild. ExitCode maps it to 3.
	ErrModelsDiffer = errors.New("the live model differs from a fresh rebuild")
	// ErrRetryPending: projection retry asked the process running a
	// projection to retry its dead letters, and none did within --wait.
	ErrRetryPending = errors.New("the retry is still waiting for the projection's process")
	// ErrUnreachable: the database could not be used. The error's message
	// says why (nothing listening, a refused login, a missing database, a
	// full server, a URL that is not PostgreSQL's, a timeout or TLS), the
	// URL used, its origin and what to do. It is app.ErrUnreachable.
	ErrUnreachable = pgconnect.ErrUnreachable
	// ErrNotMigrated: the schema lacks migrations; run migrate up.
	ErrNotMigrated = errors.New("schema is not migrated")
	// ErrNoLog: the command reads the event log and Config.OpenLog is nil.
	ErrNoLog = errors.New("no event log configured (cli.Config.OpenLog)")
)

// UsageError is a command line that does not parse: an unknown command or
// flag, a missing argument, flags that exclude each other.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError for cmd (exit status 2 under Main): the
// message from format and args, then where to find cmd's usage. The
// commands of Config.Commands return it for arguments they refuse.
func Usagef(cmd *cobra.Command, format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format+"\nRun '%s --help' for usage.", append(args, cmd.CommandPath())...)}
}

// ExitCode is the process exit status for an error returned by a command:
// 0 for nil, 2 for a *UsageError, 3 for ErrModelsDiffer, 1 otherwise.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return 2
	case errors.Is(err, ErrModelsDiffer):
		return 3
	default:
		return 1
	}
}

// Main runs the command line on os.Args and exits with ExitCode. Errors
// are printed on standard error by the command itself.
func Main(cfg Config) {
	os.Exit(ExitCode(New(cfg).Execute()))
}

// New returns the root command. Execute it (ExecuteContext, with SetArgs,
// SetOut and SetErr in tests); it returns the command's error, which it has
// already printed on the command's standard error.
func New(cfg Config) *cobra.Command {
	if cfg.Name == "" {
		cfg.Name = "cairn"
	}
	if cfg.Short == "" {
		cfg.Short = "Operate a Cairn event store and its projections"
	}
	if cfg.Schema == "" {
		cfg.Schema = migrations.DefaultSchema
	}
	a := &app{cfg: cfg}
	root := group(&cobra.Command{
		Use:   cfg.Name,
		Short: cfg.Short,
		Long: cfg.Short + ".\n\n" +
			"The database is --database-url, else $DATABASE_URL, else " + a.defaultURL() + ".\n" +
			"Output goes to standard output; --json gives stable JSON for scripts.\n" +
			exitStatusHelp(cfg),
		SilenceUsage: true,
	})
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return Usagef(cmd, "%v", err)
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "database-url", "", "PostgreSQL URL (default $DATABASE_URL, else "+a.defaultURL()+")")
	pf.StringVar(&a.schema, "schema", cfg.Schema, "schema holding Cairn's tables")
	pf.StringVar(&a.logLevel, "log-level", "", "level of log lines on stderr: debug, info, warn or error (default info for projection run, else warn)")
	root.AddCommand(a.projectionCmd(), a.migrateCmd(), a.eventsCmd(), a.sagaCmd(), a.integrationCmd())
	root.AddCommand(cfg.Commands...)
	return root
}

// exitStatusHelp lists the exit statuses of the root command. Status 3
// comes only from rebuild --verify, which exists only with Config.Setup:
// without it the help does not promise a status nothing returns.
func exitStatusHelp(cfg Config) string {
	s := "Exit status: 0 success, 1 failure, 2 usage error"
	if cfg.Setup != nil {
		s += ", 3 rebuild --verify found differences"
	}
	return s + "."
}

// group makes cmd a command that only holds subcommands: alone it prints
// its help; with an argument that names no subcommand it is a usage error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		hint := ""
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return Usagef(c, "unknown command %q for %q%s", args[0], c.CommandPath(), hint)
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

// nArgs checks the positional arguments: at least min, at most max (-1:
// any number), named in the message.
func nArgs(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return Usagef(cmd, "%s: missing %s", cmd.CommandPath(), what)
		case max >= 0 && len(args) > max:
			return Usagef(cmd, "%s: unexpected argument %q", cmd.CommandPath(), args[max])
		}
		return nil
	}
}

// app holds the configuration and the parsed persistent flags.
type app struct {
	cfg      Config
	url      string
	schema   string
	logLevel string
}

func (a *app) defaultURL() string {
	if a.cfg.DatabaseURL != "" {
		return "the application's default"
	}
	return pgconnect.DefaultURL
}

// target is the database URL and where it came from.
func (a *app) target() pgconnect.Target {
	return pgconnect.Resolve(
		pgconnect.Target{URL: a.url, From: pgconnect.FromFlag},
		pgconnect.Env(),
		pgconnect.Target{URL: a.cfg.DatabaseURL, From: "the application's default"})
}

// action wraps a command's body: it cancels the context on SIGINT or
// SIGTERM (and then lets a second signal kill the process).
func (a *app) action(fn func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			stop()
		}()
		return fn(ctx, cmd, args)
	}
}

func (a *app) logger(cmd *cobra.Command, fallback slog.Level) (*slog.Logger, error) {
	if a.cfg.Logger != nil {
		return a.cfg.Logger, nil
	}
	level := fallback
	if a.logLevel != "" {
		if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
			return nil, Usagef(cmd, "--log-level %q: want debug, info, warn or error", a.logLevel)
		}
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})), nil
}

// session is what one command opened; close releases it all.
type session struct {
	pool       *pgxpool.Pool
	db         pgdb.DB
	store      eventstore.Log
	closeStore func()
	mgr        *projection.Manager
}

func (s *session) close() {
	if s.mgr != nil {
		s.mgr.Close()
	}
	if s.closeStore != nil {
		s.closeStore()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// connect opens the pool and checks that it can be used; its error names
// the problem, the URL (password masked), where it came from and the fix.
func (a *app) connect(ctx context.Context) (*session, error) {
	if err := migrations.ValidateSchema(a.schema); err != nil {
		return nil, err
	}
	t := a.target()
	cfg, err := pgconnect.Parse(t)
	if err != nil {
		return nil, err
	}
	if a.cfg.Connect == nil {
		pool, err := pgconnect.Open(ctx, t, cfg)
		if err != nil {
			return nil, err
		}
		return &session{pool: pool}, nil
	}
	pool, err := a.cfg.Connect(ctx, t.URL)
	if err != nil {
		return nil, pgconnect.Diagnose(t, err)
	}
	if err := pgconnect.Ping(ctx, t, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &session{pool: pool}, nil
}

// notMigratedError matches ErrNotMigrated and says what to run.
type notMigratedError struct {
	status  migrations.Status
	command string
}

func (e *notMigratedError) Error() string {
	return fmt.Sprintf("schema %s is not migrated (version %d of %d): run '%s migrate up' first",
		e.status.Schema, e.status.Current, e.status.Latest, e.command)
}

func (e *notMigratedError) Is(target error) bool { return target == ErrNotMigrated }

// migrationStatus reads the schema's migration status on the pool.
func (a *app) migrationStatus(ctx context.Context, pool *pgxpool.Pool, schema string) (migrations.Status, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return migrations.Status{}, err
	}
	defer conn.Release()
	return migrations.CurrentStatus(ctx, conn.Conn(), schema, a.cfg.Migrations...)
}

// openStore connects and opens the event store, after checking the schema
// is migrated.
func (a *app) openStore(ctx context.Context, cmd *cobra.Command, logLevel slog.Level) (*session, error) {
	log, err := a.logger(cmd, logLevel)
	if err != nil {
		return nil, err
	}
	s, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.migrationStatus(ctx, s.pool, a.schema)
	if err != nil {
		s.close()
		return nil, err
	}
	if !st.UpToDate() {
		s.close()
		return nil, &notMigratedError{status: st, command: cmd.Root().Name()}
	}
	s.db = pgdb.DB{Pool: s.pool, Schema: a.schema}
	if a.cfg.OpenLog == nil {
		s.close()
		return nil, ErrNoLog
	}
	if s.store, s.closeStore, err = a.cfg.OpenLog(ctx, s.db, log); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openManager opens the store and a projection manager with the
// application's projectors registered.
func (a *app) openManager(ctx context.Context, cmd *cobra.Command, logLevel slog.Level) (*session, error) {
	s, err := a.openStore(ctx, cmd, logLevel)
	if err != nil {
		return nil, err
	}
	pcfg := a.cfg.Projection
	if pcfg.Logger == nil {
		pcfg.Logger, _ = a.logger(cmd, logLevel) // the level parsed in openStore
	}
	if s.mgr, err = projection.NewManager(s.store, s.db, pcfg); err != nil {
		s.close()
		return nil, err
	}
	if a.cfg.Setup != nil {
		if err := a.cfg.Setup(ctx, s.mgr); err != nil {
			s.close()
			return nil, fmt.Errorf("registering projections: %w", err)
		}
	}
	return s, nil
}
