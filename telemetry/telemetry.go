// Package telemetry carries OpenTelemetry trace context through Cairn, so
// that one trace follows a request from the HTTP edge through the command
// it dispatched, the events that command appended, the projections and
// sagas that handled them, and the commands those sagas sent (and, between
// services, the messages a broker carried).
//
// The context travels in W3C Trace Context form (the "traceparent" and
// "tracestate" keys): in the metadata of events (eventstore.Metadata.Extra,
// filled by the command dispatcher through eventstore.Causation), in a
// saga's outbox, and in message headers. This package holds the helpers
// that write and read it; the subsystems (command, server, projection,
// saga) start the spans.
//
// Every subsystem takes its trace.TracerProvider in its Config
// (TracerProvider); nil means otel.GetTracerProvider(), which makes no
// spans until an application installs an SDK. Package telemetry keeps no
// state and installs nothing: app builds the SDK's provider from the
// OTEL_* environment and hands it down.
//
// A provider that makes no spans (the no-op one: tracing off) hands back
// its parent's span context instead of a span of its own; the subsystems
// then propagate nothing (see Started), so with tracing off no trace
// context is written into events or the outbox, even when a request
// arrived with a traceparent header.
package telemetry

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cairn-es/cairn/eventstore"
)

// The keys of the W3C Trace Context, in event metadata, the saga outbox
// and message headers.
const (
	TraceParentKey = "traceparent"
	TraceStateKey  = "tracestate"
)

// ScopeName prefixes the instrumentation scope of every tracer Cairn's
// packages make: ScopeName + "/command", "/server" and so on.
const ScopeName = "github.com/cairn-es/cairn"

// Tracer returns tp's tracer for the instrumentation scope name. A nil tp
// means otel.GetTracerProvider(): the application's global provider, which
// makes no spans unless the application installed one.
func Tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(name)
}

// initialGlobal is the global tracer provider as it is before an
// application installs one (otel.SetTracerProvider): it makes no spans.
var initialGlobal = otel.GetTracerProvider()

// Off reports whether tp certainly makes no spans, so that a caller can
// skip even starting one: tp nil while no application has installed a
// global provider, or a no-op provider. Tracing off then costs a pointer
// comparison per operation. It is false when in doubt.
func Off(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil:
		return otel.GetTracerProvider() == initialGlobal
	case noop.TracerProvider, *noop.TracerProvider:
		return true
	}
	return false
}

// propagator is the W3C Trace Context propagator; it is stateless, so a
// zero value per call costs nothing.
func propagator() propagation.TraceContext { return propagation.TraceContext{} }

// Inject writes the span context of ctx into carrier (traceparent, and
// tracestate when there is one). It writes nothing when ctx has no valid
// span context.
func Inject(ctx context.Context, carrier map[string]string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator().Inject(ctx, propagation.MapCarrier(carrier))
}

// Carrier returns a new map holding the span context of ctx, or nil when
// ctx has none: what to store beside a message to be sent later (a saga's
// outbox row).
func Carrier(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := make(map[string]string, 2)
	propagator().Inject(ctx, propagation.MapCarrier(m))
	return m
}

// Extract returns ctx carrying, as its remote parent, the span context
// carrier holds; ctx unchanged when carrier holds none (or a malformed
// one).
func Extract(ctx context.Context, carrier map[string]string) context.Context {
	if carrier[TraceParentKey] == "" {
		return ctx
	}
	return propagator().Extract(ctx, propagation.MapCarrier(carrier))
}

// SpanContextOf returns the span context carrier holds; invalid when it
// holds none.
func SpanContextOf(carrier map[string]string) trace.SpanContext {
	if carrier[TraceParentKey] == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagator().Extract(context.Background(), propagation.MapCarrier(carrier)))
}

// InjectMetadata writes the span context of ctx into an event's metadata
// (Extra), allocating Extra when it must. It writes nothing when ctx has
// no valid span context.
func InjectMetadata(ctx context.Context, m *eventstore.Metadata) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if m.Extra == nil {
		m.Extra = make(map[string]string, 2)
	}
	Inject(ctx, m.Extra)
}

// ExtractMetadata returns ctx carrying the span context an event's
// metadata holds as its remote parent: what a handler of the event
// starts its span under.
func ExtractMetadata(ctx context.Context, m eventstore.Metadata) context.Context {
	return Extract(ctx, m.Extra)
}

// HeaderCarrier adapts multi-valued message headers (a NATS message's
// nats.Header, say) to the propagator. Keys are used as given, lower case:
// unlike HTTP, NATS headers are case-sensitive.
type HeaderCarrier map[string][]string

// Get returns the first value of key.
func (h HeaderCarrier) Get(key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Set replaces the values of key with value.
func (h HeaderCarrier) Set(key, value string) { h[key] = []string{value} }

// Keys lists the keys.
func (h HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// InjectHeader writes the span context of ctx into message headers; nothing
// when ctx has no valid span context.
func InjectHeader(ctx context.Context, h map[string][]string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator().Inject(ctx, HeaderCarrier(h))
}

// ExtractHeader returns ctx carrying the span context message headers hold
// as its remote parent; ctx unchanged when they hold none.
func ExtractHeader(ctx context.Context, h map[string][]string) context.Context {
	if HeaderCarrier(h).Get(TraceParentKey) == "" {
		return ctx
	}
	return propagator().Extract(ctx, HeaderCarrier(h))
}

// Started reports whether span, just started as a child of parent, is a
// span of its own that is worth propagating. A provider that makes no
// spans (the no-op provider, which is what tracing off means) hands back
// the parent's span context, or none; a provider that samples a span out
// still gives it an identity of its own, which is propagated so that the
// sampling decision travels with it.
func Started(parent context.Context, span trace.Span) bool {
	sc := span.SpanContext()
	return sc.IsValid() && sc.SpanID() != trace.SpanContextFromContext(parent).SpanID()
}

// End ends span, recording err (when not nil) as its error and status.
func End(span trace.Span, err error) {
	if err != nil {
		Fail(span, err)
	}
	span.End()
}

// Fail records err on span and sets its status to Error.
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, errorMessage(err))
}

// errorMessage bounds a status description: a span's status is for a
// glance, the error event has the rest.
func errorMessage(err error) string {
	const limit = 512
	msg := err.Error()
	if len(msg) > limit {
		msg = msg[:limit]
	}
	return msg
}
