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

	"github.com/cairn-es/cairn/eventstore"
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
}

type registration struct {
	goType reflect.Type
	call   func(ctx context.Context, payload any) (eventstore.AppendResult, error)
}

// Option configures a Dispatcher.
type Option func(*config)

type config struct {
	logger  *slog.Logger
	timeout time.Duration
	retry   RetryPolicy
	extra   []Middleware
	chain   []Middleware
	custom  bool
}

// WithLogger sets the logger of the Logging middleware in the default chain
// (slog.Default() unless set); nil leaves logging out.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTimeout bounds the handling of each command, retries included, with
// the Timeout middleware. Zero (the default) sets no bound beyond the
// caller's context.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithRetry sets the policy of the Retry middleware in the default chain
// (DefaultRetryPolicy unless set). MaxAttempts 1 disables retrying.
func WithRetry(p RetryPolicy) Option { return func(c *config) { c.retry = p } }

// WithMiddleware adds middleware to the default chain, after Logging and
// Timeout and before Validation and Retry, in the order given: they see
// every command, their failures are logged, and they run once per command
// however many attempts the handler takes.
func WithMiddleware(mws ...Middleware) Option {
	return func(c *config) { c.extra = append(c.extra, mws...) }
}

// WithChain replaces the whole chain, the first middleware outermost.
// WithLogger, WithTimeout, WithRetry and WithMiddleware then have no effect.
// With no middleware at all, commands go straight to their handlers (after
// the idempotency look-up, which is not middleware).
func WithChain(mws ...Middleware) Option {
	return func(c *config) { c.chain = append([]Middleware(nil), mws...); c.custom = true }
}

// NewDispatcher returns a dispatcher that consults log (usually the event
// store) for commands already handled. A nil log skips the look-up; the store
// still refuses to apply one command ID twice when it appends.
//
// The default middleware chain is, outermost first:
//
//   - Logging, so that every outcome is logged, rejections and timeouts
//     included, with the total duration the caller saw;
//   - Timeout, when configured, outside Retry so that the deadline bounds all
//     attempts and the back-off between them rather than restarting with
//     each attempt;
//   - any WithMiddleware middleware;
//   - Validation, before Retry and before any I/O: an invalid command costs
//     no store round trip and is never retried;
//   - Retry, innermost, so that each attempt repeats exactly the idempotency
//     look-up and the handler, which reloads the aggregate. Repeating the
//     look-up matters: a conflict may be a concurrent submission of the
//     same command winning, and the look-up then returns its result.
func NewDispatcher(log eventstore.CommandLog, opts ...Option) *Dispatcher {
	c := config{logger: slog.Default(), retry: DefaultRetryPolicy}
	for _, o := range opts {
		o(&c)
	}
	mws := c.chain
	if !c.custom {
		if c.logger != nil {
			mws = append(mws, Logging(c.logger))
		}
		if c.timeout > 0 {
			mws = append(mws, Timeout(c.timeout))
		}
		mws = append(mws, c.extra...)
		mws = append(mws, Validation(), Retry(c.retry))
	}
	d := &Dispatcher{log: log, handlers: make(map[string]registration)}
	d.chain = Chain(mws...)(d.handle)
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
func Register[C any](d *Dispatcher, h func(ctx context.Context, cmd C) (eventstore.AppendResult, error)) error {
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
	d.handlers[name] = registration{
		goType: t,
		call: func(ctx context.Context, payload any) (eventstore.AppendResult, error) {
			return h(ctx, payload.(C))
		},
	}
	return nil
}

// MustRegister is Register that panics on error, for start-up code.
func MustRegister[C any](d *Dispatcher, h func(ctx context.Context, cmd C) (eventstore.AppendResult, error)) {
	if err := Register(d, h); err != nil {
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
	if d.log != nil {
		rec, found, err := d.log.HandledCommand(ctx, env.ID)
		if err != nil {
			return res, fmt.Errorf("command: looking up command %q: %w", env.ID, err)
		}
		if found {
			// Strict like the stores: a record without a hash was not made
			// by a dispatcher, so this is not a resubmission of it.
			if !bytes.Equal(rec.PayloadHash, hash) || rec.Type != name {
				return res, &eventstore.IdempotencyKeyReusedError{CommandID: env.ID}
			}
			return resultOf(env.ID, rec.Result, true), nil
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
	if err != nil {
		return res, err
	}
	return resultOf(env.ID, ar, ar.Duplicate), nil
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
