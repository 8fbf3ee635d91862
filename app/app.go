// Package app assembles a Cairn service from bounded contexts: it opens the
// database, applies migrations, builds the event store, the command
// dispatcher, the projection manager, the saga manager, the query bus and
// the HTTP server, lets every Module register its part, and runs it all
// until its context ends.
//
// A bounded context is a package with a Module: its events, its command
// handlers, its projections and sagas, its queries and its routes.
//
//	a, err := app.New(ctx, app.Config{DatabaseURL: url}, ordering.Module{}, inventory.Module{})
//	if err != nil { ... }
//	defer a.Close()
//	err = a.Run(ctx)
//
// Registration happens in passes, by role, so that contexts can react to
// each other's events: every module's RegisterEvents first, then its
// commands, read models, processes (sagas, reactors) and API (see Module).
//
// # Authentication
//
// Authentication is off unless configured, in Config.Server.Auth or, for
// a service run by an operator, in the environment (or in Config.Security,
// which a service's flags fill and which takes precedence over the
// environment, setting by setting):
//
//	CAIRN_API_KEYS="key1:read,write;key2:read,operator"  API keys (16+ characters) and their scopes
//	CAIRN_API_KEYS_FILE=/run/secrets/api-keys            the same, one entry a line, # comments
//	CAIRN_JWT_SECRET, CAIRN_JWT_SECRET_FILE              HS256 tokens: a secret of 32+ bytes
//	CAIRN_JWT_PUBLIC_KEY_FILE=/etc/cairn/jwt.pem         RS256/ES256/ES384/ES512 tokens: a PEM public key
//	CAIRN_JWKS_FILE=/etc/cairn/jwks.json                 a JSON Web Key Set; the token's kid picks the key
//	CAIRN_JWT_ISSUER, CAIRN_JWT_AUDIENCE                 required iss and aud claims
//	CAIRN_JWT_LEEWAY=30s                                 clock skew allowed on exp and nbf
//	CAIRN_METRICS_SCOPE=metrics                          the scope /metrics requires ("-": open)
//
// With any of the keys set, every route needs "Authorization: Bearer
// <token>": query routes the scope "read", command routes "write" (unless
// a route says otherwise), /metrics the scope "metrics" (DefaultMetricsScope)
// unless CAIRN_METRICS_SCOPE or Config.Server.MetricsScope names another;
// /healthz and /readyz stay open. A token's scopes are its "scope" claim
// (space-separated) and "scopes" claim (array). A setting given twice (as
// NAME and NAME_FILE, or in the environment and in Config.Server.Auth) is
// an error, as is a malformed one: New names it.
//
// # Cursor keys
//
// Page cursors (query.List) are signed so that clients cannot forge a
// position. Every instance of a service must hold the same key, so that a
// cursor from one is accepted by another and after a restart. By default
// the key is made once, by the migrations, and kept in the service's
// database (the table cursor_keys of its schema): nothing to configure. To
// manage it yourself:
//
//	CAIRN_CURSOR_KEY, CAIRN_CURSOR_KEY_FILE                    the key that signs (32+ bytes)
//	CAIRN_CURSOR_KEY_PREVIOUS, CAIRN_CURSOR_KEY_PREVIOUS_FILE  during a rotation: the old key, which still verifies
//
// To rotate, give every instance the new key as CAIRN_CURSOR_KEY and the
// old one as CAIRN_CURSOR_KEY_PREVIOUS, restart them, and drop the
// previous key once the cursors handed out before (a client's paging
// session) no longer matter. With the stored key, the rotation is one
// INSERT INTO <schema>.cursor_keys DEFAULT VALUES and a restart: the
// newest row signs, the one before it still verifies. Modules find the
// keys in Deps.CursorKeys and set them on their listings' specs.
//
// # Tracing
//
// Tracing (OpenTelemetry, one trace from a request through its commands,
// events, sagas and read models) is off unless the environment sets
// OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint, or Config.Tracing.Provider
// is given: see TracingConfig.
//
// Config.NoEnv makes New ignore the environment.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgconnect"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

// DefaultDatabaseURL is the database used when neither Config.DatabaseURL
// nor $DATABASE_URL names one.
const DefaultDatabaseURL = pgconnect.DefaultURL

// ErrUnreachable matches (errors.Is) New's error when the database could
// not be used; the message says why: nothing listening, a refused login, a
// missing database, a full server, a URL that is not PostgreSQL's, a
// timeout or TLS. It is cli.ErrUnreachable.
var ErrUnreachable = pgconnect.ErrUnreachable

// DefaultMaxConns is the size of the connection pool App opens, unless the
// database URL sets pool_max_conns.
const DefaultMaxConns = 32

