package projection

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/telemetry"
)

// Span attributes of a projection batch.
const (
	AttrProjection    = attribute.Key("cairn.projection")
	AttrEvents        = attribute.Key("cairn.events")
	AttrFirstPosition = attribute.Key("cairn.position.first")
	AttrLastPosition  = attribute.Key("cairn.position.last")
	AttrRebuild       = attribute.Key("cairn.projection.rebuild")
	AttrBatchOutcome  = attribute.Key("cairn.projection.outcome")
)

// maxLinks bounds the links of a batch's span to the traces of its other
// events (the SDK's default span limit).
const maxLinks = 128

// startBatch starts the span of one batch transaction of the projection
// name, "projection <name>". For the live model its parent is the trace
// context of the batch's first event (the command that appended it), and
// it links to the other traces the batch's events belong to; a rebuild's
// batch replays history and starts a trace of its own. The context
// returned, which the projector gets, carries the span.
func (m *Manager) startBatch(ctx context.Context, name string, live bool, events []eventstore.RecordedEvent) (context.Context, trace.Span) {
	parent := ctx
	if live && len(events) > 0 {
		parent = telemetry.ExtractMetadata(ctx, events[0].Metadata)
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if !live {
		opts = append(opts, trace.WithNewRoot())
	}
	sctx, span := m.tracer.Start(parent, "projection "+name, opts...)
	if !telemetry.Started(parent, span) {
		return ctx, span
	}
	if span.IsRecording() && len(events) > 0 {
		span.SetAttributes(AttrProjection.String(name), AttrEvents.Int(len(events)),
			AttrFirstPosition.String(events[0].Position.String()),
			AttrLastPosition.String(events[len(events)-1].Position.String()))
		if !live {
			span.SetAttributes(AttrRebuild.Bool(true))
		} else {
			linkOthers(span, trace.SpanContextFromContext(parent), events[1:])
		}
	}
	return sctx, span
}

// linkOthers links span to the distinct trace contexts of events other
// than first, up to maxLinks.
func linkOthers(span trace.Span, first trace.SpanContext, events []eventstore.RecordedEvent) {
	var seen map[trace.SpanID]bool
	for _, e := range events {
		if len(seen) >= maxLinks {
			return
		}
		sc := telemetry.SpanContextOf(e.Metadata.Extra)
		if !sc.IsValid() || sc.SpanID() == first.SpanID() || seen[sc.SpanID()] {
			continue
		}
		if seen == nil {
			seen = map[trace.SpanID]bool{}
		}
		seen[sc.SpanID()] = true
		span.AddLink(trace.Link{SpanContext: sc})
	}
}

// endBatch ends a batch's span. A batch given up because the checkpoint
// moved or the projection stopped running is not a failure.
func endBatch(span trace.Span, err error) {
	switch {
	case errors.Is(err, errMoved):
		span.SetAttributes(AttrBatchOutcome.String("checkpoint_moved"))
		err = nil
	case errors.Is(err, errNotRunning):
		span.SetAttributes(AttrBatchOutcome.String("not_running"))
		err = nil
	}
	telemetry.End(span, err)
}
