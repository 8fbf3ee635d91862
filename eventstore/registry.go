package eventstore

import (
	"bytes"
	"context"
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
	// ErrFieldCipher: the registry's FieldCipher could not seal an event's
	// fields on Encode or open them on Decode (its key store failed, or
	// sealed data was tampered with). A forgotten subject is not this error:
	// the cipher redacts its fields and Decode succeeds.
	ErrFieldCipher = errors.New("eventstore: field cipher failed")
)

// Upcaster converts the JSON data of one schema version of an event type to
// the next version.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// TypeOption configures one registration; see SchemaVersion, Upcast and
// Alias.
type TypeOption func(*typeConfig)

type typeConfig struct {
	version   int
	upcasters map[int]Upcaster
	aliases   []string
	errs      []string
}

// Alias lets Decode read events stored under oldName, a name the type had
// before it was renamed, as the registered type. Encode keeps writing the
// current name. Aliased events share the type's schema versions: an event
// stored as oldName at version 1 runs the type's upcasters from 1 on, so
// renaming a type keeps its numbering (bump SchemaVersion and add an
// upcaster if the rename changed the data too). Give Alias once per old
// name. A registration whose alias is its own name, or names twice,
// returns a *RegistrationError matching ErrInvalidRegistration; one whose
// alias is already registered (as a name or as an alias) returns one
// matching ErrDuplicateRegistration, and registers nothing.
//
// Registering the same Go type under two names stays refused: an alias
// is the way to read a second name.
func Alias(oldName string) TypeOption {
	return func(c *typeConfig) {
		if err := checkName(oldName); err != "" {
			c.errs = append(c.errs, fmt.Sprintf("alias %q: %s", oldName, err))
			return
		}
		if slices.Contains(c.aliases, oldName) {
			c.errs = append(c.errs, fmt.Sprintf("alias %q given twice", oldName))
			return
		}
		c.aliases = append(c.aliases, oldName)
	}
}

// checkName returns why name cannot be a stored type name, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty type name"
	case len(name) > MaxEventTypeLength || !utf8.ValidString(name):
		return fmt.Sprintf("type name must be valid UTF-8 of at most %d bytes", MaxEventTypeLength)
	}
	return ""
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
	// Aliases are the old names Decode also reads as this type (see
	// Alias), in registration order; nil when there are none.
	Aliases []string
}

type entry struct {
	info      TypeInfo
	upcasters map[int]Upcaster
	// decode unmarshals into a new T and returns the *T.
	decode func(json.RawMessage) (any, error)
	// elem returns the T a *T from decode or clone points to.
	elem func(any) any
	// clone copies a T or *T given to Encode into a new *T, so a
	// FieldCipher seals the copy, never the caller's value.
	clone func(any) any
}

// FieldCipher transforms chosen fields of event values as they cross the
// registry: Seal runs on a copy of the value (a pointer to it) before Encode
// marshals it, Open on the decoded value (a pointer to it) after Decode
// unmarshals and upcasts it. It lets a package such as eventstore/shred
// encrypt personal data without every reader knowing: aggregates,
// projections and sagas all decode through the registry.
//
// Encode and Decode have no context; they pass context.Background() and the
// cipher bounds its own calls. EncodeContext and DecodeContext pass the
// caller's. Both methods must be safe for concurrent use and must not
// change fields they do not own; an error fails the Encode or Decode with a
// *FieldCipherError.
type FieldCipher interface {
	Seal(ctx context.Context, event any) error
	Open(ctx context.Context, event any) error
}

// Registry maps event type names to Go types and schema versions: it turns
// Go values into Events for appending and RecordedEvents back into Go
// values, upcasting old schema versions on the way. Register every type at
// start-up; a Registry is then safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*entry
	// byAlias holds the old names; no name is in both maps.
	byAlias map[string]*entry
	byType  map[reflect.Type]*entry
	cipher  FieldCipher
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		byName:  make(map[string]*entry),
		byAlias: make(map[string]*entry),
		byType:  make(map[reflect.Type]*entry),
	}
}

