package command

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/google/uuid"
)

// Envelope carries a command and the identifiers that travel with it.
//
// ID is the idempotency key: every submission of the same command must carry
// the same ID, and Dispatch generates a UUIDv7 when it is empty. It must be 1
// to eventstore.MaxCommandIDLength printable UTF-8 bytes. CorrelationID ties
// the command to the request that started the work; empty means the command's
// own ID. CausationID names the message that caused this command (an event ID
// when a process manager sends it), if any. Metadata is free-form and is
// available to handlers through EnvelopeFrom.
type Envelope struct {
	ID            string
	CorrelationID string
	CausationID   string
	Metadata      map[string]string
	Payload       any
}

// Type returns the command type name of the payload (see TypeName).
func (e Envelope) Type() string { return TypeName(e.Payload) }

// Result is the outcome of a dispatched command: the stream the handler
// appended to, its version and the position of the last event appended, a
// token for read-your-writes. Duplicate reports that the command had been
// handled before and that this is the original result; nothing new was
// written. A command that appended nothing has a zero StreamID, Version and
// Position. Events is the number of events the command appended when it was
// handled (a duplicate reports the original count, but appended nothing
// now), for metrics; it is not part of the JSON form.
type Result struct {
	CommandID string              `json:"command_id"`
	StreamID  string              `json:"stream_id,omitempty"`
	Version   int64               `json:"version,omitempty"`
	Position  eventstore.Position `json:"position"`
	Duplicate bool                `json:"duplicate,omitempty"`
	Events    int64               `json:"-"`
}

// Namer is implemented by commands whose type name is not their Go type's
// name.
type Namer interface {
	CommandName() string
}

// TypeName returns the type name of a command: what its CommandName method
// returns if it has one (on the value or on a pointer to it), otherwise its
// Go type's name without the package (the element type's name for a
// pointer). It returns "" for nil.
func TypeName(cmd any) string {
	if cmd == nil {
		return ""
	}
	if n, ok := asInterface[Namer](cmd); ok {
		return n.CommandName()
	}
	return goTypeName(reflect.TypeOf(cmd))
}

func goTypeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer && t.Name() == "" {
		t = t.Elem()
	}
	if n := t.Name(); n != "" {
		return n
	}
	return t.String()
}

// asInterface returns v as an I, also when only *T (for v of type T)
// implements I, by calling through a pointer to a copy of v.
func asInterface[I any](v any) (I, bool) {
	if i, ok := v.(I); ok {
		return i, true
	}
	var zero I
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() == reflect.Pointer || !reflect.PointerTo(rv.Type()).Implements(reflect.TypeFor[I]()) {
		return zero, false
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	return p.Interface().(I), true
}

// PayloadHash returns the SHA-256 of the command's type name and the JSON
// encoding of its payload: what the store keeps with a command record to
// recognise a reused ID. The name is part of it so that two command types
// with byte-identical payloads under one ID are told apart by the store too.
func PayloadHash(payload any) ([]byte, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte(TypeName(payload)))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}

type envelopeKey struct{}

// EnvelopeFrom returns the envelope of the command being handled, as
// completed by Dispatch (ID and CorrelationID filled in). Handlers and
// middleware find it in their context.
func EnvelopeFrom(ctx context.Context) (Envelope, bool) {
	e, ok := ctx.Value(envelopeKey{}).(Envelope)
	return e, ok
}

// envelopeOf turns Dispatch's argument into a complete envelope.
func envelopeOf(cmd any) (Envelope, error) {
	var env Envelope
	switch c := cmd.(type) {
	case Envelope:
		env = c
	case *Envelope:
		if c == nil {
			return Envelope{}, &ValidationError{Err: errNilCommand}
		}
		env = *c
	default:
		env = Envelope{Payload: cmd}
	}
	if env.Payload == nil {
		return Envelope{}, &ValidationError{CommandID: env.ID, Err: errNilCommand}
	}
	if env.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return Envelope{}, fmt.Errorf("command: generating command ID: %w", err)
		}
		env.ID = id.String()
	} else if !validCommandID(env.ID) {
		return Envelope{}, &ValidationError{CommandType: env.Type(), CommandID: env.ID, Err: errBadCommandID}
	}
	if env.CorrelationID == "" {
		env.CorrelationID = env.ID
	}
	return env, nil
}

// validCommandID applies the event store's rule for command IDs, so that a
// bad ID fails before any work rather than at the append.
func validCommandID(id string) bool {
	return id != "" && len(id) <= eventstore.MaxCommandIDLength && utf8.ValidString(id) &&
		!strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
