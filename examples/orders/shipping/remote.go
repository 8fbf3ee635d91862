package shipping

import (
	"context"
	"errors"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
)

// Shipping as a service of its own: the order system and the shipping
// service talk only through the broker (NATS JetStream), each with its
// own log and database schema.
//
//	order system                               shipping service
//	saga ─ScheduleShipment→ Proxy
//	  "shipment-<order>": ShipmentRequested ─→ ORDERS stream ─→ inbox ─ScheduleShipment→ Shipment
//	                                                               "shipment-<order>": ShipmentScheduled
//	inbox ←─ SHIPPING stream ←──────────────────────────────────── publisher
//	  ─RecordShipmentScheduled→ "shipment-<order>": ShipmentScheduled → saga
//
// The messages are the public contract (the Message* types, version 1),
// not the events: either side may change its events without the other.

// Streams and subjects of the two services' messages.
const (
	OrdersStream   = "ORDERS"
	ShippingStream = "SHIPPING"
	// RequestsSubjects and ShipmentsSubjects are what the streams capture.
	RequestsSubjects  = "orders.shipping.>"
	ShipmentsSubjects = "shipping.shipments.>"
)

// Contract types of the messages.
const (
	MessageShipmentRequested             = "ShipmentRequested"
	MessageShipmentCancellationRequested = "ShipmentCancellationRequested"
	MessageShipmentScheduled             = "ShipmentScheduled"
	MessageShipmentCancelled             = "ShipmentCancelled"
)

// ShipmentRequest is the body of the order system's messages: which
// order's shipment to schedule, or to cancel.
type ShipmentRequest struct {
	OrderID string `json:"order_id"`
}

// ShipmentNotice is the body of the shipping service's messages.
type ShipmentNotice struct {
	OrderID      string `json:"order_id"`
	ShipmentID   string `json:"shipment_id"`
	ScheduledFor string `json:"scheduled_for,omitempty"`
}

// ShipmentRequested (order system): the saga asked for a shipment.
type ShipmentRequested struct {
	OrderID string `json:"order_id"`
}

// ShipmentCancellationRequested (order system): the saga asked for the
// shipment to be cancelled.
type ShipmentCancellationRequested struct {
	OrderID string `json:"order_id"`
}

// RecordShipmentScheduled records, in the order system, what the shipping
// service scheduled.
type RecordShipmentScheduled struct {
	OrderID      string `json:"order_id"`
	ShipmentID   string `json:"shipment_id"`
	ScheduledFor string `json:"scheduled_for"`
}

// RecordShipmentCancelled records, in the order system, a cancellation
// the shipping service made.
type RecordShipmentCancelled struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

// Proxy is the shipping context of the order system when shipping runs
// as a service of its own: ScheduleShipment and CancelShipment become
// requests published to the broker, and the shipping service's answers
// come back as the same ShipmentScheduled and ShipmentCancelled events the
// local context would have recorded, so the saga does not know the
// difference.
type Proxy struct{}

var (
	_ app.CommandModule     = Proxy{}
	_ app.IntegrationModule = Proxy{}
)

// Name implements app.Module.
func (Proxy) Name() string { return "shipping-proxy" }

// RegisterEvents implements app.Module.
func (Proxy) RegisterEvents(r *eventstore.Registry) error {
	return errors.Join(
		Module{}.RegisterEvents(r),
		eventstore.Register[ShipmentRequested](r, "ShipmentRequested"),
		eventstore.Register[ShipmentCancellationRequested](r, "ShipmentCancellationRequested"),
	)
}

