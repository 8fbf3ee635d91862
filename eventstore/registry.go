package eventstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"unicode/utf8"
)

// Registry errors. The registry wraps them in the typed errors below, so
// callers test with errors.Is and read context with errors.As.
var (
	// ErrUnknownEventType: a type name, or a Go type, that is not registered.
	ErrUnknownEventType = errors.New("eventstore: unknown event type")
	// ErrUnknownSchemaVersion: a stored schema version the registry cannot
	// bring to the current one (newer than current, below 1, or with a gap
	// in the upcaster chain).
	ErrUnknownSchemaVersion = errors.New("eventstore: unknown schema version")
	// ErrUndecodableEvent: stored data that an upcaster rejects or that does
	// not unmarshal into the registered Go type.
	ErrUndecodableEvent = errors.New("eventstore: undecodable event")
	// ErrDuplicateRegistration: a type name, or a Go type, registered twice.
	ErrDuplicateRegistration = errors.New("eventstore: duplicate event type registration")
	// ErrInvalidRegistration: a registration that cannot work (empty name,
	// pointer or interface type, schema version below 1, upcaster outside
	// the version range or given twice).
	ErrInvalidRegistration = errors.New("eventstore: invalid event type registration")
)

// Upcaster converts the JSON data of one schema version of an event type to
// the next version.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// TypeOption configures one registration; see SchemaVersion and Upcast.
type TypeOption func(*typeConfig)

type typeConfig struct {
	version   int
	upcasters map[int]Upcaster
	errs      []string
}

// SchemaVersion sets the current schema version of the registered type (1
// when not given). Encode writes it; Decode upcasts older data to it.
func SchemaVersion(n int) TypeOption {
	return func(c *typeConfig) { c.version = n }
}

// Upcast registers fn to convert data stored at schema version from to
// version from+1. A type at schema version n needs upcasters from 1 to n-1
// to read everything ever written; Decode reports a gap in the chain as an
// UnknownSchemaVersionError only when it meets data that needs the missing
// step.
func Upcast(from int, fn func(json.RawMessage) (json.RawMessage, error)) TypeOption {
	return func(c *typeConfig) {
		if fn == nil {
			c.errs = append(c.errs, fmt.Sprintf("nil upcaster from version %d", from))
			return
		}
		if c.upcasters == nil {
			c.upcasters = make(map[int]Upcaster)
		}
		if _, dup := c.upcasters[from]; dup {
			c.errs = append(c.errs, fmt.Sprintf("two upcasters from version %d", from))
			return
		}
		c.upcasters[from] = fn
	}
}

// TypeInfo describes a registered event type.
type TypeInfo struct {
	// Name is the event type name stored with every event.
	Name string
	// GoType is the registered Go type (never a pointer).
	GoType reflect.Type
	// SchemaVersion is the current schema version.
	SchemaVersion int
}

type entry struct {
	info      TypeInfo
	upcasters map[int]Upcaster
	decode    func(json.RawMessage) (any, error)
}

// Registry maps event type names to Go types and schema versions: it turns
// Go values into Events for appending and RecordedEvents back into Go
// values, upcasting old schema versions on the way. Register every type at
// start-up; a Registry is then safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*entry
	byType map[reflect.Type]*entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: make(map[string]*entry), byType: make(map[reflect.Type]*entry)}
}

