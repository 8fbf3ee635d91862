package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/telemetry"
)

// commandIDSpace is the UUID namespace of the command IDs an inbox derives
// from message IDs. Changing it would make every redelivery a new command.
var commandIDSpace = uuid.MustParse("c10450fb-0eeb-477f-975b-77845eff72a6")

// CommandID is the ID of the command an inbox named inbox dispatches for
// the message messageID: a name-based UUID (version 5) of both, so every
// delivery of the message, to any process of the inbox, carries the same
// command ID, and two inboxes that receive one message send two commands.
func CommandID(inbox, messageID string) string {
	return uuid.NewSHA1(commandIDSpace, []byte(inbox+"\x00"+messageID)).String()
}

// Inbox turns integration messages into commands. Register a handler per
// message type with Handle, then give the inbox to a broker's consumer
// (integration/jetstream), which calls Receive for each delivery.
type Inbox struct {
	name       string
	dispatcher *command.Dispatcher
	byType     map[string]func(ctx context.Context, m Message) (any, error)
	tracer     trace.Tracer
}

// InboxConfig configures an Inbox. The zero value is usable.
type InboxConfig struct {
	// TracerProvider makes the span of each delivery handled, a child of
	// the publisher's span the message's traceparent header names (nil:
	// otel.GetTracerProvider(), no spans unless the application installed
	// a provider).
	TracerProvider trace.TracerProvider
}

// NewInbox returns an inbox named name, dispatching through d. The name
// goes into every command ID (CommandID): keep it for the inbox's life.
func NewInbox(name string, d *command.Dispatcher, cfg InboxConfig) (*Inbox, error) {
	if err := validType(name); err != nil {
		return nil, fmt.Errorf("integration: inbox name %q: it must be printable, without spaces", name)
	}
	if d == nil {
		return nil, fmt.Errorf("integration: inbox %s: needs a command dispatcher", name)
	}
	return &Inbox{name: name, dispatcher: d, byType: map[string]func(context.Context, Message) (any, error){},
		tracer: telemetry.Tracer(cfg.TracerProvider, telemetry.ScopeName+"/integration")}, nil
}

// Name is the inbox's name.
func (in *Inbox) Name() string { return in.name }

// Types are the message types the inbox has handlers for, sorted.
func (in *Inbox) Types() []string {
	names := make([]string, 0, len(in.byType))
	for n := range in.byType {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Handle makes fn the handler of messages of contract type messageType:
// their data is decoded from JSON into an M, and fn returns the command to
// dispatch for it (a bare command or a command.Envelope whose ID,
// correlation and causation the inbox sets), or nil to dispatch nothing.
// msg carries the message's version, key, IDs and headers. An error from fn
// is retried with the delivery, up to the consumer's bound. Register every
// handler before the consumer runs. Handle panics when messageType already
// has a handler: a start-up mistake.
func Handle[M any](in *Inbox, messageType string, fn func(ctx context.Context, m M, msg Message) (any, error)) {
	if err := validType(messageType); err != nil {
		panic(fmt.Sprintf("integration: inbox %s: %v", in.name, err))
	}
	if _, dup := in.byType[messageType]; dup {
		panic(fmt.Sprintf("integration: inbox %s already handles message type %s", in.name, messageType))
	}
	in.byType[messageType] = func(ctx context.Context, msg Message) (any, error) {
		var m M
		if err := decodeData(msg.Data, &m); err != nil {
			return nil, &poisonError{fmt.Errorf("decoding %s data: %w", messageType, err)}
		}
		return fn(ctx, m, msg)
	}
}

// decodeData fills m from a message's data: JSON (as received), or a value
// handed over in-process.
func decodeData[M any](data any, m *M) error {
	switch d := data.(type) {
	case json.RawMessage:
		return json.Unmarshal(d, m)
	case []byte:
		return json.Unmarshal(d, m)
	case M:
		*m = d
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, m)
}

// poisonError marks a failure no redelivery can fix.
type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

// Receive handles one delivery of msg: it decodes it, dispatches its
// command and says what became of it.
//
//   - Handled: the command's events committed. Duplicate: the command had
//     been handled (this is a redelivery), its result replayed from the
//     command log. Rejected: a domain rule refused the command
//     (command.ErrRejected); nothing was written and nothing will be.
//     Ignored: no handler for the type (ErrNoHandler), or the handler
//     returned no command. Acknowledge the message after any of these.
//   - Retry, with the error: a failure a later delivery may not meet (the
//     database, a timeout, the handler's error, ctx ending).
//   - DeadLetter, with the error: a failure every delivery would meet
//     (data that does not decode, a command that is invalid or has no
//     handler, a command ID reused for another command).
//
// The command's ID is CommandID(inbox, msg.ID); its correlation ID is the
// message's (the message ID when it has none) and its causation ID the
// message ID.
func (in *Inbox) Receive(ctx context.Context, msg Message) (Outcome, command.Result, error) {
	ctx, span := in.tracer.Start(telemetry.Extract(ctx, msg.Headers), "consume "+msg.Type,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "cairn"), attribute.String("messaging.destination.name", msg.Subject),
			attribute.String("messaging.message.id", msg.ID), attribute.String("cairn.inbox", in.name)))
	outcome, res, err := in.receive(ctx, msg)
	span.SetAttributes(attribute.String("cairn.outcome", string(outcome)))
	if outcome == Retry || outcome == DeadLetter {
		telemetry.Fail(span, err)
	}
	span.End()
	return outcome, res, err
}

