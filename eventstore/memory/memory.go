// Package memory is a complete, goroutine-safe, in-memory event store.
//
// A Store implements eventstore.Store, eventstore.SnapshotStore and
// eventstore.EventReader with the same semantics as the PostgreSQL store (it
// passes the acceptance suites in eventstore/storetest), so it serves for
// tests, examples and embedding.
// Nothing is persisted: the log lives as long as the Store value.
//
// The log is one slice in position order. Every append takes a write lock,
// so a reader always sees a prefix of the log and positions are handed out
// in commit order: Position.Tx counts appends and Position.Seq counts events,
// both from 1. ReadLog finds its start by binary search and answers filtered
// reads from per-type and per-category indexes, so a filtered subscription
// costs what it delivers, not the size of the log. Reads return deep copies:
// a caller may modify what it gets without changing the store.
package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cairn-es/cairn/eventstore"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
	_ eventstore.Notifier      = (*Store)(nil)
	_ eventstore.EventReader   = (*Store)(nil)
)

// Config configures a Store. The zero value is usable: every field has a
// documented default.
type Config struct {
	// MaxEventSize bounds one event's data plus metadata, in bytes (see
	// eventstore.PrepareAppend). Zero or less: eventstore.DefaultMaxEventSize,
	// the PostgreSQL store's default, so the two stores reject the same
	// events.
	MaxEventSize int
}

// Store is an in-memory event store. The zero value is not usable; call New.
type Store struct {
	maxEventSize int

	mu       sync.RWMutex
	log      []eventstore.RecordedEvent // the whole log, in position order
	streams  map[string][]int           // stream ID -> indexes into log, in version order
	ids      map[uuid.UUID]int          // event ID -> index into log
	byType   map[string][]int           // event type -> indexes into log, ascending
	byCat    map[string][]int           // category -> indexes into log, ascending
	commands map[string]eventstore.HandledCommand
	lastTx   uint64

	snapMu    sync.RWMutex
	snapshots map[string]eventstore.Snapshot

	changes eventstore.Broadcaster
}

// New returns an empty store configured by cfg; memory.New(memory.Config{})
// gives the defaults.
func New(cfg Config) *Store {
	maxEventSize := cfg.MaxEventSize
	if maxEventSize <= 0 {
		maxEventSize = eventstore.DefaultMaxEventSize
	}
	return &Store{
		maxEventSize: maxEventSize,
		streams:      make(map[string][]int),
		ids:          make(map[uuid.UUID]int),
		byType:       make(map[string][]int),
		byCat:        make(map[string][]int),
		commands:     make(map[string]eventstore.HandledCommand),
		snapshots:    make(map[string]eventstore.Snapshot),
	}
}

// Append appends events to a stream atomically. See eventstore.Appender and
// the package eventstore documentation for the rules; in order, an append
//
//   - is validated by eventstore.PrepareAppend (nothing is written on error);
//   - fails with the context's error if ctx is done;
//   - returns the recorded result, marked Duplicate, if its command ID was
//     handled before with the same payload hash, or an
//     *eventstore.IdempotencyKeyReusedError if the hash differs;
//   - returns the original result, marked Duplicate, if every one of its
//     event IDs is already in this stream, or an *eventstore.DuplicateEventError
//     if only some are, or if one is in another stream;
//   - fails with an *eventstore.ConcurrencyError unless the stream is at the
//     expected version;
//   - and otherwise writes the events and the command record together.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	o := eventstore.ApplyAppendOptions(opts)
	prepared, err := eventstore.PrepareAppend(streamID, expected, events, o, s.maxEventSize)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	// Take private copies of everything the caller still owns, before
	// taking the lock: one buffer for all the data of the batch.
	size := 0
	for i := range prepared {
		size += len(prepared[i].Data)
	}
	buf := make([]byte, 0, size+size/4)
	for i := range prepared {
		e := &prepared[i]
		if e.Data, buf, err = appendJSONB(buf, e.Data); err != nil {
			return eventstore.AppendResult{}, err
		}
		// Values is PrepareAppend's own copy already.
		e.Metadata.Extra = maps.Clone(e.Metadata.Extra)
	}
	var cmd *eventstore.CommandRecord
	if o.Command != nil {
		c := *o.Command
		c.PayloadHash = bytes.Clone(c.PayloadHash)
		cmd = &c
	}

	s.mu.Lock()
	res, wrote, err := s.appendLocked(ctx, streamID, expected, prepared, cmd)
	s.mu.Unlock()
	if wrote {
		types := make([]string, len(prepared))
		for i, e := range prepared {
			types[i] = e.Type
		}
		s.changes.BroadcastAppend(eventstore.Category(streamID), types)
	}
	return res, err
}

