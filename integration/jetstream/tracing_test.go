package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/telemetry"
)

// One trace crosses the broker: the event's span context (in its
// metadata) parents the publish span, whose context travels in the
// message's traceparent header and parents the inbox's consume span, under
// which the command runs, whose context the receiving service's event
// carries on.
func TestOneTraceAcrossTheBroker(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	_, js := connect(t, jetstream.URL())
	n := uniqueNames()
	createStream(t, js, n.stream, n.subject)

	// The sending service publishes OrderPaid as PaymentReceived.
	orders := newService(t, projection.Config{})
	p, err := integration.NewPublisher(fmt.Sprintf("p%x", pgtest.Suffix()), orders.registry, jetstream.NewSender(js, jetstream.SenderConfig{Timeout: time.Second}),
		integration.PublisherConfig{SubjectPrefix: n.prefix, TracerProvider: tp})
	require.NoError(t, err)
	integration.Map(p, func(_ context.Context, e OrderPaid, _ eventstore.RecordedEvent) (integration.Message, error) {
		return integration.Message{Type: "PaymentReceived", Data: PaymentReceived{Order: e.OrderID, N: e.N}}, nil
	})
	require.NoError(t, p.Register(orders.mgr))
	run(t, orders.mgr.Run)

	// The receiving service turns PaymentReceived into ScheduleShipment.
	ship := newService(t, projection.Config{})
	d := command.NewDispatcher(ship.store, command.Config{Logger: quiet, TracerProvider: tp})
	command.MustRegister(d, func(ctx context.Context, c ScheduleShipment) (eventstore.AppendResult, error) {
		events := []eventstore.Event{{Type: "ShipmentScheduled", Data: json.RawMessage(`{"order_id":"` + c.OrderID + `"}`)}}
		causation, _ := eventstore.CausationFrom(ctx)
		return ship.store.Append(ctx, "shipment-"+c.OrderID, eventstore.Any, events, causation.Stamp(events)...)
	})
	in, err := integration.NewInbox(fmt.Sprintf("ship%x", pgtest.Suffix()), d, integration.InboxConfig{TracerProvider: tp})
	require.NoError(t, err)
	integration.Handle(in, "PaymentReceived", func(_ context.Context, m PaymentReceived, _ integration.Message) (any, error) {
		return ScheduleShipment{OrderID: m.Order}, nil
	})
	c, err := jetstream.NewConsumer(js, in, jetstream.ConsumerConfig{Stream: n.stream, Logger: quiet})
	require.NoError(t, err)
	run(t, c.Run)

	// The event is appended under a request's span.
	ctx, root := tp.Tracer("test").Start(context.Background(), "POST /orders")
	ev, err := orders.registry.Encode(OrderPaid{OrderID: "o-trace", N: 1})
	require.NoError(t, err)
	telemetry.InjectMetadata(ctx, &ev.Metadata)
	root.End()
	_, err = orders.store.Append(context.Background(), "order-o-trace", eventstore.NoStream, []eventstore.Event{ev})
	require.NoError(t, err)

	var got []eventstore.RecordedEvent
	require.Eventually(t, func() bool {
		got, err = ship.store.ReadStream(context.Background(), "shipment-o-trace", eventstore.ReadStreamOptions{})
		return err == nil && len(got) == 1
	}, 10*time.Second, 10*time.Millisecond)

	spans := map[string]tracetest.SpanStub{}
	for _, s := range exporter.GetSpans() {
		spans[s.Name] = s
	}
	publish, consume, cmd := spans["publish PaymentReceived"], spans["consume PaymentReceived"], spans["command ScheduleShipment"]
	trace := root.SpanContext().TraceID()
	for name, s := range map[string]tracetest.SpanStub{"publish": publish, "consume": consume, "command": cmd} {
		require.Equal(t, trace, s.SpanContext.TraceID(), "%s span in the request's trace; spans: %v", name, spanNames(exporter.GetSpans()))
	}
	require.Equal(t, root.SpanContext().SpanID(), publish.Parent.SpanID(), "publish is a child of the event's span")
	require.Equal(t, publish.SpanContext.SpanID(), consume.Parent.SpanID(), "consume continues the publish span across the broker")
	require.True(t, consume.Parent.IsRemote())
	require.Equal(t, consume.SpanContext.SpanID(), cmd.Parent.SpanID(), "the command runs under the consume span")
	carried := telemetry.SpanContextOf(got[0].Metadata.Extra)
	require.Equal(t, cmd.SpanContext.SpanID(), carried.SpanID(), "the receiving service's event carries its command's span")
}

func spanNames(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}