// Register maps the event type name to the Go type T, which must not be a
// pointer or an interface type: Encode accepts a T or a *T, Decode returns a
// T. Registering a name or a Go type twice returns a *RegistrationError
// matching ErrDuplicateRegistration; an unusable registration returns one
// matching ErrInvalidRegistration.
func Register[T any](r *Registry, name string, opts ...TypeOption) error {
	t := reflect.TypeFor[T]()
	bad := func(reason string) error {
		return &RegistrationError{Err: ErrInvalidRegistration, Name: name, GoType: t, Reason: reason}
	}
	switch {
	case name == "":
		return bad("empty type name")
	case len(name) > MaxEventTypeLength || !utf8.ValidString(name):
		return bad(fmt.Sprintf("type name must be valid UTF-8 of at most %d bytes", MaxEventTypeLength))
	case t.Kind() == reflect.Pointer:
		return bad("register the element type, not a pointer type")
	case t.Kind() == reflect.Interface:
		return bad("an interface type cannot be decoded into")
	}
	cfg := typeConfig{version: 1}
	for _, opt := range opts {
		opt(&cfg)
	}
	if len(cfg.errs) > 0 {
		return bad(cfg.errs[0])
	}
	if cfg.version < 1 {
		return bad(fmt.Sprintf("schema version %d is below 1", cfg.version))
	}
	for from := range cfg.upcasters {
		if from < 1 || from >= cfg.version {
			return bad(fmt.Sprintf("upcaster from version %d is outside 1..%d (current schema version %d)", from, cfg.version-1, cfg.version))
		}
	}
	e := &entry{
		info:      TypeInfo{Name: name, GoType: t, SchemaVersion: cfg.version},
		upcasters: cfg.upcasters,
		decode: func(data json.RawMessage) (any, error) {
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, err
			}
			return v, nil
		},
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, dup := r.byName[name]; dup {
		return &RegistrationError{Err: ErrDuplicateRegistration, Name: name, GoType: t, Reason: fmt.Sprintf("name already registered for %v", prev.info.GoType)}
	}
	if prev, dup := r.byType[t]; dup {
		return &RegistrationError{Err: ErrDuplicateRegistration, Name: name, GoType: t, Reason: fmt.Sprintf("Go type already registered as %q", prev.info.Name)}
	}
	r.byName[name] = e
	r.byType[t] = e
	return nil
}

// MustRegister is Register for start-up code: it panics on error.
func MustRegister[T any](r *Registry, name string, opts ...TypeOption) {
	if err := Register[T](r, name, opts...); err != nil {
		panic(err)
	}
}

// Encode builds the Event for v, a value (or non-nil pointer to a value) of
// a registered type: its type name, current schema version and JSON data.
// ID and Metadata are left for the caller and the store. An unregistered
// type returns an *UnknownEventTypeError.
func (r *Registry) Encode(v any) (Event, error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		if reflect.ValueOf(v).IsNil() {
			return Event{}, fmt.Errorf("eventstore: encoding a nil %v", t)
		}
		t = t.Elem()
	}
	r.mu.RLock()
	e, ok := r.byType[t]
	r.mu.RUnlock()
	if !ok {
		return Event{}, &UnknownEventTypeError{GoType: t}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: encoding event %q: %w", e.info.Name, err)
	}
	if string(data) == "null" {
		// Decode rejects null data, so never write it.
		return Event{}, fmt.Errorf("eventstore: encoding event %q: %v encodes to null", e.info.Name, t)
	}
	return Event{Type: e.info.Name, SchemaVersion: e.info.SchemaVersion, Data: data}, nil
}

// Decode turns a stored event into a value of its registered Go type (the
// value, not a pointer), running the upcasters from the stored schema
// version to the current one. It never returns a zero value in place of
// data it cannot read:
//
//   - a type name that is not registered: *UnknownEventTypeError
//     (ErrUnknownEventType);
//   - a schema version below 1, newer than the current one, or older with a
//     missing upcaster on the way: *UnknownSchemaVersionError
//     (ErrUnknownSchemaVersion);
//   - an upcaster error, or data that is empty, null or does not unmarshal
//     into the Go type: *DecodeError (ErrUndecodableEvent).
func (r *Registry) Decode(rec RecordedEvent) (any, error) {
	r.mu.RLock()
	e, ok := r.byName[rec.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, &UnknownEventTypeError{Name: rec.Type, StreamID: rec.StreamID, Version: rec.Version}
	}
	current := e.info.SchemaVersion
	stored := rec.SchemaVersion
	versionErr := func(reason string) error {
		return &UnknownSchemaVersionError{Type: rec.Type, StreamID: rec.StreamID, Version: rec.Version, SchemaVersion: stored, CurrentVersion: current, Reason: reason}
	}
	switch {
	case stored < 1:
		return nil, versionErr("schema versions start at 1")
	case stored > current:
		return nil, versionErr("newer than the registered schema version")
	}
	for v := stored; v < current; v++ {
		if _, ok := e.upcasters[v]; !ok {
			return nil, versionErr(fmt.Sprintf("no upcaster from version %d to %d", v, v+1))
		}
	}
	decodeErr := func(step string, err error) error {
		return &DecodeError{Type: rec.Type, StreamID: rec.StreamID, Version: rec.Version, EventID: rec.ID.String(), SchemaVersion: stored, Step: step, Err: err}
	}
	data := rec.Data
	if isEmptyOrNull(data) {
		return nil, decodeErr("reading stored data", errors.New("data is empty or null"))
	}
	for v := stored; v < current; v++ {
		out, err := e.upcasters[v](data)
		if err != nil {
			return nil, decodeErr(fmt.Sprintf("upcasting from version %d to %d", v, v+1), err)
		}
		data = out
	}
	step := "unmarshalling"
	if stored < current {
		step = fmt.Sprintf("unmarshalling (upcast from version %d to %d)", stored, current)
	}
	if isEmptyOrNull(data) {
		return nil, decodeErr(step, errors.New("upcast data is empty or null"))
	}
	v, err := e.decode(data)
	if err != nil {
		return nil, decodeErr(step, err)
	}
	return v, nil
}