func (s *Store) appendLocked(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, cmd *eventstore.CommandRecord) (eventstore.AppendResult, bool, error) {
	// The lock may have taken a while: a caller that gave up meanwhile
	// gets nothing written.
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if cmd != nil {
		if h, ok := s.commands[cmd.ID]; ok {
			if !bytes.Equal(h.PayloadHash, cmd.PayloadHash) {
				return eventstore.AppendResult{}, false, &eventstore.IdempotencyKeyReusedError{CommandID: cmd.ID}
			}
			return h.Result, false, nil
		}
	}
	stream := s.streams[streamID]
	current := int64(len(stream))

	if len(events) > 0 {
		if res, dup, err := s.checkEventIDs(streamID, events); err != nil || dup {
			return res, false, err
		}
	}
	if !expected.Check(current) {
		return eventstore.AppendResult{}, false, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: current}
	}

	res := eventstore.AppendResult{StreamID: streamID, FirstVersion: current + 1, Version: current}
	if len(events) > 0 {
		s.lastTx++
		// PostgreSQL keeps microseconds: so does this store, so that a
		// time read back compares Equal in both.
		now := time.Now().UTC().Truncate(time.Microsecond)
		cat := eventstore.Category(streamID)
		for k, e := range events {
			i := len(s.log)
			rec := eventstore.RecordedEvent{
				ID:            e.ID,
				StreamID:      streamID,
				Version:       current + int64(k) + 1,
				Position:      eventstore.Position{Tx: s.lastTx, Seq: uint64(i) + 1},
				Type:          e.Type,
				SchemaVersion: e.SchemaVersion,
				Data:          e.Data,
				Metadata:      e.Metadata,
				RecordedAt:    now,
				OccurredAt:    e.OccurredAt,
			}
			if rec.OccurredAt.IsZero() {
				rec.OccurredAt = now
			}
			s.log = append(s.log, rec)
			stream = append(stream, i)
			s.ids[e.ID] = i
			s.byType[e.Type] = append(s.byType[e.Type], i)
			s.byCat[cat] = append(s.byCat[cat], i)
			res.Version = rec.Version
			res.Position = rec.Position
		}
		s.streams[streamID] = stream
	}
	if cmd != nil {
		recorded := res
		recorded.Duplicate = true
		s.commands[cmd.ID] = eventstore.HandledCommand{CommandID: cmd.ID, Type: cmd.Type, PayloadHash: cmd.PayloadHash, Result: recorded}
	}
	return res, len(events) > 0, nil
}

// checkEventIDs applies event-ID idempotency: dup reports that every event
// is already in the stream, with res the original result.
func (s *Store) checkEventIDs(streamID string, events []eventstore.Event) (res eventstore.AppendResult, dup bool, err error) {
	found := 0
	var first, last *eventstore.RecordedEvent
	for _, e := range events {
		i, ok := s.ids[e.ID]
		if !ok {
			continue
		}
		rec := &s.log[i]
		if rec.StreamID != streamID {
			return res, false, &eventstore.DuplicateEventError{StreamID: streamID, Reason: fmt.Sprintf("event %s already exists in stream %q", e.ID, rec.StreamID)}
		}
		found++
		if first == nil || rec.Version < first.Version {
			first = rec
		}
		if last == nil || rec.Version > last.Version {
			last = rec
		}
	}
	switch {
	case found == 0:
		return res, false, nil
	case found < len(events):
		return res, false, &eventstore.DuplicateEventError{StreamID: streamID, Reason: fmt.Sprintf("%d of the %d event IDs already exist", found, len(events))}
	}
	return eventstore.AppendResult{StreamID: streamID, FirstVersion: first.Version, Version: last.Version, Position: last.Position, Duplicate: true}, true, nil
}

