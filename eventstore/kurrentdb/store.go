package kurrentdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
	_ eventstore.Notifier      = (*Store)(nil)
)

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// StreamPrefix, when set, namespaces the store inside a shared
	// KurrentDB: Cairn stream S is KurrentDB stream StreamPrefix+S, and
	// the store's log holds only streams with the prefix. Empty: no
	// prefix, the log is every stream whose name is a valid Cairn
	// stream ID.
	StreamPrefix string
	// MaxEventSize bounds one event's data plus metadata, in bytes (see
	// eventstore.PrepareAppend). Zero: eventstore.DefaultMaxEventSize.
	MaxEventSize int
	// SnapshotsKept is the $maxCount the store sets on a snapshot stream
	// when it creates it, so that the server may scavenge older
	// snapshots. Zero: 1.
	SnapshotsKept int
	// ReconnectDelay is the pause before the live-change watcher
	// resubscribes after its subscription drops. Zero: one second.
	ReconnectDelay time.Duration
	// WatchReadyTimeout bounds how long the first Changes call waits for
	// the watcher's subscription to be confirmed. Zero: five seconds.
	WatchReadyTimeout time.Duration
}

// Store is a Cairn event store on KurrentDB. Create it with New and stop
// it with Close; the client it was given stays open.
type Store struct {
	client *kdb.Client
	cfg    Config
	// userStreams matches the KurrentDB names of the store's streams.
	userStreams string

	changes eventstore.Broadcaster

	watchOnce  sync.Once
	watchCtx   context.Context
	stopWatch  context.CancelFunc
	watchReady chan struct{}
	readyOnce  sync.Once
	watchDone  sync.WaitGroup
	closeOnce  sync.Once
}

// New returns a store on client, which the caller created and closes
// (after closing the store).
func New(client *kdb.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("kurrentdb: nil client")
	}
	if cfg.MaxEventSize <= 0 {
		cfg.MaxEventSize = eventstore.DefaultMaxEventSize
	}
	if cfg.SnapshotsKept <= 0 {
		cfg.SnapshotsKept = 1
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = time.Second
	}
	if cfg.WatchReadyTimeout <= 0 {
		cfg.WatchReadyTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		client:      client,
		cfg:         cfg,
		userStreams: "^" + regexp.QuoteMeta(cfg.StreamPrefix) + streamIDClass + "+$",
		watchCtx:    ctx,
		stopWatch:   cancel,
		watchReady:  make(chan struct{}),
	}, nil
}

// Close stops the store's live-change watcher. It does not close the
// client. Subscriptions opened earlier stop receiving wake-ups and fall
// back to their poll interval.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.stopWatch()
		s.watchDone.Wait()
	})
}

// streamIDClass is the regular-expression class of the characters a Cairn
// stream ID may contain (eventstore.StreamIDCharacters); it means the same
// in Go's and .NET's syntax.
const streamIDClass = `[-A-Za-z0-9_.:@]`

// Bookkeeping streams have a '/' in their names, which no Cairn stream ID
// has, so they never collide with a Cairn stream nor match the log's
// filters.
const (
	commandStreamPrefix  = "cairn/commands/"
	snapshotStreamPrefix = "cairn/snapshots/"
)

// name is the KurrentDB stream of a Cairn stream.
func (s *Store) name(streamID string) string { return s.cfg.StreamPrefix + streamID }

// cairnID is the Cairn stream ID of a KurrentDB stream, false for streams
// outside the store's log: system streams ($...), bookkeeping streams,
// and streams without the prefix.
func (s *Store) cairnID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, s.cfg.StreamPrefix)
	if !ok || eventstore.ValidateStreamID(id) != nil {
		return "", false
	}
	return id, true
}

func (s *Store) commandStream(commandID string) string {
	sum := sha256.Sum256([]byte(commandID))
	return commandStreamPrefix + s.cfg.StreamPrefix + hex.EncodeToString(sum[:])
}

func (s *Store) snapshotStream(streamID string) string {
	return snapshotStreamPrefix + s.cfg.StreamPrefix + streamID
}

// eventMeta is the JSON metadata of every event the store writes. Its
// top-level keys are the store's own (the caller's free-form metadata is
// nested under extra), so occurred_at, which KurrentDB has no field for,
// cannot collide with anything a caller puts there. It is absent when the
// event gave no time: the event then occurred when it was recorded.
type eventMeta struct {
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	CommandID     string            `json:"command_id,omitempty"`
	SchemaVersion int               `json:"schema_version"`
	Extra         map[string]string `json:"extra,omitempty"`
	OccurredAt    *time.Time        `json:"occurred_at,omitempty"`
	// Values is written compacted by encoding/json; recorded puts each
	// value back in jsonb's form.
	Values map[string]json.RawMessage `json:"values,omitempty"`
}