// RegisterCommands implements app.CommandModule. Each handler appends one
// event to the order's "shipment-<order>" stream: a resubmission is
// answered from the command log.
func (Proxy) RegisterCommands(c *app.Commands) error {
	record := func(ctx context.Context, orderID string, event any) (eventstore.AppendResult, error) {
		ev, err := c.Registry.Encode(event)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		events := []eventstore.Event{ev}
		var opts []eventstore.AppendOption
		if cause, ok := eventstore.CausationFrom(ctx); ok {
			opts = cause.Stamp(events)
		}
		return c.Store.Append(ctx, "shipment-"+orderID, eventstore.Any, events, opts...)
	}
	return errors.Join(
		command.Register(c.Dispatcher, func(ctx context.Context, cmd ScheduleShipment) (eventstore.AppendResult, error) {
			return record(ctx, cmd.OrderID, ShipmentRequested(cmd))
		}, command.AppendOnly()),
		command.Register(c.Dispatcher, func(ctx context.Context, cmd CancelShipment) (eventstore.AppendResult, error) {
			return record(ctx, cmd.OrderID, ShipmentCancellationRequested(cmd))
		}, command.AppendOnly()),
		command.Register(c.Dispatcher, func(ctx context.Context, cmd RecordShipmentScheduled) (eventstore.AppendResult, error) {
			return record(ctx, cmd.OrderID, ShipmentScheduled(cmd))
		}, command.AppendOnly()),
		command.Register(c.Dispatcher, func(ctx context.Context, cmd RecordShipmentCancelled) (eventstore.AppendResult, error) {
			return record(ctx, cmd.OrderID, ShipmentCancelled(cmd))
		}, command.AppendOnly()),
	)
}

// RegisterIntegration implements app.IntegrationModule.
func (Proxy) RegisterIntegration(i *app.Integration) error {
	if err := declareStreams(i.JetStream); err != nil {
		return err
	}
	p, err := i.Publisher("orders", integration.PublisherConfig{SubjectPrefix: "orders.shipping"})
	if err != nil {
		return err
	}
	integration.Map(p, func(_ context.Context, e ShipmentRequested, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: MessageShipmentRequested, Key: e.OrderID, Data: ShipmentRequest(e)}, nil
	})
	integration.Map(p, func(_ context.Context, e ShipmentCancellationRequested, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: MessageShipmentCancellationRequested, Key: e.OrderID, Data: ShipmentRequest(e)}, nil
	})
	in, err := i.Inbox("orders_shipping", jetstream.ConsumerConfig{Stream: ShippingStream, Concurrency: 4})
	if err != nil {
		return err
	}
	integration.Handle(in, MessageShipmentScheduled, func(_ context.Context, m ShipmentNotice, _ integration.Message) (any, error) {
		return RecordShipmentScheduled(m), nil
	})
	integration.Handle(in, MessageShipmentCancelled, func(_ context.Context, m ShipmentNotice, _ integration.Message) (any, error) {
		return RecordShipmentCancelled{OrderID: m.OrderID, ShipmentID: m.ShipmentID}, nil
	})
	return nil
}

// Service is the shipping service: the shipping context, fed by the order
// system's requests and publishing what it schedules and cancels.
type Service struct {
	Module
}

var _ app.IntegrationModule = Service{}

// RegisterIntegration implements app.IntegrationModule.
func (s Service) RegisterIntegration(i *app.Integration) error {
	if err := declareStreams(i.JetStream); err != nil {
		return err
	}
	p, err := i.Publisher("shipping", integration.PublisherConfig{SubjectPrefix: "shipping.shipments"})
	if err != nil {
		return err
	}
	integration.Map(p, func(_ context.Context, e ShipmentScheduled, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: MessageShipmentScheduled, Key: e.OrderID, Data: ShipmentNotice(e)}, nil
	})
	integration.Map(p, func(_ context.Context, e ShipmentCancelled, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: MessageShipmentCancelled, Key: e.OrderID,
			Data: ShipmentNotice{OrderID: e.OrderID, ShipmentID: e.ShipmentID}}, nil
	})
	in, err := i.Inbox("shipping", jetstream.ConsumerConfig{Stream: OrdersStream, Concurrency: 4})
	if err != nil {
		return err
	}
	integration.Handle(in, MessageShipmentRequested, func(_ context.Context, m ShipmentRequest, _ integration.Message) (any, error) {
		return ScheduleShipment(m), nil
	})
	integration.Handle(in, MessageShipmentCancellationRequested, func(_ context.Context, m ShipmentRequest, _ integration.Message) (any, error) {
		return CancelShipment(m), nil
	})
	return nil
}

// declareStreams creates (or updates) both services' streams: whichever
// service starts first finds them in place.
func declareStreams(js natsjs.JetStream) error {
	for name, subject := range map[string]string{OrdersStream: RequestsSubjects, ShippingStream: ShipmentsSubjects} {
		if _, err := js.CreateOrUpdateStream(context.Background(), natsjs.StreamConfig{
			Name: name, Subjects: []string{subject}, Storage: natsjs.FileStorage,
		}); err != nil {
			return fmt.Errorf("shipping: declaring stream %s: %w", name, err)
		}
	}
	return nil
}
