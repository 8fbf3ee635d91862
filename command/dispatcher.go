package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/retry"
)

// Handler is the untyped form of a command handler that middleware wraps.
// The envelope it receives is complete: ID and CorrelationID are set.
type Handler func(ctx context.Context, env Envelope) (Result, error)

// Middleware wraps a Handler with behaviour common to every command.
type Middleware func(Handler) Handler

// Chain composes middleware into one; the first is the outermost.
func Chain(mws ...Middleware) Middleware {
	return func(h Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
}

// Dispatcher routes commands to their handlers through the middleware chain,
// handling each command ID at most once (see the package documentation). It
// is safe for concurrent use; register every handler before dispatching.
type Dispatcher struct {
	log   eventstore.CommandLog
	chain Handler

	mu       sync.RWMutex
	handlers map[string]registration // by command type name

	turns turns // of Targeted commands
}

type registration struct {
	goType reflect.Type
	call   func(ctx context.Context, payload any) (eventstore.AppendResult, error)
	// appendOnly: AppendOnly.
	appendOnly bool
}

// HandlerOption adjusts one handler's registration.
type HandlerOption func(*registration)

// AppendOnly declares a handler whose only effect is what it appends: it
// loads an aggregate, decides and appends, and calls nothing else (no
// payment gateway, no mail). The dispatcher then skips the command-log
// look-up before calling it, one round trip less per command: the store
// refuses to record a command ID twice when the handler appends (answering
// with the first result), and the dispatcher looks the command up only
// when the handler appended nothing or failed, so that a resubmission the
// handler now refuses (the order is already placed) still gets the first
// answer. A handler with other effects must not be AppendOnly: a
// resubmission would repeat them.
func AppendOnly() HandlerOption { return func(r *registration) { r.appendOnly = true } }

// Config configures a Dispatcher. The zero value is usable: every zero
// field takes the default its comment names. The fields other than Chain
// shape the default chain (see NewDispatcher).
type Config struct {
	// Logger receives the Logging middleware's record of every command
	// (slog.Default() when nil).
	Logger *slog.Logger
	// NoLogging leaves the Logging middleware out of the default chain
	// (Logger is then unused).
	NoLogging bool
	// Timeout bounds the handling of each command, retries included, with
	// the Timeout middleware. Zero sets no bound beyond the caller's
	// context.
	Timeout time.Duration
	// Retry is the policy of the Retry middleware: zero fields take
	// DefaultRetry's. MaxAttempts 1 disables retrying.
	Retry retry.Policy
	// Metrics, when set, records every command's outcome, duration and
	// appended events (its Middleware, first after Logging and Timeout)
	// and counts the Retry middleware's retries. Nil records nothing.
	Metrics *Metrics
	// Middleware is added to the default chain, after Logging, Timeout
	// and Metrics and before Validation and Retry, in the order given:
	// it sees every command, its failures are logged, and it runs once
	// per command however many attempts the handler takes.
	Middleware []Middleware
	// TracerProvider makes the spans of the Tracing middleware, first in
	// the default chain. Nil: otel.GetTracerProvider(), which makes none
	// (and costs next to nothing) until the application installs an SDK.
	TracerProvider trace.TracerProvider
	// Chain, when non-nil, replaces the whole chain, the first middleware
	// outermost; the fields above then have no effect. An empty non-nil
	// Chain sends commands straight to their handlers (after the
	// idempotency look-up, which is not middleware).
	Chain []Middleware
}

// DefaultRetry is the Retry policy of the default chain, and fills the
// zero fields of Config.Retry and of Retry's policy.
var DefaultRetry = retry.Policy{MaxAttempts: 5, BaseDelay: 10 * time.Millisecond, MaxDelay: time.Second}

// chain is the middleware cfg describes.
func (cfg Config) chain() []Middleware {
	if cfg.Chain != nil {
		return cfg.Chain
	}
	mws := []Middleware{Tracing(cfg.TracerProvider)}
	if !cfg.NoLogging {
		logger := cfg.Logger
		if logger == nil {
			logger = slog.Default()
		}
		mws = append(mws, Logging(logger))
	}
	if cfg.Timeout > 0 {
		mws = append(mws, Timeout(cfg.Timeout))
	}
	rt := Retry(cfg.Retry)
	if cfg.Metrics != nil {
		mws = append(mws, cfg.Metrics.Middleware())
		rt = cfg.Metrics.Retry(cfg.Retry)
	}
	mws = append(mws, cfg.Middleware...)
	return append(mws, Validation(), rt)
}

// NewDispatcher returns a dispatcher that consults log (usually the event
// store) for commands already handled. A nil log skips the look-up; the store
// still refuses to apply one command ID twice when it appends.
//
// The default middleware chain is, outermost first:
//
//   - Tracing with Config.TracerProvider, so that the command's span
//     covers all of its handling and its context reaches the events;
//   - Logging (unless Config.NoLogging), so that every outcome is logged,
//     rejections and timeouts included, with the total duration the caller
//     saw;
//   - Timeout, when Config.Timeout is set, outside Retry so that the
//     deadline bounds all attempts and the back-off between them rather
//     than restarting with each attempt;
//   - the Config.Metrics middleware, when set;
//   - Config.Middleware;
//   - Validation, before Retry and before any I/O: an invalid command costs
//     no store round trip and is never retried;
//   - Retry with Config.Retry, innermost, so that each attempt repeats
//     exactly the idempotency look-up and the handler, which reloads the
//     aggregate. Repeating the look-up matters: a conflict may be a
//     concurrent submission of the same command winning, and the look-up
//     then returns its result.
//
// Config.Chain replaces it.
func NewDispatcher(log eventstore.CommandLog, cfg Config) *Dispatcher {
	d := &Dispatcher{log: log, handlers: make(map[string]registration)}
	d.chain = Chain(cfg.chain()...)(d.handle)
	return d
}

// Register makes h the handler of command type C. C must be a concrete type;
// its type name (see TypeName) must be unique among registered commands, and
// a second registration for it fails with a *DuplicateHandlerError. A
// CommandName method must return a constant.
//
// The handler runs with a context carrying the command's eventstore.Causation
// and its Envelope (EnvelopeFrom). It returns the result of the append that
// recorded its decision, or the zero AppendResult when it appended nothing.
func Register[C any](d *Dispatcher, h func(ctx context.Context, cmd C) (eventstore.AppendResult, error), opts ...HandlerOption) error {
	t := reflect.TypeFor[C]()
	if h == nil {
		return fmt.Errorf("command: nil handler for %s", t)
	}
	if t.Kind() == reflect.Interface {
		return fmt.Errorf("command: cannot register interface type %s: register each concrete command type", t)
	}
	name := typeNameOf(t)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.handlers[name]; dup {
		return &DuplicateHandlerError{CommandType: name, GoType: t.String()}
	}
	reg := registration{
		goType: t,
		call: func(ctx context.Context, payload any) (eventstore.AppendResult, error) {
			return h(ctx, payload.(C))
		},
	}
	for _, o := range opts {
		o(&reg)
	}
	d.handlers[name] = reg
	return nil
}

// MustRegister is Register that panics on error, for start-up code.
func MustRegister[C any](d *Dispatcher, h func(ctx context.Context, cmd C) (eventstore.AppendResult, error), opts ...HandlerOption) {
	if err := Register(d, h, opts...); err != nil {
		panic(err)
	}
}

// typeNameOf is TypeName for a Go type, called on a non-nil value of it.
func typeNameOf(t reflect.Type) string {
	v := reflect.New(t).Elem()
	if t.Kind() == reflect.Pointer {
		v = reflect.New(t.Elem())
	}
	return TypeName(v.Interface())
}

// Dispatch handles one command: cmd is an Envelope, a *Envelope, or a bare
// command (which gets a generated ID). The Result's CommandID is set even on
// error, so that a caller can resubmit under the same ID.
//
// Errors: *UnknownCommandError (ErrUnknownCommand), *ValidationError
// (ErrInvalidCommand), *eventstore.IdempotencyKeyReusedError
// (eventstore.ErrIdempotencyKeyReused), an error matching
// eventstore.ErrConcurrency once retries are exhausted, the context's error,
// or whatever the handler returned.
func (d *Dispatcher) Dispatch(ctx context.Context, cmd any) (Result, error) {
	env, err := envelopeOf(cmd)
	if err != nil {
		return Result{CommandID: env.ID}, err
	}
	res, err := d.chain(ctx, env)
	if res.CommandID == "" {
		res.CommandID = env.ID
	}
	return res, err
}

// handle is the end of the chain: the idempotency look-up, then the handler.
func (d *Dispatcher) handle(ctx context.Context, env Envelope) (Result, error) {
	res := Result{CommandID: env.ID}
	name := env.Type()
	d.mu.RLock()
	reg, ok := d.handlers[name]
	d.mu.RUnlock()
	if gt := reflect.TypeOf(env.Payload); !ok || reg.goType != gt {
		return res, &UnknownCommandError{CommandType: name, GoType: fmt.Sprint(gt)}
	}
	hash, err := PayloadHash(env.Payload)
	if err != nil {
		return res, &ValidationError{CommandType: name, CommandID: env.ID, Err: fmt.Errorf("encoding payload: %w", err)}
	}
	release, err := d.turns.take(ctx, targetOf(env.Payload))
	if err != nil {
		return res, err
	}
	defer release()
	if d.log != nil && !reg.appendOnly {
		if res, found, err := d.handled(ctx, env, name, hash); found || err != nil {
			return res, err
		}
	}
	ctx = context.WithValue(ctx, envelopeKey{}, env)
	ctx = eventstore.WithCausation(ctx, eventstore.Causation{
		CommandID:     env.ID,
		CommandType:   name,
		CorrelationID: env.CorrelationID,
		CausedBy:      env.CausationID,
		PayloadHash:   hash,
		Metadata:      env.Metadata,
	})
	ar, err := reg.call(ctx, env.Payload)
	if reg.appendOnly && d.log != nil && (err != nil || ar == (eventstore.AppendResult{})) {
		// The handler refused or found nothing to do: if this is a
		// resubmission, the first handling's answer stands.
		if first, found, lerr := d.handled(ctx, env, name, hash); found {
			return first, lerr
		}
	}
	if err != nil {
		return res, err
	}
	return resultOf(env.ID, ar, ar.Duplicate), nil
}

// handled looks the command up in the command log: found, with its first
// result, when it was handled before (an *eventstore.IdempotencyKeyReusedError
// when under its ID a different command was).
func (d *Dispatcher) handled(ctx context.Context, env Envelope, name string, hash []byte) (Result, bool, error) {
	res := Result{CommandID: env.ID}
	rec, found, err := d.log.HandledCommand(ctx, env.ID)
	if err != nil {
		return res, false, fmt.Errorf("command: looking up command %q: %w", env.ID, err)
	}
	if !found {
		return res, false, nil
	}
	// Strict like the stores: a record without a hash was not made by a
	// dispatcher, so this is not a resubmission of it.
	if !bytes.Equal(rec.PayloadHash, hash) || rec.Type != name {
		return res, true, &eventstore.IdempotencyKeyReusedError{CommandID: env.ID}
	}
	return resultOf(env.ID, rec.Result, true), true, nil
}

func resultOf(id string, ar eventstore.AppendResult, dup bool) Result {
	res := Result{CommandID: id, StreamID: ar.StreamID, Version: ar.Version, Position: ar.Position, Duplicate: dup}
	if ar.FirstVersion > 0 && ar.Version >= ar.FirstVersion {
		res.Events = ar.Version - ar.FirstVersion + 1
	}
	return res
}

// Decode returns the command of the registered type named typeName decoded
// from its JSON encoding: what a process manager that stored a command
// (a saga's outbox) needs to dispatch it later, perhaps in another process.
// An unregistered name is an *UnknownCommandError.
func (d *Dispatcher) Decode(typeName string, payload []byte) (any, error) {
	d.mu.RLock()
	reg, ok := d.handlers[typeName]
	d.mu.RUnlock()
	if !ok {
		return nil, &UnknownCommandError{CommandType: typeName, GoType: "unregistered"}
	}
	ptr := reflect.New(reg.goType)
	if err := json.Unmarshal(payload, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("command: decoding %s: %w", typeName, err)
	}
	return ptr.Elem().Interface(), nil
}