func (in *Inbox) receive(ctx context.Context, msg Message) (Outcome, command.Result, error) {
	fn, ok := in.byType[msg.Type]
	if !ok {
		return Ignored, command.Result{}, fmt.Errorf("%w: %s", ErrNoHandler, msg.Type)
	}
	if msg.ID == "" {
		return DeadLetter, command.Result{}, fmt.Errorf("%w: %s message without an ID", ErrInvalidMessage, msg.Type)
	}
	cmd, err := guard(func() (any, error) { return fn(ctx, msg) })
	if err != nil {
		return classify(ctx, fmt.Errorf("integration: inbox %s: message %s (%s): %w", in.name, msg.ID, msg.Type, err))
	}
	if cmd == nil {
		return Ignored, command.Result{}, nil
	}
	env := envelopeFor(cmd)
	env.ID = CommandID(in.name, msg.ID)
	env.CorrelationID = msg.CorrelationID
	if env.CorrelationID == "" {
		env.CorrelationID = msg.ID
	}
	env.CausationID = msg.ID
	res, err := in.dispatcher.Dispatch(ctx, env)
	switch {
	case err == nil && res.Duplicate:
		return Duplicate, res, nil
	case err == nil:
		return Handled, res, nil
	case errors.Is(err, command.ErrRejected):
		return Rejected, res, err
	}
	return classify(ctx, fmt.Errorf("integration: inbox %s: message %s (%s): command %s: %w", in.name, msg.ID, msg.Type, env.Type(), err))
}

func envelopeFor(cmd any) command.Envelope {
	switch c := cmd.(type) {
	case command.Envelope:
		return c
	case *command.Envelope:
		return *c
	}
	return command.Envelope{Payload: cmd}
}

// classify tells a failure every delivery would meet from one a later
// delivery may not.
func classify(ctx context.Context, err error) (Outcome, command.Result, error) {
	var poison *poisonError
	switch {
	case ctx.Err() != nil:
		return Retry, command.Result{}, err
	case errors.As(err, &poison),
		errors.Is(err, command.ErrInvalidCommand),
		errors.Is(err, command.ErrUnknownCommand),
		errors.Is(err, eventstore.ErrIdempotencyKeyReused):
		return DeadLetter, command.Result{}, err
	}
	return Retry, command.Result{}, err
}

// guard turns a panic in a handler into an error.
func guard(fn func() (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	return fn()
}
