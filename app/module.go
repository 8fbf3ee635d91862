package app

import (
	"fmt"
	"log/slog"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/saga"
	"github.com/cairn-es/cairn/server"
)

// Module is one bounded context. It registers its event types, and then
// its parts by role, each through the interface of that role it
// implements: CommandModule, ReadModelModule, ProcessModule, APIModule.
// Each role is handed only what it registers into, so the command line,
// which needs only the read models and processes (to run, rebuild and
// report them), assembles nothing else.
//
// Registration runs in passes over all modules, so that contexts can react
// to each other's events and a route can name another context's read
// model: every module's events, then every module's commands, read models,
// processes and, last, API.
type Module interface {
	// Name names the context in logs and errors.
	Name() string
	// RegisterEvents registers the context's event types.
	RegisterEvents(r *eventstore.Registry) error
}

// CommandModule is a context with command handlers.
type CommandModule interface {
	Module
	RegisterCommands(c *Commands) error
}

// ReadModelModule is a context with projections.
type ReadModelModule interface {
	Module
	RegisterReadModels(r *ReadModels) error
}

// ProcessModule is a context with sagas or reactors.
type ProcessModule interface {
	Module
	RegisterProcesses(p *Processes) error
}

// APIModule is a context with queries and HTTP routes.
type APIModule interface {
	Module
	RegisterAPI(a *API) error
}

// Commands is what command handlers register into.
type Commands struct {
	Registry *eventstore.Registry
	// Store is the event log, for aggregate repositories (and snapshots).
	Store EventStore
	// Dispatcher takes the handlers (command.Register).
	Dispatcher *command.Dispatcher
	// DB is the service's PostgreSQL, for a context's own tables (in a
	// schema of its own).
	DB     pgdb.DB
	Logger *slog.Logger
}

// ReadModels is what projections register into.
type ReadModels struct {
	Registry *eventstore.Registry
	// Projections takes the projectors (Register).
	Projections *projection.Manager
	// DB is where the read models live.
	DB     pgdb.DB
	Logger *slog.Logger
}

// Processes is what sagas and reactors register into.
type Processes struct {
	Registry *eventstore.Registry
	// Sagas takes sagas (Register) and reactors (RegisterReactor).
	Sagas  *saga.Manager
	DB     pgdb.DB
	Logger *slog.Logger
}

// API is what queries and routes register into.
type API struct {
	Registry *eventstore.Registry
	// Store is the event log, for route policies that must see the
	// write side's state (whose order is it?) before a command runs.
	Store EventStore
	// Queries takes the query handlers (query.Register); Server the
	// routes (server.Command, server.Query).
	Queries *query.Bus
	Server  *server.Server
	// DB is where the read models live, for the query handlers.
	DB pgdb.DB
	// CursorKeys sign and verify page cursors: set them on a copy of a
	// listing's spec (query.ListSpec.CursorKeys) before calling
	// query.List.
	CursorKeys *query.CursorKeys
	Logger     *slog.Logger
}

// registerEvents runs every module's RegisterEvents.
func registerEvents(r *eventstore.Registry, modules []Module) error {
	for _, m := range modules {
		if err := m.RegisterEvents(r); err != nil {
			return fmt.Errorf("app: module %s: registering events: %w", m.Name(), err)
		}
	}
	return nil
}

// registerRole runs register for every module that has the role R, in
// order.
func registerRole[R any](modules []Module, role string, register func(R) error) error {
	for _, m := range modules {
		r, ok := m.(R)
		if !ok {
			continue
		}
		if err := register(r); err != nil {
			return fmt.Errorf("app: module %s: registering %s: %w", m.Name(), role, err)
		}
	}
	return nil
}

// register registers the modules in the passes Module describes: all of
// their roles, or (for the command line) only their events, read models
// and processes.
func register(d *Deps, modules []Module, all bool) error {
	if err := registerEvents(d.Registry, modules); err != nil {
		return err
	}
	if all {
		c := &Commands{Registry: d.Registry, Store: d.Store, Dispatcher: d.Dispatcher, DB: d.DB, Logger: d.Logger}
		if err := registerRole(modules, "commands", func(m CommandModule) error { return m.RegisterCommands(c) }); err != nil {
			return err
		}
	}
	rm := &ReadModels{Registry: d.Registry, Projections: d.Projections, DB: d.DB, Logger: d.Logger}
	if err := registerRole(modules, "read models", func(m ReadModelModule) error { return m.RegisterReadModels(rm) }); err != nil {
		return err
	}
	pr := &Processes{Registry: d.Registry, Sagas: d.Sagas, DB: d.DB, Logger: d.Logger}
	if err := registerRole(modules, "processes", func(m ProcessModule) error { return m.RegisterProcesses(pr) }); err != nil {
		return err
	}
	if !all {
		return nil
	}
	if err := registerIntegration(d, d.broker, modules); err != nil {
		return err
	}
	api := &API{Registry: d.Registry, Store: d.Store, Queries: d.Queries, Server: d.Server, DB: d.DB, CursorKeys: d.CursorKeys, Logger: d.Logger}
	return registerRole(modules, "API", func(m APIModule) error { return m.RegisterAPI(api) })
}