// Deps are the components App assembled, for tests and for code that
// dispatches commands or asks queries in-process. Modules register through
// the narrower views of their roles (Commands, ReadModels, Processes, API).
type Deps struct {
	Registry *eventstore.Registry
	// Store is the event log: the PostgreSQL store, or Config.EventStore.
	Store EventStore
	// DB is the service's own PostgreSQL: read models, the projection
	// daemon's and the sagas' tables, and whatever tables a module keeps
	// (in a schema of its own).
	DB          pgdb.DB
	Dispatcher  *command.Dispatcher
	Projections *projection.Manager
	Sagas       *saga.Manager
	Queries     *query.Bus
	Server      *server.Server
	// Metrics is the registry the server serves at /metrics: the
	// command, projection, saga and HTTP metrics and the Go runtime and
	// process collectors. A module registers its own collectors here.
	Metrics *prometheus.Registry
	Logger  *slog.Logger
	// CursorKeys sign and verify page cursors: set them on a copy of a
	// listing's spec (query.ListSpec.CursorKeys) before calling
	// query.List.
	CursorKeys *query.CursorKeys
	// TracerProvider makes the components' spans, for a module's own;
	// nil when tracing is off (see TracingConfig).
	TracerProvider trace.TracerProvider
	// Integration is what the modules registered to talk to other
	// services; nil when none did.
	Integration *Integration

	broker *broker

	closeStore func()
}

// EventStore is what a service's event log must offer: the whole of
// eventstore.Store, and snapshots for the aggregates that take them. The
// PostgreSQL store (the default) and the KurrentDB store implement it.
type EventStore interface {
	eventstore.Store
	eventstore.SnapshotStore
}

// Config configures an App. The zero value is usable.
type Config struct {
	// DatabaseURL is the PostgreSQL URL (default $DATABASE_URL, then
	// DefaultDatabaseURL). Its pool_max_conns sets the pool's size
	// (default DefaultMaxConns).
	DatabaseURL string
	// DatabaseURLFrom says where DatabaseURL came from, for the message of
	// a failure to connect (say "--database-url"; default
	// "app.Config.DatabaseURL").
	DatabaseURLFrom string
	// Pool, when set, is used instead of opening DatabaseURL; the App
	// then does not close it.
	Pool *pgxpool.Pool
	// Schema holds Cairn's tables (default migrations.DefaultSchema).
	Schema string
	// EventStore, when set, is the event log instead of the PostgreSQL
	// store on Pool's database (a KurrentDB store, say); its creator
	// closes it. Projections, sagas and the app's own tables stay in
	// Schema on Pool's database, and migrations apply ReadSideMigrations
	// there.
	EventStore EventStore
	// NoMigrate skips applying migrations at start-up.
	NoMigrate bool
	// Server configures the HTTP server (default address 127.0.0.1:8080).
	// Its dependencies are the App's: Dispatcher, Admission, QueryBus,
	// Projections and Health are replaced, and Metrics, when set, is the
	// registry every component's metrics go to (default
	// server.NewRegistry()).
	Server server.Config
	// Projection configures the projection manager.
	Projection projection.Config
	// Saga configures the saga manager.
	Saga saga.Config
	// Command configures the command dispatcher. A nil Logger takes
	// Config.Logger; a nil Metrics takes command metrics whose failure
	// reasons are the server's classes (server.FailureReason). Either way
	// the metrics are registered in Deps.Metrics.
	Command command.Config
	// Security holds authentication and cursor-key settings as the
	// service's flags give them; empty fields take the environment's (see
	// the package documentation).
	Security Security
	// NoEnv makes New ignore the CAIRN_* variables of the environment,
	// and the OTEL_* ones (see TracingConfig).
	NoEnv bool
	// CursorKeys, when set, sign and verify page cursors instead of the
	// keys of the environment or of the database.
	CursorKeys *query.CursorKeys
	// Logger receives every component's logs (default slog.Default()).
	Logger *slog.Logger
	// Tracing configures tracing, off unless the environment or
	// Tracing.Provider turns it on; the components' own TracerProvider
	// settings take precedence.
	Tracing TracingConfig
	// Broker connects the service to other services (see
	// IntegrationModule); none by default.
	Broker BrokerConfig
}

// App is an assembled service.
type App struct {
	cfg      Config
	pool     *pgxpool.Pool
	ownsPool bool
	deps     *Deps
	modules  []Module
	// stopTracing shuts down the tracer provider New built, if any.
	stopTracing func(context.Context) error
}