// UseFieldCipher makes Encode seal and Decode open every event through c
// (nil: no cipher, the default). Set it at start-up, before the first
// Encode: events encoded without the cipher are stored as they are, and a
// cipher reading them must leave unsealed fields alone.
func (r *Registry) UseFieldCipher(c FieldCipher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cipher = c
}

// Register maps the event type name to the Go type T, which must not be a
// pointer or an interface type: Encode accepts a T or a *T, Decode returns a
// T. Registering a name (or alias) or a Go type twice returns a
// *RegistrationError matching ErrDuplicateRegistration; an unusable
// registration returns one matching ErrInvalidRegistration. A refused
// registration registers nothing, none of its aliases either.
func Register[T any](r *Registry, name string, opts ...TypeOption) error {
	t := reflect.TypeFor[T]()
	bad := func(reason string) error {
		return &RegistrationError{Err: ErrInvalidRegistration, Name: name, GoType: t, Reason: reason}
	}
	if reason := checkName(name); reason != "" {
		return bad(reason)
	}
	switch {
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
	if slices.Contains(cfg.aliases, name) {
		return bad(fmt.Sprintf("alias %q is the type's own name", name))
	}
	e := newEntry[T](TypeInfo{Name: name, GoType: t, SchemaVersion: cfg.version, Aliases: cfg.aliases}, cfg.upcasters)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkFree(e); err != nil {
		return err
	}
	r.byName[name] = e
	for _, a := range cfg.aliases {
		r.byAlias[a] = e
	}
	r.byType[t] = e
	return nil
}

func newEntry[T any](info TypeInfo, upcasters map[int]Upcaster) *entry {
	return &entry{
		info:      info,
		upcasters: upcasters,
		decode: func(data json.RawMessage) (any, error) {
			v := new(T)
			if err := json.Unmarshal(data, v); err != nil {
				return nil, err
			}
			return v, nil
		},
		elem: func(p any) any { return *p.(*T) },
		clone: func(v any) any {
			c := new(T)
			switch x := v.(type) {
			case T:
				*c = x
			case *T:
				*c = *x
			}
			return c
		},
	}
}

// checkFree refuses an entry whose name, aliases or Go type are taken. The
// caller holds r.mu.
func (r *Registry) checkFree(e *entry) error {
	dup := func(reason string) error {
		return &RegistrationError{Err: ErrDuplicateRegistration, Name: e.info.Name, GoType: e.info.GoType, Reason: reason}
	}
	for _, n := range append([]string{e.info.Name}, e.info.Aliases...) {
		what := "name"
		if n != e.info.Name {
			what = fmt.Sprintf("alias %q", n)
		}
		if prev, taken := r.byName[n]; taken {
			return dup(fmt.Sprintf("%s already registered for %v", what, prev.info.GoType))
		}
		if prev, taken := r.byAlias[n]; taken {
			return dup(fmt.Sprintf("%s already an alias of %q (%v)", what, prev.info.Name, prev.info.GoType))
		}
	}
	if prev, taken := r.byType[e.info.GoType]; taken {
		return dup(fmt.Sprintf("Go type already registered as %q", prev.info.Name))
	}
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
// type returns an *UnknownEventTypeError; a FieldCipher failure a
// *FieldCipherError.
func (r *Registry) Encode(v any) (Event, error) {
	return r.EncodeContext(context.Background(), v)
}

// EncodeContext is Encode passing ctx to the registry's FieldCipher.
func (r *Registry) EncodeContext(ctx context.Context, v any) (Event, error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		if reflect.ValueOf(v).IsNil() {
			return Event{}, fmt.Errorf("eventstore: encoding a nil %v", t)
		}
		t = t.Elem()
	}
	r.mu.RLock()
	e, ok := r.byType[t]
	cipher := r.cipher
	r.mu.RUnlock()
	if !ok {
		return Event{}, &UnknownEventTypeError{GoType: t}
	}
	if cipher != nil {
		sealed := e.clone(v)
		if err := cipher.Seal(ctx, sealed); err != nil {
			return Event{}, &FieldCipherError{Op: "seal", Type: e.info.Name, Err: err}
		}
		v = sealed
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
// version to the current one, then the FieldCipher's Open when one is set.
// An event stored under an alias decodes like one stored under the
// current name. It never returns a zero value in place of data it cannot
// read:
//
//   - a type name that is not registered: *UnknownEventTypeError
//     (ErrUnknownEventType);
//   - a schema version below 1, newer than the current one, or older with a
//     missing upcaster on the way: *UnknownSchemaVersionError
//     (ErrUnknownSchemaVersion);
//   - an upcaster error, or data that is empty, null or does not unmarshal
//     into the Go type: *DecodeError (ErrUndecodableEvent);
//   - a FieldCipher failure: *FieldCipherError (ErrFieldCipher).
func (r *Registry) Decode(rec RecordedEvent) (any, error) {
	return r.DecodeContext(context.Background(), rec)
}

// DecodeContext is Decode passing ctx to the registry's FieldCipher.
func (r *Registry) DecodeContext(ctx context.Context, rec RecordedEvent) (any, error) {
	r.mu.RLock()
	e, ok := r.byName[rec.Type]
	if !ok {
		e, ok = r.byAlias[rec.Type]
	}
	cipher := r.cipher
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
	if cipher != nil {
		if err := cipher.Open(ctx, v); err != nil {
			return nil, &FieldCipherError{Op: "open", Type: rec.Type, StreamID: rec.StreamID, Version: rec.Version, EventID: rec.ID.String(), Err: err}
		}
	}
	return e.elem(v), nil
}

// isEmptyOrNull reports data that would unmarshal into a zero value
// without an error.
func isEmptyOrNull(data []byte) bool {
	trimmed := bytes.Trim(data, " \t\r\n")
	return len(trimmed) == 0 || string(trimmed) == "null"
}

// Names returns the current names of the registered types, one per type,
// sorted; aliases are not among them (see StoredNames).
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

// StoredNames returns every name Decode reads, current names and aliases,
// sorted: the Types filter of a subscription that reads every registered
// event, including those stored under old names.
func (r *Registry) StoredNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName)+len(r.byAlias))
	for n := range r.byName {
		names = append(names, n)
	}
	for n := range r.byAlias {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns what is registered under a type name, current or alias:
// for an alias, the TypeInfo's Name is the current name, so name !=
// info.Name tells an alias apart.
func (r *Registry) Lookup(name string) (TypeInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		e, ok = r.byAlias[name]
	}
	if !ok {
		return TypeInfo{}, false
	}
	info := e.info
	info.Aliases = slices.Clone(info.Aliases)
	return info, true
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

// StoredNamesOf returns every name under which events of the Go type T may
// be stored: its registered name first, then its aliases (see Alias). A
// handler of T routes each of them to itself, and a subscription for T
// filters on all of them, so that events recorded under an old name reach
// it too.
func StoredNamesOf[T any](r *Registry) ([]string, bool) {
	name, ok := TypeNameOf[T](r)
	if !ok {
		return nil, false
	}
	info, _ := r.Lookup(name)
	return append([]string{name}, info.Aliases...), true
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

// FieldCipherError reports a FieldCipher failure: Op is "seal" (Encode,
// where only Type is set) or "open" (Decode, with the event's place). Err
// is the cipher's error, reachable with errors.Is and errors.As along with
// ErrFieldCipher.
type FieldCipherError struct {
	Op       string
	Type     string
	StreamID string
	Version  int64
	EventID  string
	Err      error
}

func (e *FieldCipherError) Error() string {
	if e.Op == "seal" {
		return fmt.Sprintf("%v: sealing event %q: %v", ErrFieldCipher, e.Type, e.Err)
	}
	return fmt.Sprintf("%v: opening event %q (stream %q, version %d, ID %s): %v",
		ErrFieldCipher, e.Type, e.StreamID, e.Version, e.EventID, e.Err)
}

// Unwrap makes errors.Is(err, ErrFieldCipher) true and exposes the cause.
func (e *FieldCipherError) Unwrap() []error { return []error{ErrFieldCipher, e.Err} }
