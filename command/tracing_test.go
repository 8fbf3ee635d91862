package command_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	oteltracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/memory"
	"github.com/cairn-es/cairn/telemetry"
)

func tracedDispatcher(t *testing.T, tp trace.TracerProvider) (*command.Dispatcher, *memory.Store) {
	t.Helper()
	store := memory.New(memory.Config{})
	cfg := quiet
	cfg.TracerProvider = tp
	d := command.NewDispatcher(store, cfg)
	var calls counter
	command.MustRegister(d, placeOrder(store, &calls))
	command.MustRegister(d, func(ctx context.Context, c *cancelOrder) (eventstore.AppendResult, error) {
		return eventstore.AppendResult{}, command.Reject(errors.New("too late"))
	})
	return d, store
}

func TestTracingSpansTheCommandAndCarriesItsContextIntoTheEvents(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	d, store := tracedDispatcher(t, tp)

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	_, err := d.Dispatch(ctx, command.Envelope{
		ID: "cmd-1", Metadata: map[string]string{"tenant": "t-1"}, Payload: PlaceOrder{OrderID: "o-1", Amount: 3},
	})
	require.NoError(t, err)
	parent.End()

	spans := rec.Ended()
	require.Len(t, spans, 2)
	cmd := spans[0]
	require.Equal(t, "command PlaceOrder", cmd.Name())
	require.Equal(t, parent.SpanContext().SpanID(), cmd.Parent().SpanID(), "the command is the request's child")
	require.Equal(t, parent.SpanContext().TraceID(), cmd.SpanContext().TraceID())
	attrs := map[string]string{}
	for _, a := range cmd.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	require.Equal(t, "cmd-1", attrs["cairn.command.id"])
	require.Equal(t, "ok", attrs["cairn.command.outcome"])
	require.Equal(t, "order-o-1", attrs["cairn.stream.id"])
	require.Equal(t, "1", attrs["cairn.events"])

	evs, err := store.ReadStream(context.Background(), "order-o-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	sc := telemetry.SpanContextOf(evs[0].Metadata.Extra)
	require.True(t, sc.IsValid(), "the event carries a traceparent: %v", evs[0].Metadata.Extra)
	require.Equal(t, cmd.SpanContext().SpanID(), sc.SpanID(), "the event's parent is the command's span")
	require.Equal(t, "t-1", evs[0].Metadata.Extra["tenant"], "the command's own metadata is kept")
}

func TestTracingRecordsARejectionWithoutFailingTheSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	d, _ := tracedDispatcher(t, tp)
	_, err := d.Dispatch(context.Background(), &cancelOrder{OrderID: "o-1"})
	require.ErrorIs(t, err, command.ErrRejected)
	spans := rec.Ended()
	require.Len(t, spans, 1)
	require.Equal(t, "command CancelOrder", spans[0].Name())
	require.False(t, spans[0].Parent().IsValid(), "no parent: a root span")
	require.Equal(t, "Unset", spans[0].Status().Code.String(), "a domain's refusal is an answer, not a failure")
	require.Len(t, spans[0].Events(), 1, "the refusal is recorded")
}

func TestTracingOffWritesNoTraceContext(t *testing.T) {
	for name, tp := range map[string]trace.TracerProvider{
		"no-op provider":  oteltracenoop.NewTracerProvider(),
		"global provider": nil, // otel.GetTracerProvider(): no SDK installed in tests
	} {
		t.Run(name, func(t *testing.T) {
			d, store := tracedDispatcher(t, tp)
			// Even under a span context from elsewhere (a client's
			// traceparent), nothing is propagated when tracing is off.
			remote := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
			})
			ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
			_, err := d.Dispatch(ctx, PlaceOrder{OrderID: "o-2"})
			require.NoError(t, err)
			evs, err := store.ReadStream(context.Background(), "order-o-2", eventstore.ReadStreamOptions{})
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.NotContains(t, evs[0].Metadata.Extra, telemetry.TraceParentKey)
		})
	}
}