// New connects, migrates (unless Config.NoMigrate) and registers modules.
func New(ctx context.Context, cfg Config, modules ...Module) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Schema == "" {
		cfg.Schema = migrations.DefaultSchema
	}
	sec := cfg.Security
	if !cfg.NoEnv {
		sec = sec.Or(SecurityFromEnv(os.Getenv))
	}
	// Settings are checked before the database is touched.
	if err := applyAuth(&cfg.Server, sec); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, modules: modules, pool: cfg.Pool}
	if err := a.startTracing(ctx, &cfg); err != nil {
		return nil, err
	}
	if a.pool == nil {
		pool, err := connect(ctx, cfg)
		if err != nil {
			a.Close()
			return nil, err // it names the problem, the URL and the fix
		}
		a.pool, a.ownsPool = pool, true
	}
	if !cfg.NoMigrate {
		if err := migrations.UpPool(ctx, a.pool, cfg.Schema, cfg.migrationSets()...); err != nil {
			a.Close()
			return nil, fmt.Errorf("app: migrating: %w", err)
		}
	}
	keys, err := cursorKeys(ctx, a.pool, cfg, sec)
	if err != nil {
		a.Close()
		return nil, err
	}
	cfg.CursorKeys = keys
	deps, err := assemble(a.pool, cfg, modules)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.deps = deps
	return a, nil
}

// migrationSets are the sets the service's PostgreSQL holds: all of them,
// or the read side's when the log lives elsewhere (Config.EventStore).
func (cfg Config) migrationSets() []migrations.Set {
	if cfg.EventStore != nil {
		return ReadSideMigrations()
	}
	return Migrations()
}

// connect opens the pool on the configured URL and checks that it can be
// used; its error says what is wrong and where the URL came from.
func connect(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	from := cfg.DatabaseURLFrom
	if from == "" {
		from = "app.Config.DatabaseURL"
	}
	target := pgconnect.Resolve(pgconnect.Target{URL: cfg.DatabaseURL, From: from}, pgconnect.Env())
	pcfg, err := pgconnect.Parse(target)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(target.URL, "pool_max_conns") {
		// pgxpool's default (4 on a 2-core machine) starves a service
		// whose HTTP handlers, saga relay and projections share it.
		pcfg.MaxConns = DefaultMaxConns
	}
	return pgconnect.Open(ctx, target, pcfg)
}

// assemble builds the components and registers the modules into them.
func assemble(pool *pgxpool.Pool, cfg Config, modules []Module) (*Deps, error) {
	store, closeStore, err := openStore(pool, cfg)
	if err != nil {
		return nil, err
	}
	registry := eventstore.NewRegistry()
	metrics := cfg.Server.Metrics
	if metrics == nil {
		metrics = server.NewRegistry()
	}
	ccfg := cfg.Command
	if ccfg.Logger == nil {
		ccfg.Logger = cfg.Logger
	}
	if ccfg.Metrics == nil {
		ccfg.Metrics = command.NewMetrics(command.MetricsConfig{Reason: server.FailureReason})
	}
	if err := ccfg.Metrics.Register(metrics); err != nil {
		closeStore()
		return nil, fmt.Errorf("app: registering command metrics: %w", err)
	}
	dispatcher := command.NewDispatcher(store, ccfg)
	pcfg := cfg.Projection
	if pcfg.Logger == nil {
		pcfg.Logger = cfg.Logger
	}
	projections, err := projection.NewManager(store, pgdb.DB{Pool: pool, Schema: cfg.Schema}, pcfg)
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("app: %w", err)
	}
	d, err := assembleAround(projections, registry, dispatcher, metrics, cfg)
	if err == nil {
		d.Store, d.closeStore, d.DB = store, closeStore, projections.DB()
		d.TracerProvider = cfg.Tracing.Provider
		d.broker, err = connectBroker(cfg.Broker)
	}
	if err == nil {
		err = register(d, modules, true)
	}
	if err != nil {
		projections.Close()
		if d != nil {
			d.broker.close()
		}
		closeStore()
		return nil, err
	}
	return d, nil
}