// isEmptyOrNull reports data that would unmarshal into a zero value
// without an error.
func isEmptyOrNull(data []byte) bool {
	trimmed := bytes.Trim(data, " \t\r\n")
	return len(trimmed) == 0 || string(trimmed) == "null"
}

// Names returns the registered type names, sorted: for instance the Types
// filter of a subscription that reads every registered event.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns what is registered under a type name.
func (r *Registry) Lookup(name string) (TypeInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		return TypeInfo{}, false
	}
	return e.info, true
}

// TypeName returns the type name registered for the Go type of v (a value
// or a pointer to one).
func (r *Registry) TypeName(v any) (string, bool) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return r.typeName(t)
}

func (r *Registry) typeName(t reflect.Type) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byType[t]
	if !ok {
		return "", false
	}
	return e.info.Name, true
}

// TypeNameOf returns the type name registered for the Go type T, without
// needing a value of it.
func TypeNameOf[T any](r *Registry) (string, bool) {
	return r.typeName(reflect.TypeFor[T]())
}

// RegistrationError reports a rejected Register call. Err is
// ErrDuplicateRegistration or ErrInvalidRegistration.
type RegistrationError struct {
	Err    error
	Name   string
	GoType reflect.Type
	Reason string
}

func (e *RegistrationError) Error() string {
	return fmt.Sprintf("%v: %q (%v): %s", e.Err, e.Name, e.GoType, e.Reason)
}

// Unwrap returns the sentinel.
func (e *RegistrationError) Unwrap() error { return e.Err }

// UnknownEventTypeError reports an event type the registry does not know:
// Name is set when decoding (with the stream and version of the event, when
// known), GoType when encoding.
type UnknownEventTypeError struct {
	Name     string
	GoType   reflect.Type
	StreamID string
	Version  int64
}

func (e *UnknownEventTypeError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("eventstore: Go type %v is not a registered event type", e.GoType)
	}
	if e.StreamID != "" {
		return fmt.Sprintf("eventstore: unknown event type %q (stream %q, version %d)", e.Name, e.StreamID, e.Version)
	}
	return fmt.Sprintf("eventstore: unknown event type %q", e.Name)
}

// Unwrap makes errors.Is(err, ErrUnknownEventType) true.
func (e *UnknownEventTypeError) Unwrap() error { return ErrUnknownEventType }

// UnknownSchemaVersionError reports stored data whose schema version the
// registry cannot bring to the current one. SchemaVersion is the stored
// version and CurrentVersion the registered one; StreamID and Version locate
// the event.
type UnknownSchemaVersionError struct {
	Type           string
	StreamID       string
	Version        int64
	SchemaVersion  int
	CurrentVersion int
	Reason         string
}

func (e *UnknownSchemaVersionError) Error() string {
	return fmt.Sprintf("eventstore: unknown schema version %d of event type %q (current %d; stream %q, version %d): %s",
		e.SchemaVersion, e.Type, e.CurrentVersion, e.StreamID, e.Version, e.Reason)
}

// Unwrap makes errors.Is(err, ErrUnknownSchemaVersion) true.
func (e *UnknownSchemaVersionError) Unwrap() error { return ErrUnknownSchemaVersion }

// DecodeError reports stored data that could not be turned into its Go
// type. Step says where it failed (an upcaster or the final unmarshal) and
// Err is the cause, reachable with errors.Is and errors.As along with
// ErrUndecodableEvent.
type DecodeError struct {
	Type          string
	StreamID      string
	Version       int64
	EventID       string
	SchemaVersion int
	Step          string
	Err           error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("eventstore: undecodable event %q at schema version %d (stream %q, version %d, ID %s): %s: %v",
		e.Type, e.SchemaVersion, e.StreamID, e.Version, e.EventID, e.Step, e.Err)
}

// Unwrap makes errors.Is(err, ErrUndecodableEvent) true and exposes the
// cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrUndecodableEvent, e.Err} }
