package kurrentdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

// commandHandledType is the event type of a command record.
const commandHandledType = "CairnCommandHandled"

// commandRecord is the data of a command record.
type commandRecord struct {
	CommandID    string              `json:"command_id"`
	Type         string              `json:"type,omitempty"`
	PayloadHash  []byte              `json:"payload_hash,omitempty"`
	StreamID     string              `json:"stream_id"`
	FirstVersion int64               `json:"first_version"`
	Version      int64               `json:"version"`
	Position     eventstore.Position `json:"position"`
}

// recordCommand writes the command's record as the first event of its own
// stream. The record's event ID is derived from the command ID, so a
// repeated write is answered idempotently; a stream that already has a
// (different) record keeps it: the first record wins.
func (s *Store) recordCommand(ctx context.Context, c eventstore.CommandRecord, res eventstore.AppendResult) error {
	data, err := json.Marshal(commandRecord{
		CommandID:    c.ID,
		Type:         c.Type,
		PayloadHash:  c.PayloadHash,
		StreamID:     res.StreamID,
		FirstVersion: res.FirstVersion,
		Version:      res.Version,
		Position:     res.Position,
	})
	if err != nil {
		return fmt.Errorf("kurrentdb: encoding command record: %w", err)
	}
	id := uuid.NewSHA1(deterministicNamespace, []byte("command\x00"+c.ID))
	_, err = s.client.AppendToStream(ctx, s.commandStream(c.ID), kdb.AppendToStreamOptions{StreamState: kdb.NoStream{}},
		kdb.EventData{EventID: id, EventType: commandHandledType, ContentType: kdb.ContentTypeJson, Data: data})
	var ke *kdb.Error
	if errors.As(err, &ke) && ke.Code() == kdb.ErrorCodeWrongExpectedVersion {
		return nil
	}
	if err != nil {
		return s.wrap(ctx, "record command "+c.ID, err)
	}
	return nil
}

// HandledCommand returns the record of a command whose append succeeded and
// was recorded (see the package documentation for the window in which an
// append has succeeded but is not recorded yet).
func (s *Store) HandledCommand(ctx context.Context, commandID string) (eventstore.HandledCommand, bool, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.HandledCommand{}, false, err
	}
	if commandID == "" {
		return eventstore.HandledCommand{}, false, nil
	}
	events, found, err := s.readStream(ctx, s.commandStream(commandID), kdb.ReadStreamOptions{From: kdb.Start{}}, 1)
	if err != nil || !found || len(events) == 0 {
		return eventstore.HandledCommand{}, false, err
	}
	var r commandRecord
	if err := json.Unmarshal(events[0].Event.Data, &r); err != nil {
		return eventstore.HandledCommand{}, false, fmt.Errorf("kurrentdb: command record of %q: %w", commandID, err)
	}
	if r.CommandID != commandID {
		return eventstore.HandledCommand{}, false, fmt.Errorf("kurrentdb: command record stream of %q holds command %q", commandID, r.CommandID)
	}
	return eventstore.HandledCommand{
		CommandID:   r.CommandID,
		Type:        r.Type,
		PayloadHash: r.PayloadHash,
		Result: eventstore.AppendResult{
			StreamID:     r.StreamID,
			FirstVersion: r.FirstVersion,
			Version:      r.Version,
			Position:     r.Position,
			Duplicate:    true,
		},
	}, true, nil
}
