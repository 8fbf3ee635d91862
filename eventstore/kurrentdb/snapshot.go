package kurrentdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

// snapshotType is the event type of a snapshot.
const snapshotType = "CairnSnapshot"

// snapshotMeta is the metadata of a snapshot event; the event's data is
// the snapshot's data.
type snapshotMeta struct {
	StreamID      string `json:"stream_id"`
	Version       int64  `json:"version"`
	Type          string `json:"type,omitempty"`
	SchemaVersion int    `json:"schema_version"`
}

// snapshotRetries bounds the retries of a snapshot save that races another.
const snapshotRetries = 10

// SaveSnapshot appends s to the stream's snapshot stream unless its last
// snapshot has a higher version (at an equal version the newer save wins).
// The append expects the revision it read, so two savers racing cannot
// put an older snapshot after a newer one. When it creates the snapshot
// stream it sets $maxCount to Config.SnapshotsKept, so that the server may
// scavenge older snapshots. TakenAt is the server's time of the append.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(snap); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := eventstore.AppendJSONB(nil, snap.Data)
	if err != nil {
		return fmt.Errorf("kurrentdb: %w", err)
	}
	meta, err := json.Marshal(snapshotMeta{StreamID: snap.StreamID, Version: snap.Version, Type: snap.Type, SchemaVersion: snap.SchemaVersion})
	if err != nil {
		return fmt.Errorf("kurrentdb: encoding snapshot metadata: %w", err)
	}
	name := s.snapshotStream(snap.StreamID)
	for range snapshotRetries {
		rev, last, err := s.lastRevision(ctx, name)
		if err != nil {
			return err
		}
		var state kdb.StreamState = kdb.NoStream{}
		if last != nil {
			old, err := decodeSnapshot(last)
			if err != nil {
				return err
			}
			if old.Version > snap.Version {
				return nil
			}
			state = kdb.StreamRevision{Value: uint64(rev)}
		}
		_, err = s.client.AppendToStream(ctx, name, kdb.AppendToStreamOptions{StreamState: state},
			kdb.EventData{EventType: snapshotType, ContentType: kdb.ContentTypeJson, Data: data, Metadata: meta})
		var ke *kdb.Error
		if errors.As(err, &ke) && ke.Code() == kdb.ErrorCodeWrongExpectedVersion {
			continue // another save came first: look again
		}
		if err != nil {
			return s.wrap(ctx, "save snapshot of "+snap.StreamID, err)
		}
		if last == nil {
			var m kdb.StreamMetadata
			m.SetMaxCount(uint64(s.cfg.SnapshotsKept))
			if _, err := s.client.SetStreamMetadata(ctx, name, kdb.AppendToStreamOptions{}, m); err != nil {
				return s.wrap(ctx, "set $maxCount of "+name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("kurrentdb: save snapshot of %q: %d concurrent saves in a row won the race", snap.StreamID, snapshotRetries)
}

// LoadSnapshot returns the latest snapshot of a stream.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string) (eventstore.Snapshot, bool, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, false, err
	}
	if eventstore.ValidateStreamID(streamID) != nil {
		return eventstore.Snapshot{}, false, nil
	}
	_, last, err := s.lastRevision(ctx, s.snapshotStream(streamID))
	if err != nil || last == nil {
		return eventstore.Snapshot{}, false, err
	}
	snap, err := decodeSnapshot(last)
	return snap, err == nil, err
}

func decodeSnapshot(ev *kdb.ResolvedEvent) (eventstore.Snapshot, error) {
	var m snapshotMeta
	if err := json.Unmarshal(ev.Event.UserMetadata, &m); err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("kurrentdb: snapshot metadata in %q: %w", ev.Event.StreamID, err)
	}
	return eventstore.Snapshot{
		StreamID:      m.StreamID,
		Version:       m.Version,
		Type:          m.Type,
		SchemaVersion: m.SchemaVersion,
		Data:          ev.Event.Data,
		TakenAt:       ev.Event.CreatedDate.UTC().Truncate(time.Microsecond),
	}, nil
}