// openStore returns the configured event store, or opens the PostgreSQL
// store on pool; the function returned closes what openStore opened.
func openStore(pool *pgxpool.Pool, cfg Config) (EventStore, func(), error) {
	if cfg.EventStore != nil {
		return cfg.EventStore, func() {}, nil
	}
	store, err := postgres.New(pool, postgres.Config{Schema: cfg.Schema, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, fmt.Errorf("app: %w", err)
	}
	return store, store.Close, nil
}

// registerOn registers the modules' read models and processes on an
// existing projection manager (the command line's): nothing else is
// assembled, and the saga manager it makes has no dispatcher, so it
// registers but never runs.
func registerOn(projections *projection.Manager, modules []Module) error {
	log := slog.Default()
	registry := eventstore.NewRegistry()
	d := &Deps{
		Registry: registry, Projections: projections, DB: projections.DB(), Logger: log,
		Sagas: saga.NewManager(projections, nil, registry, saga.Config{Logger: log}),
	}
	return register(d, modules, false)
}

// assembleAround builds what sits around the projection manager.
func assembleAround(projections *projection.Manager, registry *eventstore.Registry, dispatcher *command.Dispatcher, metrics *prometheus.Registry, cfg Config) (*Deps, error) {
	scfg := cfg.Saga
	if scfg.Logger == nil {
		scfg.Logger = cfg.Logger
	}
	sagas := saga.NewManager(projections, dispatcher, registry, scfg)
	bus := query.NewBus()
	srvCfg := cfg.Server
	if srvCfg.Logger == nil {
		srvCfg.Logger = cfg.Logger
	}
	srvCfg.Dispatcher, srvCfg.QueryBus, srvCfg.Projections = dispatcher, bus, projections
	srvCfg.Health = server.HealthConfig{DB: projections.DB(), Migrations: cfg.migrationSets()}
	srvCfg.Metrics = metrics
	// Command routes refuse new work while the saga backlog is past its
	// bound (503 with Retry-After), before appending anything.
	srvCfg.Admission = sagas.Admit
	srv, err := server.New(srvCfg)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := projections.RegisterMetrics(metrics); err != nil {
		return nil, fmt.Errorf("app: registering projection metrics: %w", err)
	}
	if err := sagas.RegisterMetrics(metrics); err != nil {
		return nil, fmt.Errorf("app: registering saga metrics: %w", err)
	}
	return &Deps{
		Registry: registry, Dispatcher: dispatcher,
		Projections: projections, Sagas: sagas, Queries: bus,
		Server: srv, Metrics: metrics, Logger: cfg.Logger,
		CursorKeys: cfg.CursorKeys,
	}, nil
}

// Deps returns the assembled components, for tests and for code that
// dispatches commands or asks queries in-process.
func (a *App) Deps() *Deps { return a.deps }

// Pool returns the database pool.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// RunOptions choose what Run runs.
type RunOptions struct {
	// NoServer, NoProjections, NoSagas and NoInboxes leave that part out,
	// to split a system over processes. (Publishers are projections.)
	NoServer, NoProjections, NoSagas, NoInboxes bool
	// Listener, when set, is where the server serves, instead of a
	// listener Run opens on Config.Server.Addr: open it with Listen
	// before New, so that a busy address fails the start before the
	// database is touched. Run closes it (also with NoServer).
	Listener net.Listener
}

// Run runs the HTTP server, the projection daemon and the saga manager
// until ctx ends, then stops them gracefully: the server finishes its
// in-flight requests, projections commit their batch. It returns the first
// failure of any part (which stops the others) or nil.
func (a *App) Run(ctx context.Context) error { return a.RunWith(ctx, RunOptions{}) }

// RunWith is Run with some parts left out.
func (a *App) RunWith(ctx context.Context, opts RunOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		part string
		err  error
	}
	results := make(chan result, 4)
	n := 0
	start := func(part string, run func(context.Context) error) {
		n++
		go func() {
			err := run(ctx)
			if err != nil && ctx.Err() == nil {
				cancel() // one part failing stops the others
			}
			results <- result{part, err}
		}()
	}
	if !opts.NoProjections {
		start("projections", a.deps.Projections.Run)
	}
	if !opts.NoSagas {
		start("sagas", a.deps.Sagas.Run)
	}
	if !opts.NoInboxes && a.deps.Integration != nil {
		start("inboxes", a.deps.Integration.runConsumers)
	}
	switch {
	case opts.NoServer && opts.Listener != nil:
		_ = opts.Listener.Close()
	case opts.Listener != nil:
		start("server", func(ctx context.Context) error { return a.deps.Server.Serve(ctx, opts.Listener) })
	case !opts.NoServer:
		start("server", a.deps.Server.Run)
	}
	var errs []error
	for range n {
		r := <-results
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", r.part, r.err))
		}
	}
	return errors.Join(errs...)
}

// Close releases the manager's connections and, when the App opened it, the
// pool, and exports the spans still queued when the App built the tracer
// provider.
func (a *App) Close() {
	if a.deps != nil {
		a.deps.Projections.Close()
		a.deps.broker.close()
		if a.deps.closeStore != nil {
			a.deps.closeStore()
		}
	}
	if a.ownsPool && a.pool != nil {
		a.pool.Close()
	}
	a.shutdownTracing()
}
