package telemetry_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/telemetry"
)

func sdkProvider() (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), rec
}

func TestMetadataCarriesTheSpanContext(t *testing.T) {
	tp, _ := sdkProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "cmd")
	defer span.End()

	var m eventstore.Metadata
	telemetry.InjectMetadata(ctx, &m)
	require.Contains(t, m.Extra, telemetry.TraceParentKey)
	require.Equal(t, "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()+"-01",
		m.Extra[telemetry.TraceParentKey], "W3C Trace Context form")

	got := trace.SpanContextFromContext(telemetry.ExtractMetadata(context.Background(), m))
	require.True(t, got.IsRemote())
	require.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, span.SpanContext().SpanID(), got.SpanID())
	require.Equal(t, got.SpanID(), telemetry.SpanContextOf(m.Extra).SpanID())

	// A child started under the extracted context continues the trace.
	_, child := tp.Tracer("t").Start(telemetry.ExtractMetadata(context.Background(), m), "projection")
	defer child.End()
	require.Equal(t, span.SpanContext().TraceID(), child.SpanContext().TraceID())
}

func TestTraceStateTravelsToo(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=abc")
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, TraceState: ts})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	c := telemetry.Carrier(ctx)
	require.Equal(t, "vendor=abc", c[telemetry.TraceStateKey])
	require.Equal(t, "vendor=abc", telemetry.SpanContextOf(c).TraceState().String())
}

func TestNothingWrittenWithoutASpanContext(t *testing.T) {
	ctx := context.Background()
	var m eventstore.Metadata
	telemetry.InjectMetadata(ctx, &m)
	require.Nil(t, m.Extra, "no map allocated")
	require.Nil(t, telemetry.Carrier(ctx))
	h := map[string][]string{}
	telemetry.InjectHeader(ctx, h)
	require.Empty(t, h)
	require.Equal(t, ctx, telemetry.Extract(ctx, nil))
	require.Equal(t, ctx, telemetry.ExtractHeader(ctx, h))
	require.False(t, telemetry.SpanContextOf(map[string]string{telemetry.TraceParentKey: "garbage"}).IsValid())
}

func TestHeadersCarryTheSpanContext(t *testing.T) {
	tp, _ := sdkProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "publish")
	defer span.End()
	h := map[string][]string{"Nats-Msg-Id": {"x"}}
	telemetry.InjectHeader(ctx, h)
	require.Len(t, h[telemetry.TraceParentKey], 1, "lower-case key, as W3C names it: NATS headers are case-sensitive")
	got := trace.SpanContextFromContext(telemetry.ExtractHeader(context.Background(), h))
	require.Equal(t, span.SpanContext().SpanID(), got.SpanID())

	m := map[string]string{}
	telemetry.Inject(ctx, m)
	require.Equal(t, span.SpanContext().SpanID(), trace.SpanContextFromContext(telemetry.Extract(context.Background(), m)).SpanID())
}

func TestStartedTellsANoOpProviderApart(t *testing.T) {
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true})
	withRemote := trace.ContextWithRemoteSpanContext(context.Background(), remote)

	for name, tp := range map[string]trace.TracerProvider{"noop": noop.NewTracerProvider(), "global": nil} {
		tracer := telemetry.Tracer(tp, "t")
		for _, parent := range []context.Context{context.Background(), withRemote} {
			_, span := tracer.Start(parent, "x")
			require.False(t, telemetry.Started(parent, span), name)
			span.End()
		}
	}

	sdk, rec := sdkProvider()
	for _, parent := range []context.Context{context.Background(), withRemote} {
		_, span := sdk.Tracer("t").Start(parent, "x")
		require.True(t, telemetry.Started(parent, span))
		span.End()
	}
	// A span sampled out still has an identity of its own, and is
	// propagated so that the decision travels with it.
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	_, span := never.Tracer("t").Start(context.Background(), "x")
	require.False(t, span.IsRecording())
	require.True(t, telemetry.Started(context.Background(), span))
	require.Len(t, rec.Ended(), 2)
}

// Off is sure only of providers that make no spans.
func TestOffKnowsOnlyProvidersThatMakeNoSpans(t *testing.T) {
	require.True(t, telemetry.Off(nil), "no global provider installed in this test binary")
	require.True(t, telemetry.Off(noop.NewTracerProvider()))
	sdk := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	require.False(t, telemetry.Off(sdk))
}
