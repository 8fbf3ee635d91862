-- Tracing: the trace context (W3C traceparent and tracestate, as a JSON
-- object) of the saga step that queued a command. The relay's send of the
-- command is a child of it, and the command it dispatches a child of the
-- send, so one trace runs from the event through the saga to what the
-- command appends. NULL when the step was not traced. (IF NOT EXISTS: a
-- schema adopted from the single old version table may have it already.)
ALTER TABLE {{.schema}}.saga_outbox ADD COLUMN IF NOT EXISTS trace_context jsonb;
