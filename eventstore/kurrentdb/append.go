package kurrentdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

// Append appends events to a stream atomically. In order, an append
//
//   - is validated by eventstore.PrepareAppend (nothing is written on
//     error); with a command, events without an ID get CommandEventID's;
//   - fails with the context's error if ctx is done;
//   - with a command already recorded, returns the recorded result marked
//     Duplicate, or an *eventstore.IdempotencyKeyReusedError if the payload
//     hash differs;
//   - with no events, checks the expected version against the stream's
//     current one (a read) and writes nothing;
//   - otherwise appends at the expected revision: KurrentDB answers a
//     repeat of an earlier append (same event IDs at the same place) with
//     the original events, which the store returns marked Duplicate; a
//     wrong expected version is an *eventstore.ConcurrencyError with the
//     actual version, or an *eventstore.DuplicateEventError when the
//     expected version held and the server refused a partial repeat;
//   - and finally records the command, if any, in its own stream.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	o := eventstore.ApplyAppendOptions(opts)
	if o.Command != nil && o.Command.ID != "" {
		events = withCommandIDs(events, o.Command.ID, streamID)
	}
	prepared, err := eventstore.PrepareAppend(streamID, expected, events, o, s.cfg.MaxEventSize)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if c := o.Command; c != nil {
		h, ok, err := s.HandledCommand(ctx, c.ID)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if ok {
			if !bytes.Equal(h.PayloadHash, c.PayloadHash) {
				return eventstore.AppendResult{}, &eventstore.IdempotencyKeyReusedError{CommandID: c.ID}
			}
			return h.Result, nil
		}
	}
	var res eventstore.AppendResult
	if len(prepared) == 0 {
		res, err = s.appendNothing(ctx, streamID, expected)
	} else {
		res, err = s.appendEvents(ctx, streamID, expected, prepared)
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if !res.Duplicate && len(prepared) > 0 {
		s.changes.Broadcast()
	}
	if c := o.Command; c != nil {
		if err := s.recordCommand(ctx, *c, res); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("kurrentdb: the events of command %q were appended to %q but the command was not recorded (retrying the command with the same events records it): %w", c.ID, streamID, err)
		}
	}
	return res, nil
}

// withCommandIDs returns a copy of events in which zero IDs are replaced by
// the command's deterministic ones.
func withCommandIDs(events []eventstore.Event, commandID, streamID string) []eventstore.Event {
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		if e.ID == uuid.Nil {
			e.ID = CommandEventID(commandID, streamID, i)
		}
		out[i] = e
	}
	return out
}

// appendNothing checks the expected version of an append without events.
// KurrentDB would accept an empty write at a stale exact revision it
// cannot check for idempotency, so the store reads the version instead.
func (s *Store) appendNothing(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.AppendResult, error) {
	rev, _, err := s.lastRevision(ctx, s.name(streamID))
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	actual := rev + 1
	if !expected.Check(actual) {
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	return eventstore.AppendResult{StreamID: streamID, FirstVersion: actual + 1, Version: actual}, nil
}

func streamState(e eventstore.ExpectedVersion) kdb.StreamState {
	switch e.Kind() {
	case eventstore.KindNoStream:
		return kdb.NoStream{}
	case eventstore.KindStreamExists:
		return kdb.StreamExists{}
	case eventstore.KindExact:
		return kdb.StreamRevision{Value: uint64(e.Version() - 1)}
	}
	return kdb.Any{}
}

func (s *Store) appendEvents(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event) (eventstore.AppendResult, error) {
	data, err := toEventData(events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	name := s.name(streamID)
	// The revision before the append tells a fresh write from KurrentDB's
	// idempotent answer, which looks the same: the events of a fresh
	// write always land after it.
	before, _, err := s.lastRevision(ctx, name)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	wr, err := s.client.AppendToStream(ctx, name, kdb.AppendToStreamOptions{StreamState: streamState(expected)}, data...)
	if err != nil {
		return eventstore.AppendResult{}, s.appendError(ctx, streamID, expected, err)
	}
	last := int64(wr.NextExpectedVersion)
	res := eventstore.AppendResult{
		StreamID:     streamID,
		FirstVersion: last + 1 - int64(len(events)) + 1,
		Version:      last + 1,
		Position:     eventstore.Position{Tx: wr.CommitPosition, Seq: wr.PreparePosition},
		Duplicate:    last <= before,
	}
	if res.Position.IsZero() {
		// Older servers answer an idempotent write without a position:
		// the original last event has it.
		events, _, err := s.readStream(ctx, name, kdb.ReadStreamOptions{From: kdb.Revision(uint64(last))}, 1)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if len(events) == 1 {
			p := events[0].Event.Position
			res.Position = eventstore.Position{Tx: p.Commit, Seq: p.Prepare}
		}
	}
	return res, nil
}

func toEventData(events []eventstore.Event) ([]kdb.EventData, error) {
	out := make([]kdb.EventData, len(events))
	for i, e := range events {
		var occurred *time.Time
		if !e.OccurredAt.IsZero() {
			occurred = &e.OccurredAt
		}
		body, err := eventstore.AppendJSONB(nil, e.Data)
		if err != nil {
			return nil, fmt.Errorf("kurrentdb: %w", err) // PrepareAppend validated it
		}
		meta, err := json.Marshal(eventMeta{
			CorrelationID: e.Metadata.CorrelationID,
			CausationID:   e.Metadata.CausationID,
			CommandID:     e.Metadata.CommandID,
			SchemaVersion: e.SchemaVersion,
			Extra:         e.Metadata.Extra,
			OccurredAt:    occurred,
			Values:        e.Metadata.Values,
		})
		if err != nil {
			return nil, fmt.Errorf("kurrentdb: encoding metadata: %w", err)
		}
		out[i] = kdb.EventData{EventID: e.ID, EventType: e.Type, ContentType: kdb.ContentTypeJson, Data: body, Metadata: meta}
	}
	return out, nil
}

// actualRevision finds the current revision in the client's
// wrong-expected-version message, which carries the server's answer.
var actualRevision = regexp.MustCompile(`but got '([^']*)'`)

// appendError maps a failed append.
func (s *Store) appendError(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, err error) error {
	var ke *kdb.Error
	if !errors.As(err, &ke) || ke.Code() != kdb.ErrorCodeWrongExpectedVersion {
		return s.wrap(ctx, "append to "+streamID, err)
	}
	actual, ok := int64(0), false
	if m := actualRevision.FindStringSubmatch(err.Error()); m != nil {
		if m[1] == "no_stream" {
			actual, ok = 0, true
		} else if n, perr := strconv.ParseInt(m[1], 10, 64); perr == nil {
			actual, ok = n+1, true
		}
	}
	if !ok {
		rev, _, rerr := s.lastRevision(ctx, s.name(streamID))
		if rerr != nil {
			return errors.Join(s.wrap(ctx, "append to "+streamID, err), rerr)
		}
		actual = rev + 1
	}
	if expected.Check(actual) {
		// The expected version held, so the server refused the write as
		// a partial repeat: some of its event IDs are in the stream.
		return &eventstore.DuplicateEventError{StreamID: streamID, Reason: "some of the event IDs are already in the stream and the others are not"}
	}
	return &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: actual}
}
