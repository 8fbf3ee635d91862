package saga

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/projection"
)

// Config tunes a Manager. The zero value is usable.
type Config struct {
	Logger *slog.Logger
}

// Manager runs sagas and event handlers.
type Manager struct {
	store       *postgres.Store
	projections *projection.Manager
	dispatcher  *command.Dispatcher
	registry    *eventstore.Registry
	cfg         Config
}

// NewManager returns a manager.
func NewManager(store *postgres.Store, projections *projection.Manager, dispatcher *command.Dispatcher, registry *eventstore.Registry, cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{store: store, projections: projections, dispatcher: dispatcher, registry: registry, cfg: cfg}
}

// RegisterMetrics registers the manager's metrics with reg.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error { return nil }

// Run runs the sagas until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