// recorded converts an event read from KurrentDB; ok is false for events
// outside the store's log.
func (s *Store) recorded(ev *kdb.ResolvedEvent) (eventstore.RecordedEvent, bool, error) {
	e := ev.Event
	if e == nil || strings.HasPrefix(e.EventType, "$") {
		return eventstore.RecordedEvent{}, false, nil
	}
	id, ok := s.cairnID(e.StreamID)
	if !ok {
		return eventstore.RecordedEvent{}, false, nil
	}
	m := eventMeta{SchemaVersion: 1}
	var err error
	if len(e.UserMetadata) > 0 {
		if err = json.Unmarshal(e.UserMetadata, &m); err != nil {
			return eventstore.RecordedEvent{}, false, fmt.Errorf("kurrentdb: metadata of event %s in %q: %w", e.EventID, e.StreamID, err)
		}
	}
	for k, v := range m.Values {
		if m.Values[k], err = eventstore.AppendJSONB(nil, v); err != nil {
			return eventstore.RecordedEvent{}, false, fmt.Errorf("kurrentdb: metadata value %q of event %s in %q: %w", k, e.EventID, e.StreamID, err)
		}
	}
	recordedAt := e.CreatedDate.UTC().Truncate(time.Microsecond)
	occurredAt := recordedAt
	if m.OccurredAt != nil {
		occurredAt = m.OccurredAt.UTC().Truncate(time.Microsecond)
	}
	return eventstore.RecordedEvent{
		ID:            e.EventID,
		StreamID:      id,
		Version:       int64(e.EventNumber) + 1,
		Position:      eventstore.Position{Tx: e.Position.Commit, Seq: e.Position.Prepare},
		Type:          e.EventType,
		SchemaVersion: max(m.SchemaVersion, 1),
		Data:          e.Data,
		Metadata: eventstore.Metadata{
			CorrelationID: m.CorrelationID,
			CausationID:   m.CausationID,
			CommandID:     m.CommandID,
			Extra:         m.Extra,
			Values:        m.Values,
		},
		RecordedAt: recordedAt,
		OccurredAt: occurredAt,
	}, true, nil
}

// readStream reads up to count events of a KurrentDB stream; found is
// false when the stream does not exist.
func (s *Store) readStream(ctx context.Context, name string, opts kdb.ReadStreamOptions, count uint64) (events []*kdb.ResolvedEvent, found bool, err error) {
	rs, err := s.client.ReadStream(ctx, name, opts, count)
	if err != nil {
		return nil, false, s.wrap(ctx, "read stream "+name, err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return events, true, nil
		}
		if err != nil {
			if isNotFound(err) {
				return nil, false, nil
			}
			return nil, false, s.wrap(ctx, "read stream "+name, err)
		}
		events = append(events, ev)
	}
}

// lastRevision is the revision of a stream's last event, -1 when the
// stream does not exist.
func (s *Store) lastRevision(ctx context.Context, name string) (int64, *kdb.ResolvedEvent, error) {
	events, found, err := s.readStream(ctx, name, kdb.ReadStreamOptions{Direction: kdb.Backwards, From: kdb.End{}}, 1)
	if err != nil || !found || len(events) == 0 {
		return -1, nil, err
	}
	return int64(events[0].Event.EventNumber), events[0], nil
}

func isNotFound(err error) bool {
	var ke *kdb.Error
	return errors.As(err, &ke) && ke.Code() == kdb.ErrorCodeResourceNotFound
}

// wrap adds context to a client error, reporting the context's own error
// when it ended the call, so that errors.Is(err, context.Canceled) holds.
// The server may give up on the caller's deadline a moment before the
// caller's own timer fires: its DeadlineExceeded is the context's then.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("kurrentdb: %s: %w", op, cerr)
	}
	var ke *kdb.Error
	if _, ok := ctx.Deadline(); ok && errors.As(err, &ke) && ke.Code() == kdb.ErrorCodeDeadlineExceeded {
		return fmt.Errorf("kurrentdb: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("kurrentdb: %s: %w", op, err)
}

func dedupe(keys []string) []string {
	if len(keys) < 2 {
		return keys
	}
	out := slices.Clone(keys)
	slices.Sort(out)
	return slices.Compact(out)
}

// deterministicNamespace seeds the event IDs the store derives from a
// command ID.
var deterministicNamespace = uuid.MustParse("6f1c8a52-3d0e-4c1b-9a57-2b8e4d7c9f10")

// CommandEventID is the event ID the store gives the index-th event of an
// append to streamID that carries commandID and leaves the event's ID
// zero. A retry of the command that regenerates its events gets the same
// IDs, which is what lets KurrentDB recognise the retry (see the package
// documentation).
func CommandEventID(commandID, streamID string, index int) uuid.UUID {
	return uuid.NewSHA1(deterministicNamespace, fmt.Appendf(nil, "event\x00%s\x00%s\x00%d", commandID, streamID, index))
}
