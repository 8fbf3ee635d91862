package command

import (
	"context"
	"log/slog"
	"maps"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/telemetry"
)

// Span attributes of a command's span.
const (
	AttrCommandType   = attribute.Key("cairn.command.type")
	AttrCommandID     = attribute.Key("cairn.command.id")
	AttrCorrelationID = attribute.Key("cairn.correlation_id")
	AttrCausationID   = attribute.Key("cairn.causation_id")
	AttrOutcome       = attribute.Key("cairn.command.outcome")
	AttrStreamID      = attribute.Key("cairn.stream.id")
	AttrStreamVersion = attribute.Key("cairn.stream.version")
	AttrEvents        = attribute.Key("cairn.events")
)

// internalSpan is the kind of a command's span, as a start option made
// once.
var internalSpan = trace.WithSpanKind(trace.SpanKindInternal)

// Tracing returns middleware that handles each command in a span named
// "command <Type>", a child of the span in the caller's context (the HTTP
// request's, a saga relay's send), spanning the idempotency look-up, the
// handler and its append, retries included. It writes the span's context
// into the envelope's Metadata (telemetry.TraceParentKey, on a copy of the
// map), which eventstore.Causation copies into every event the command
// appends: whoever handles those events continues the trace.
//
// tp nil means otel.GetTracerProvider(). With a provider that makes no
// spans (tracing off) the metadata is left alone.
func Tracing(tp trace.TracerProvider) Middleware {
	tracer := telemetry.Tracer(tp, telemetry.ScopeName+"/command")
	// Span names are made once per command type: with tracing off, the
	// span is all this middleware costs, and its name should not be an
	// allocation on every command.
	var names sync.Map // command type → span name
	spanName := func(typ string) string {
		if n, ok := names.Load(typ); ok {
			return n.(string)
		}
		n, _ := names.LoadOrStore(typ, "command "+typ)
		return n.(string)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, env Envelope) (Result, error) {
			if telemetry.Off(tp) {
				return next(ctx, env)
			}
			name := env.Type()
			sctx, span := tracer.Start(ctx, spanName(name), internalSpan)
			defer span.End()
			if !telemetry.Started(ctx, span) {
				return next(ctx, env)
			}
			if span.IsRecording() {
				span.SetAttributes(AttrCommandType.String(name), AttrCommandID.String(env.ID),
					AttrCorrelationID.String(env.CorrelationID))
				if env.CausationID != "" {
					span.SetAttributes(AttrCausationID.String(env.CausationID))
				}
			}
			md := make(map[string]string, len(env.Metadata)+2)
			maps.Copy(md, env.Metadata)
			telemetry.Inject(sctx, md)
			env.Metadata = md
			res, err := next(sctx, env)
			if span.IsRecording() {
				level, outcome := outcomeOf(res, err)
				span.SetAttributes(AttrOutcome.String(outcome))
				if res.StreamID != "" {
					span.SetAttributes(AttrStreamID.String(res.StreamID), AttrStreamVersion.Int64(res.Version), AttrEvents.Int64(res.Events))
				}
				// A refusal by the domain or of bad input is an answer,
				// not a failure of the service: recorded, status unset.
				if level >= slog.LevelWarn {
					telemetry.Fail(span, err)
				} else if err != nil {
					span.RecordError(err)
				}
			}
			return res, err
		}
	}
}
