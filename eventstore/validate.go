package eventstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on what an append may contain.
const (
	// MaxStreamIDLength is the longest stream ID, in bytes.
	MaxStreamIDLength = 200
	// MaxEventTypeLength is the longest event type name, in bytes.
	MaxEventTypeLength = 200
	// MaxCommandIDLength is the longest command ID, in bytes.
	MaxCommandIDLength = 200
	// DefaultMaxEventSize bounds one event's data plus metadata.
	DefaultMaxEventSize = 1 << 20
)

// The years an Event.OccurredAt may fall in: those every store can keep
// and encoding/json can write (RFC 3339 has four-digit years).
const (
	minOccurredYear = 1
	maxOccurredYear = 9999
)

// StreamIDCharacters documents the characters a stream ID may contain.
const StreamIDCharacters = "A-Z a-z 0-9 - _ . : @"

// Category returns the category of a stream: the part of its ID before the
// first '-' (an ID without '-' is its own category). "order-123" is in
// category "order".
func Category(streamID string) string {
	cat, _, _ := strings.Cut(streamID, "-")
	return cat
}

// ValidateStreamID checks a stream ID against the documented rules.
func ValidateStreamID(streamID string) error {
	bad := func(reason string) error {
		return &ValidationError{Err: ErrInvalidStreamID, StreamID: streamID, Index: -1, Reason: reason}
	}
	if streamID == "" {
		return bad("empty")
	}
	if len(streamID) > MaxStreamIDLength {
		return bad(fmt.Sprintf("longer than %d bytes", MaxStreamIDLength))
	}
	for i := 0; i < len(streamID); i++ {
		if !streamIDByte(streamID[i]) {
			return bad(fmt.Sprintf("character %q at byte %d is outside [%s]", streamID[i], i, StreamIDCharacters))
		}
	}
	return nil
}

func streamIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '_' || c == '.' || c == ':' || c == '@'
}

// PrepareAppend validates an append and fills defaults (event IDs, schema
// versions) in a copy of events, so every store applies the same rules. In
// the copy, OccurredAt is in UTC and whole microseconds and Metadata.Values
// is a map of its own with its values in jsonb's form (see AppendJSONB);
// Metadata.Extra is still the caller's map.
// maxEventSize zero means DefaultMaxEventSize.
func PrepareAppend(streamID string, expected ExpectedVersion, events []Event, opts AppendOptions, maxEventSize int) ([]Event, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if expected.kind == KindExact && expected.version < 0 {
		return nil, &ValidationError{Err: ErrInvalidExpectedVersion, StreamID: streamID, Index: -1, Reason: fmt.Sprintf("exact version %d is negative", expected.version)}
	}
	if c := opts.Command; c != nil {
		if c.ID == "" || len(c.ID) > MaxCommandIDLength || !utf8.ValidString(c.ID) || strings.ContainsFunc(c.ID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, &ValidationError{Err: ErrInvalidEvent, StreamID: streamID, Index: -1, Reason: fmt.Sprintf("command ID must be 1 to %d printable UTF-8 bytes", MaxCommandIDLength)}
		}
	}
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	out := make([]Event, len(events))
	seen := make(map[uuid.UUID]struct{}, len(events))
	for i, e := range events {
		bad := func(sentinel error, reason string) error {
			return &ValidationError{Err: sentinel, StreamID: streamID, Index: i, Reason: reason}
		}
		if e.Type == "" {
			return nil, bad(ErrInvalidEvent, "empty event type")
		}
		if len(e.Type) > MaxEventTypeLength || !utf8.ValidString(e.Type) {
			return nil, bad(ErrInvalidEvent, fmt.Sprintf("event type must be valid UTF-8 of at most %d bytes", MaxEventTypeLength))
		}
		if strings.IndexByte(e.Type, 0) >= 0 {
			return nil, bad(ErrInvalidEvent, "event type contains a NUL character, which PostgreSQL cannot store")
		}
		if e.SchemaVersion < 0 {
			return nil, bad(ErrInvalidEvent, "negative schema version")
		}
		if e.SchemaVersion == 0 {
			e.SchemaVersion = 1
		}
		if len(e.Data) == 0 {
			e.Data = json.RawMessage("{}")
		}
		if !json.Valid(e.Data) {
			return nil, bad(ErrInvalidEvent, "data is not valid JSON")
		}
		// What jsonb and text columns refuse is refused here, typed, so
		// that every store answers it alike (see jsonb.go).
		if reason := jsonTextProblem(e.Data); reason != "" {
			return nil, bad(ErrInvalidEvent, "data "+reason)
		}
		if reason := metadataProblem(e.Metadata); reason != "" {
			return nil, bad(ErrInvalidEvent, reason)
		}
		values, err := jsonbValues(e.Metadata.Values)
		if err != nil {
			return nil, err
		}
		e.Metadata.Values = values
		if !e.OccurredAt.IsZero() {
			// PostgreSQL keeps microseconds; every store keeps what it does.
			e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
			if y := e.OccurredAt.Year(); y < minOccurredYear || y > maxOccurredYear {
				return nil, bad(ErrInvalidEvent, fmt.Sprintf("occurred_at %s is outside the years %d to %d", e.OccurredAt.Format(time.RFC3339Nano), minOccurredYear, maxOccurredYear))
			}
		}
		size := len(e.Data) + len(e.Metadata.CorrelationID) + len(e.Metadata.CausationID) + len(e.Metadata.CommandID)
		for k, v := range e.Metadata.Extra {
			size += len(k) + len(v)
		}
		for k, v := range e.Metadata.Values {
			size += len(k) + len(v)
		}
		if size > maxEventSize {
			return nil, bad(ErrEventTooLarge, fmt.Sprintf("%d bytes exceeds the limit of %d", size, maxEventSize))
		}
		if e.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("eventstore: generating event ID: %w", err)
			}
			e.ID = id
		}
		if _, dup := seen[e.ID]; dup {
			return nil, bad(ErrDuplicateEvent, "event ID repeated within the batch")
		}
		seen[e.ID] = struct{}{}
		out[i] = e
	}
	return out, nil
}
