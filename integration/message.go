// Package integration carries a service's events to other services, and
// their messages back in as commands, through a message broker, without
// losing or repeating what matters. It knows no broker: integration/jetstream
// is the NATS JetStream implementation.
//
// # Out: the publisher
//
// A Publisher maps chosen event types to integration messages (Map) and
// hands them to a broker (a Sender). Messages are a public contract: a
// name (Message.Type) and a version of their own, and a body the mapper
// chooses, never the internal event as it is stored. The publisher is a
// projection: registered on a projection.Manager (Publisher.Register), it
// runs under one leader per name across processes, keeps its checkpoint in
// PostgreSQL, and is operated like any projection (status, lag, pause,
// resume, dead letters, retry). It publishes one message at a time in log
// order and waits for the broker's acknowledgement of each before the
// next, so messages reach the broker in log order: in order per key (by
// default the event's stream). Delivery is at least once: a message may be
// published again after a crash or an outage (the checkpoint commits after
// the broker has acknowledged); its ID, the event's ID, lets the broker
// drop the copy within its deduplication window, and the consumer's
// idempotency does the rest.
//
// # In: the inbox
//
// An Inbox turns messages into commands through a command.Dispatcher: a
// decode function per message type (Handle) returns the command; the
// command's ID is derived from the inbox's name and the message's ID
// (CommandID), so a message delivered twice is answered from the command
// log the second time and handled once. The broker's consumer (see
// integration/jetstream) acknowledges a message only once Receive says it
// was handled: after its command's events committed, or when the command
// was a duplicate or rejected by a domain rule.
//
// # Headers
//
// Correlation and causation cross the broker in headers (HeaderCorrelationID,
// HeaderCausationID), so an event appended by the receiving service names,
// in its metadata, the event of the sending service that caused it (the
// dispatcher records the message ID as the command's cause, which lands in
// the events' Metadata.Extra["caused_by"]).
package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Header names of the contract. The publisher sets every one of them; a
// mapper's Headers may not use the Cairn- or Nats- prefixes.
const (
	// HeaderMessageID is the message's ID, the event's ID: what the
	// consumer derives its command ID from. Brokers with a deduplication
	// header (NATS: Nats-Msg-Id) get it there too.
	HeaderMessageID = "Cairn-Message-Id"
	// HeaderType is the contract's name (Message.Type).
	HeaderType = "Cairn-Type"
	// HeaderVersion is the contract's version (Message.Version), decimal.
	HeaderVersion = "Cairn-Version"
	// HeaderKey is the ordering key (Message.Key).
	HeaderKey = "Cairn-Key"
	// HeaderCorrelationID ties the message to the request that started the
	// work: the event's correlation ID.
	HeaderCorrelationID = "Cairn-Correlation-Id"
	// HeaderCausationID is what caused the message: the event's ID.
	HeaderCausationID = "Cairn-Causation-Id"
	// HeaderOccurredAt is when the event was recorded, RFC 3339 with
	// nanoseconds, UTC.
	HeaderOccurredAt = "Cairn-Occurred-At"
	// HeaderContentType is always application/json.
	HeaderContentType = "Content-Type"
	// HeaderTraceparent is the W3C Trace Context header: the publisher's
	// span (a child of the event's), which the inbox's span continues.
	// Set only when tracing is on.
	HeaderTraceparent = "traceparent"
)

// ContentType of every message body.
const ContentType = "application/json"

// Errors.
var (
	// ErrInvalidMessage: a mapper returned a message that cannot be
	// published (no type, a bad subject or version, a reserved header, a
	// body that does not encode). It is a mapping failure: retried, then
	// dead-lettered.
	ErrInvalidMessage = errors.New("integration: invalid message")
	// ErrSkip, returned by a mapper, publishes nothing for the event and
	// moves on: for events of a mapped type that the contract leaves out.
	ErrSkip = errors.New("integration: skip this event")
	// ErrUndeliverable: the broker refused the message itself (too large,
	// say) rather than being unavailable. A Sender wraps it; the publisher
	// treats it as a mapping failure (retried, then dead-lettered) instead
	// of waiting for the broker.
	ErrUndeliverable = errors.New("integration: the broker refused the message")
	// ErrNoHandler: an inbox has no handler for a message type.
	ErrNoHandler = errors.New("integration: no handler for message type")
	// ErrPanic: an inbox's handler panicked.
	ErrPanic = errors.New("integration: handler panicked")
)

