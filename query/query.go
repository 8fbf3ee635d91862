// Package query serves read models: typed query handlers registered with a
// Bus, and SQL helpers (built with squirrel, dollar placeholders) for what
// every read API needs: keyset pagination with opaque cursors, filters and
// sorting restricted to allow-listed columns (user input never reaches SQL
// text), and a typed not-found.
package query

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// Handler answers queries of type Q with results of type R.
type Handler[Q, R any] interface {
	Handle(ctx context.Context, q Q) (R, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc[Q, R any] func(ctx context.Context, q Q) (R, error)

// Handle calls f.
func (f HandlerFunc[Q, R]) Handle(ctx context.Context, q Q) (R, error) { return f(ctx, q) }

// Errors.
var (
	// ErrNotFound: the query's subject does not exist.
	ErrNotFound = errors.New("query: not found")
	// ErrDuplicateHandler: a second handler for one query type.
	ErrDuplicateHandler = errors.New("query: handler already registered")
	// ErrUnknownQuery: a query type with no handler.
	ErrUnknownQuery = errors.New("query: no handler registered")
	// ErrInvalidQuery is matched by every error about the client's query
	// (a bad cursor, a sort or filter outside the allow-list, a bad limit):
	// the HTTP layer answers it with 400.
	ErrInvalidQuery = errors.New("query: invalid query")
	// ErrInvalidCursor: a pagination cursor that does not decode or does
	// not belong to this listing. It matches ErrInvalidQuery too.
	ErrInvalidCursor = fmt.Errorf("%w: invalid cursor", ErrInvalidQuery)
	// ErrInvalidSort: a sort key outside the allow-list. It matches ErrInvalidQuery too.
	ErrInvalidSort = fmt.Errorf("%w: invalid sort", ErrInvalidQuery)
	// ErrInvalidFilter: a filter outside the allow-list or with a bad value.
	// It matches ErrInvalidQuery too.
	ErrInvalidFilter = fmt.Errorf("%w: invalid filter", ErrInvalidQuery)
)

// NotFoundError reports a missing subject, e.g. Resource "order", ID "42".
type NotFoundError struct {
	Resource string
	ID       string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %q not found", e.Resource, e.ID)
}

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// NotFound returns a *NotFoundError.
func NotFound(resource, id string) error { return &NotFoundError{Resource: resource, ID: id} }

// Bus holds one handler per query type.
type Bus struct {
	mu       sync.RWMutex
	handlers map[reflect.Type]entry
}

type entry struct {
	handle      func(ctx context.Context, q any) (any, error)
	projections []string
}

// Option adjusts a registration.
type Option func(*entry)

// ReadsFrom names the projections whose read models the handler reads: the
// HTTP layer waits for them when a client asks to read its own writes.
func ReadsFrom(projections ...string) Option {
	return func(e *entry) { e.projections = append(e.projections, projections...) }
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{handlers: map[reflect.Type]entry{}} }

// Register adds the handler for query type Q; a second one is an error.
func Register[Q, R any](b *Bus, h Handler[Q, R], opts ...Option) error {
	t := reflect.TypeFor[Q]()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.handlers[t]; dup {
		return fmt.Errorf("%w: %s", ErrDuplicateHandler, t)
	}
	e := entry{handle: func(ctx context.Context, q any) (any, error) { return h.Handle(ctx, q.(Q)) }}
	for _, o := range opts {
		o(&e)
	}
	b.handlers[t] = e
	return nil
}

// MustRegister is Register for start-up code: it panics on error.
func MustRegister[Q, R any](b *Bus, h Handler[Q, R], opts ...Option) {
	if err := Register(b, h, opts...); err != nil {
		panic(err)
	}
}

// Ask runs query q through its handler.
func Ask[Q, R any](ctx context.Context, b *Bus, q Q) (R, error) {
	var zero R
	e, err := b.lookup(reflect.TypeFor[Q]())
	if err != nil {
		return zero, err
	}
	res, err := e.handle(ctx, q)
	if err != nil {
		return zero, err
	}
	r, ok := res.(R)
	if !ok {
		return zero, fmt.Errorf("query: handler for %T returned %T, not %s", q, res, reflect.TypeFor[R]())
	}
	return r, nil
}

// Projections returns the projections registered as behind query type Q.
func Projections[Q any](b *Bus) ([]string, error) {
	e, err := b.lookup(reflect.TypeFor[Q]())
	if err != nil {
		return nil, err
	}
	return slices.Clone(e.projections), nil
}

func (b *Bus) lookup(t reflect.Type) (entry, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	e, ok := b.handlers[t]
	if !ok {
		return entry{}, fmt.Errorf("%w: %s", ErrUnknownQuery, t)
	}
	return e, nil
}
