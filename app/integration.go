package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
)

// BrokerConfig connects a service to other services through NATS
// JetStream (package integration). The zero value is no broker: a module
// with an integration role is then refused.
type BrokerConfig struct {
	// URL of the NATS server (nats://127.0.0.1:4222; a comma-separated
	// list for a cluster). Empty: no broker.
	URL string
	// Conn, when set, is used instead of connecting to URL; its creator
	// closes it.
	Conn *nats.Conn
}

// IntegrationModule is a context that talks to other services through the
// broker: it publishes integration messages mapped from its events
// (Integration.Publisher) and turns other services' messages into its
// commands (Integration.Inbox).
type IntegrationModule interface {
	Module
	RegisterIntegration(i *Integration) error
}

// Integration is what an integration module registers into. Publishers
// are registered on the projection daemon and inboxes' consumers run with
// the service (App.Run), after the module returns.
type Integration struct {
	Registry   *eventstore.Registry
	Dispatcher *command.Dispatcher
	// JetStream is the broker, for a module to declare the streams it
	// publishes to (CreateOrUpdateStream) before anything is sent.
	JetStream natsjs.JetStream
	// Metrics count messages published, delivered and dead-lettered; they
	// are registered in Deps.Metrics.
	Metrics *integration.Metrics
	// TracerProvider makes the publishers' and inboxes' spans (nil:
	// otel.GetTracerProvider()).
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger

	publishers []*integration.Publisher
	consumers  []*jetstream.Consumer
}

// Publisher returns a publisher named name whose messages go to the
// broker; map event types onto it with integration.Map. It publishes from
// the projection daemon, as the projection "publish_" + name.
func (i *Integration) Publisher(name string, cfg integration.PublisherConfig) (*integration.Publisher, error) {
	if cfg.Metrics == nil {
		cfg.Metrics = i.Metrics
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = i.TracerProvider
	}
	p, err := integration.NewPublisher(name, i.Registry, jetstream.NewSender(i.JetStream, jetstream.SenderConfig{}), cfg)
	if err != nil {
		return nil, err
	}
	i.publishers = append(i.publishers, p)
	return p, nil
}

// Inbox returns an inbox named name that dispatches the commands its
// handlers (integration.Handle) make of the messages of cfg.Stream; its
// consumer runs with the service.
func (i *Integration) Inbox(name string, cfg jetstream.ConsumerConfig) (*integration.Inbox, error) {
	in, err := integration.NewInbox(name, i.Dispatcher, integration.InboxConfig{TracerProvider: i.TracerProvider})
	if err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = i.Metrics
	}
	if cfg.Logger == nil {
		cfg.Logger = i.Logger
	}
	c, err := jetstream.NewConsumer(i.JetStream, in, cfg)
	if err != nil {
		return nil, err
	}
	i.consumers = append(i.consumers, c)
	return in, nil
}

// broker is a service's connection to its broker.
type broker struct {
	conn  *nats.Conn
	owned bool
	js    natsjs.JetStream
}

// connectBroker connects to cfg's broker; nil when none is configured.
func connectBroker(cfg BrokerConfig) (*broker, error) {
	if cfg.Conn == nil && cfg.URL == "" {
		return nil, nil
	}
	b := &broker{conn: cfg.Conn}
	if b.conn == nil {
		nc, err := jetstream.Connect(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		b.conn, b.owned = nc, true
	}
	js, err := natsjs.New(b.conn)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("app: JetStream: %w", err)
	}
	b.js = js
	return b, nil
}

// close lets what is in flight finish, when the app opened the connection.
func (b *broker) close() {
	if b == nil || !b.owned {
		return
	}
	done := make(chan struct{})
	b.conn.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := b.conn.Drain(); err != nil {
		b.conn.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.conn.Close()
	}
}

// registerIntegration runs the modules' integration role, then registers
// their publishers on the projection daemon.
func registerIntegration(d *Deps, b *broker, modules []Module) error {
	var wanted bool
	for _, m := range modules {
		if _, ok := m.(IntegrationModule); ok {
			wanted = true
		}
	}
	if !wanted {
		return nil
	}
	if b == nil {
		return errors.New("app: a module talks to other services but no broker is configured (Config.Broker)")
	}
	metrics := integration.NewMetrics()
	if err := metrics.Register(d.Metrics); err != nil {
		return fmt.Errorf("app: registering integration metrics: %w", err)
	}
	in := &Integration{Registry: d.Registry, Dispatcher: d.Dispatcher, JetStream: b.js, Metrics: metrics,
		TracerProvider: d.TracerProvider, Logger: d.Logger}
	if err := registerRole(modules, "integration", func(m IntegrationModule) error { return m.RegisterIntegration(in) }); err != nil {
		return err
	}
	for _, p := range in.publishers {
		if err := p.Register(d.Projections); err != nil {
			return fmt.Errorf("app: publisher %s: %w", p.Name(), err)
		}
	}
	d.Integration = in
	return nil
}

// runConsumers runs the inboxes' consumers until ctx ends.
func (i *Integration) runConsumers(ctx context.Context) error {
	if i == nil || len(i.consumers) == 0 {
		<-ctx.Done()
		return nil
	}
	errs := make(chan error, len(i.consumers))
	for _, c := range i.consumers {
		go func() { errs <- c.Run(ctx) }()
	}
	var all []error
	for range i.consumers {
		if err := <-errs; err != nil && ctx.Err() == nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}