// Message is an integration message: what a mapper returns for an event,
// and what an inbox's handler receives.
type Message struct {
	// Type names the contract, in the publishing service's public
	// vocabulary ("OrderPaid", "orders.OrderPaid"). Required: printable,
	// no spaces.
	Type string
	// Version of the contract (default 1). Bump it on a change a consumer
	// must know of; consumers read it from the message they receive.
	Version int
	// Key orders messages: those of one key reach the broker in the order
	// of their events. Default: the event's stream ID.
	Key string
	// Subject is where the message is published. Default: the
	// publisher's subject prefix, a dot, and Type.
	Subject string
	// Data is the body, encoded as JSON (a json.RawMessage goes as it
	// is). On receipt it is the body as a json.RawMessage.
	Data any
	// Headers are extra headers. Names starting with Cairn- or Nats- are
	// reserved (see the Header constants).
	Headers map[string]string

	// Set by the publisher from the event (a mapper's values are
	// ignored), read from the headers on receipt.

	// ID is the message's ID: the event's ID.
	ID string
	// CorrelationID is the event's correlation ID (its ID when it has
	// none).
	CorrelationID string
	// CausationID is what caused the message: the event's ID.
	CausationID string
	// OccurredAt is when the event was recorded (zero when a received
	// message does not say).
	OccurredAt time.Time
}

// Envelope is a message as it crosses the broker: an ID, a subject,
// headers and a JSON body. Publisher hands one to its Sender; a broker's
// consumer builds one and reads it with Decode.
type Envelope struct {
	// ID is the message's ID, for the broker's deduplication.
	ID      string
	Subject string
	Headers map[string]string
	Data    []byte
}

// Receipt is the broker's acknowledgement of a sent message.
type Receipt struct {
	// Duplicate: the broker had the message already (same ID within its
	// deduplication window) and dropped this copy.
	Duplicate bool
	// Sequence is the message's position in the broker, when it has one.
	Sequence uint64
}

// Decode reads a received envelope as a Message. What the headers do not
// say is filled in: Type from the subject, Version 1, Key from the
// subject, ID from the envelope's ID (the broker's ID, when the publisher
// was not Cairn's). Data is the body as a json.RawMessage; Headers holds
// the headers that are not the contract's own.
func Decode(env Envelope) Message {
	h := env.Headers
	m := Message{
		Type:          h[HeaderType],
		Key:           h[HeaderKey],
		Subject:       env.Subject,
		Data:          json.RawMessage(env.Data),
		ID:            h[HeaderMessageID],
		CorrelationID: h[HeaderCorrelationID],
		CausationID:   h[HeaderCausationID],
	}
	if m.Type == "" {
		m.Type = env.Subject
	}
	if m.Key == "" {
		m.Key = env.Subject
	}
	if m.ID == "" {
		m.ID = env.ID
	}
	m.Version, _ = strconv.Atoi(h[HeaderVersion])
	if m.Version < 1 {
		m.Version = 1
	}
	if at, err := time.Parse(time.RFC3339Nano, h[HeaderOccurredAt]); err == nil {
		m.OccurredAt = at
	}
	for k, v := range h {
		if reserved(k) || strings.EqualFold(k, HeaderContentType) {
			continue
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[k] = v
	}
	return m
}

// encode checks a complete message (defaults applied) and builds its
// envelope.
func encode(m Message) (Envelope, error) {
	if err := validType(m.Type); err != nil {
		return Envelope{}, err
	}
	if m.Version < 1 {
		return Envelope{}, fmt.Errorf("%w: %s has version %d, want 1 or more", ErrInvalidMessage, m.Type, m.Version)
	}
	if err := ValidSubject(m.Subject); err != nil {
		return Envelope{}, err
	}
	data, err := json.Marshal(m.Data)
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: %s: encoding its data: %w", ErrInvalidMessage, m.Type, err)
	}
	h := make(map[string]string, len(m.Headers)+8)
	for k, v := range m.Headers {
		if reserved(k) || strings.EqualFold(k, HeaderContentType) {
			return Envelope{}, fmt.Errorf("%w: %s: header %q is reserved", ErrInvalidMessage, m.Type, k)
		}
		h[k] = v
	}
	h[HeaderMessageID] = m.ID
	h[HeaderType] = m.Type
	h[HeaderVersion] = strconv.Itoa(m.Version)
	h[HeaderKey] = m.Key
	h[HeaderCorrelationID] = m.CorrelationID
	h[HeaderCausationID] = m.CausationID
	h[HeaderOccurredAt] = m.OccurredAt.UTC().Format(time.RFC3339Nano)
	h[HeaderContentType] = ContentType
	return Envelope{ID: m.ID, Subject: m.Subject, Headers: h, Data: data}, nil
}

// reserved tells the header names the contract and the broker own.
func reserved(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "cairn-") || strings.HasPrefix(l, "nats-")
}

func validType(t string) error {
	if t == "" {
		return fmt.Errorf("%w: no Type", ErrInvalidMessage)
	}
	if strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return fmt.Errorf("%w: type %q has spaces or unprintable characters", ErrInvalidMessage, t)
	}
	return nil
}

// ValidSubject checks a subject to publish on: dot-separated tokens, none
// empty, no spaces, no wildcards (* and >).
func ValidSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalidMessage)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" ||
			strings.ContainsFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
			return fmt.Errorf("%w: subject %q (want dot-separated tokens, none empty, without spaces or wildcards)", ErrInvalidMessage, s)
		}
	}
	return nil
}
