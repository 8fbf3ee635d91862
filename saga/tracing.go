package saga

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/telemetry"
)

// Span attributes of a saga's steps and sends.
const (
	AttrSaga        = attribute.Key("cairn.saga")
	AttrInstance    = attribute.Key("cairn.saga.instance")
	AttrEventType   = attribute.Key("cairn.event.type")
	AttrEventID     = attribute.Key("cairn.event.id")
	AttrCommandType = attribute.Key("cairn.command.type")
	AttrCommandID   = attribute.Key("cairn.command.id")
	AttrAttempt     = attribute.Key("cairn.saga.attempt")
	AttrOutcome     = attribute.Key("cairn.saga.outcome")
	AttrTimeout     = attribute.Key("cairn.saga.timeout")
)

// How a trace runs through a saga: the step that handles an event is a
// child of the event's trace context (the command that appended it); the
// commands the step queues keep the step's context in their outbox row
// (trace_context, see enqueue); the relay's send of each is a child of
// that, and the command it dispatches a child of the send, so the events
// the command appends carry the trace on.

// startStep starts the span of a step of saga sagaName's instance
// handling rec: "saga <name> <EventType>", a child of rec's trace context
// and linked to the span in ctx (the projection batch applying it).
func (m *Manager) startStep(ctx context.Context, sagaName, instanceID string, rec *eventstore.RecordedEvent) (context.Context, trace.Span) {
	parent := telemetry.ExtractMetadata(ctx, rec.Metadata)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if batch := trace.SpanContextFromContext(ctx); batch.IsValid() && batch.SpanID() != trace.SpanContextFromContext(parent).SpanID() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: batch}))
	}
	sctx, span := m.tracer.Start(parent, "saga "+sagaName+" "+rec.Type, opts...)
	if !telemetry.Started(parent, span) {
		return ctx, span
	}
	if span.IsRecording() {
		span.SetAttributes(AttrSaga.String(sagaName), AttrInstance.String(instanceID),
			AttrEventType.String(rec.Type), AttrEventID.String(rec.ID.String()))
	}
	return sctx, span
}

// startTimeout starts the span of a step of saga sagaName's instance
// handling its timeout called name: "saga <name> timeout <timeout>", the
// root of a trace of its own (a timeout is caused by the clock, not by a
// traced message); the commands the step queues continue it.
func (m *Manager) startTimeout(ctx context.Context, sagaName, instanceID, name string) (context.Context, trace.Span) {
	sctx, span := m.tracer.Start(ctx, "saga "+sagaName+" timeout "+name, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(AttrSaga.String(sagaName), AttrInstance.String(instanceID), AttrTimeout.String(name))
	}
	return sctx, span
}

// startSend starts the span of the relay's send of r: "saga <name> send
// <CommandType>", a child of the step that queued it (its trace_context),
// or of nothing when that step was not traced.
func (m *Manager) startSend(ctx context.Context, r outboxRow) (context.Context, trace.Span) {
	parent := telemetry.Extract(ctx, r.traceContext)
	sctx, span := m.tracer.Start(parent, "saga "+r.saga+" send "+r.commandType, trace.WithSpanKind(trace.SpanKindProducer))
	if !telemetry.Started(parent, span) {
		return ctx, span
	}
	if span.IsRecording() {
		span.SetAttributes(AttrSaga.String(r.saga), AttrInstance.String(r.instanceID),
			AttrCommandType.String(r.commandType), AttrCommandID.String(r.commandID), AttrAttempt.Int(r.attempts))
	}
	return sctx, span
}

// endSend ends a send's span with its outcome ("sent", or what
// recordOutcome made of a failure); a failure the relay will retry or gave
// up on is the span's error, a domain's refusal an answer.
func endSend(span trace.Span, outcome string, err error) {
	if span.IsRecording() {
		span.SetAttributes(AttrOutcome.String(outcome))
		switch {
		case err == nil:
		case outcome == "rejected":
			span.RecordError(err)
		default:
			telemetry.Fail(span, err)
		}
	}
	span.End()
}

// traceContextArg is the trace_context column's value for the commands a
// handling in ctx queues: the handling's span context, or NULL.
func traceContextArg(ctx context.Context) any {
	if c := telemetry.Carrier(ctx); c != nil {
		return c
	}
	return nil
}