// ReadStream reads one stream; see eventstore.ReadStreamOptions. A Forward
// read from past the end, or a Backward read from before the start, returns
// no events; a Backward read from past the end starts at the last event.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	stream := s.streams[streamID]
	if len(stream) == 0 {
		return nil, &eventstore.StreamNotFoundError{StreamID: streamID}
	}
	n := int64(len(stream))
	limit := int64(opts.Limit)
	if opts.Direction == eventstore.Backward {
		from := opts.From
		if from <= 0 || from > n {
			from = n
		}
		// versions from, from-1, ..., 1: indexes from-1 down to 0
		count := from
		if limit > 0 && limit < count {
			count = limit
		}
		idx := make([]int, count)
		for k := range idx {
			idx[k] = stream[from-1-int64(k)]
		}
		return s.clone(idx), nil
	}
	from := max(opts.From, 1)
	if from > n {
		return []eventstore.RecordedEvent{}, nil
	}
	idx := stream[from-1:]
	if limit > 0 && limit < int64(len(idx)) {
		idx = idx[:limit]
	}
	return s.clone(idx), nil
}

// ReadLog returns the events after the given position in position order,
// filtered and limited by opts (see eventstore.ReadLogOptions). Since is
// checked on each event from the position on: a read that it filters
// heavily costs the events it passes over.
func (s *Store) ReadLog(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	limit = min(limit, eventstore.MaxBatchSize)
	types := dedupe(opts.Types)
	cats := dedupe(opts.Categories)

	since := opts.Since
	s.mu.RLock()
	defer s.mu.RUnlock()
	start := sort.Search(len(s.log), func(i int) bool { return after.Before(s.log[i].Position) })
	if len(types) == 0 && len(cats) == 0 {
		if since.IsZero() {
			end := min(start+limit, len(s.log))
			idx := make([]int, end-start)
			for k := range idx {
				idx[k] = start + k
			}
			return s.clone(idx), nil
		}
		// RecordedAt follows the wall clock, which may step back, so
		// the bound is checked on every event rather than searched for.
		var idx []int
		for i := start; i < len(s.log) && len(idx) < limit; i++ {
			if !s.log[i].RecordedAt.Before(since) {
				idx = append(idx, i)
			}
		}
		return s.clone(idx), nil
	}

	// Walk the smaller of the two indexes, from start, and check the other
	// filter on each candidate.
	typeLists := s.lists(s.byType, types, start)
	catLists := s.lists(s.byCat, cats, start)
	lists, check := catLists, types
	checkType := true
	if len(cats) == 0 || (len(types) > 0 && total(typeLists) < total(catLists)) {
		lists, check, checkType = typeLists, cats, false
	}
	var idx []int
	for len(idx) < limit {
		// Take the smallest head among the lists (they are few).
		best := -1
		for k, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] < lists[best][0]) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		i := lists[best][0]
		lists[best] = lists[best][1:]
		if !since.IsZero() && s.log[i].RecordedAt.Before(since) {
			continue
		}
		if len(check) > 0 {
			var v string
			if checkType {
				v = s.log[i].Type
			} else {
				v = eventstore.Category(s.log[i].StreamID)
			}
			if !slices.Contains(check, v) {
				continue
			}
		}
		idx = append(idx, i)
	}
	return s.clone(idx), nil
}

// lists returns, for each key, the tail of its index list from log index
// start on.
func (s *Store) lists(index map[string][]int, keys []string, start int) [][]int {
	out := make([][]int, 0, len(keys))
	for _, k := range keys {
		l := index[k]
		j, _ := slices.BinarySearch(l, start)
		if j < len(l) {
			out = append(out, l[j:])
		}
	}
	return out
}

func total(lists [][]int) int {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	return n
}

func dedupe(keys []string) []string {
	if len(keys) < 2 {
		return keys
	}
	out := slices.Clone(keys)
	slices.Sort(out)
	return slices.Compact(out)
}

// ReadEvent implements eventstore.EventReader: the event with the given
// ID, found through the store's index by ID.
func (s *Store) ReadEvent(ctx context.Context, id uuid.UUID) (eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.RecordedEvent{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.ids[id]
	if !ok {
		return eventstore.RecordedEvent{}, &eventstore.EventNotFoundError{ID: id}
	}
	return s.clone([]int{i})[0], nil
}

// Head returns the position of the last event, or eventstore.Start.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Position{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.log) == 0 {
		return eventstore.Start, nil
	}
	return s.log[len(s.log)-1].Position, nil
}

// Subscribe opens a subscription to the events after the given position;
// appends wake it at once.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (*eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return eventstore.NewSubscription(s, &s.changes, after, opts), nil
}

// Changes implements eventstore.Notifier: the channel receives a wake-up
// after each append that wrote events.
func (s *Store) Changes() (<-chan struct{}, func()) { return s.changes.Changes() }

// HandledCommand returns the record of a command whose append succeeded.
func (s *Store) HandledCommand(ctx context.Context, commandID string) (eventstore.HandledCommand, bool, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.HandledCommand{}, false, err
	}
	s.mu.RLock()
	h, ok := s.commands[commandID]
	s.mu.RUnlock()
	h.PayloadHash = bytes.Clone(h.PayloadHash)
	return h, ok, nil
}

// LoadSnapshot returns the latest snapshot of a stream.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string) (eventstore.Snapshot, bool, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, false, err
	}
	s.snapMu.RLock()
	snap, ok := s.snapshots[streamID]
	s.snapMu.RUnlock()
	snap.Data = bytes.Clone(snap.Data)
	return snap, ok, nil
}

// SaveSnapshot stores snap unless the stored snapshot of the stream has a
// higher version; at an equal version the newer save wins. TakenAt is set
// to the current time, in whole microseconds, and Data kept in jsonb's
// form, as the PostgreSQL store does.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(snap); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := eventstore.AppendJSONB(nil, snap.Data)
	if err != nil {
		return err
	}
	snap.Data = data
	snap.TakenAt = time.Now().UTC().Truncate(time.Microsecond)
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if old, ok := s.snapshots[snap.StreamID]; ok && old.Version > snap.Version {
		return nil
	}
	s.snapshots[snap.StreamID] = snap
	return nil
}

// clone returns deep copies of the events at the given log indexes, their
// data sharing one allocation. The caller holds s.mu.
func (s *Store) clone(idx []int) []eventstore.RecordedEvent {
	out := make([]eventstore.RecordedEvent, len(idx))
	size := 0
	for _, i := range idx {
		size += len(s.log[i].Data)
	}
	buf := make([]byte, 0, size)
	for k, i := range idx {
		e := s.log[i]
		e.Data, buf = appendBytes(buf, e.Data)
		e.Metadata.Extra = maps.Clone(e.Metadata.Extra)
		e.Metadata.Values = cloneValues(e.Metadata.Values)
		out[k] = e
	}
	return out
}

// cloneValues is a deep copy of metadata values.
func cloneValues(values map[string]json.RawMessage) map[string]json.RawMessage {
	if values == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(values))
	for k, v := range values {
		out[k] = bytes.Clone(v)
	}
	return out
}

// appendJSONB appends data, in jsonb's form, to buf and returns it, capped
// so that appending to it cannot overwrite what follows, and the grown
// buf. PrepareAppend has validated data, so an error is a bug of this
// package or of eventstore's.
func appendJSONB(buf, data []byte) (json.RawMessage, []byte, error) {
	start := len(buf)
	buf, err := eventstore.AppendJSONB(buf, data)
	if err != nil {
		return nil, buf, fmt.Errorf("memory: %w", err)
	}
	return json.RawMessage(buf[start:len(buf):len(buf)]), buf, nil
}

// appendBytes copies b to the end of buf and returns the copy, capped so that
// appending to it cannot overwrite what follows, and the grown buf.
func appendBytes(buf, b []byte) (json.RawMessage, []byte) {
	start := len(buf)
	buf = append(buf, b...)
	return json.RawMessage(buf[start:len(buf):len(buf)]), buf
}
