package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/cairn-es/cairn/eventstore"
)

// Repository errors, wrapped in the typed errors below.
var (
	// ErrNotFound: Load of an aggregate whose stream has no events.
	ErrNotFound = fmt.Errorf("aggregate: not found: %w", eventstore.ErrStreamNotFound)
	// ErrStale: Save of an aggregate whose previous Save found its command
	// already handled. Its in-memory state includes events that were not
	// stored; load it again.
	ErrStale = errors.New("aggregate: stale aggregate, load it again")
)

// NotFoundError reports a Load of an aggregate that does not exist. It
// matches ErrNotFound and, through Err (the store's error),
// eventstore.ErrStreamNotFound.
type NotFoundError struct {
	ID       string
	StreamID string
	Err      error
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("aggregate: %q not found (stream %q)", e.ID, e.StreamID)
}

// Unwrap returns ErrNotFound and the store's error.
func (e *NotFoundError) Unwrap() []error { return []error{ErrNotFound, e.Err} }

// Store is what a Repository needs of an event store.
type Store interface {
	eventstore.Appender
	eventstore.StreamReader
}

// Snapshotter is implemented by aggregates whose snapshot is not simply
// their JSON encoding, typically because their state is in unexported
// fields. SnapshotState returns a value to encode as JSON; RestoreSnapshot
// sets the state of a fresh aggregate from that JSON.
type Snapshotter interface {
	SnapshotState() (any, error)
	RestoreSnapshot(data json.RawMessage) error
}

// DefaultSnapshotEvery is Config.SnapshotEvery when it is zero.
const DefaultSnapshotEvery = 100

// Config configures a Repository. The zero value is usable: no snapshots,
// snapshot failures logged to slog.Default(), and Load reading
// eventstore.DefaultBatchSize events per page.
//
// Snapshots are an optimisation. After a Save that takes the stream across
// a multiple of SnapshotEvery events, the repository saves the aggregate's
// state in Snapshots, and Load starts from the latest snapshot and replays
// only the events after it. The state is the aggregate's JSON encoding, so
// it must be in exported fields (Base's own fields are restored from the
// snapshot's stream version); an aggregate with unexported state implements
// Snapshotter instead, and NewRepository panics for an aggregate struct
// with unexported fields that does not. Snapshots carry the repository's
// category as their type and SnapshotSchemaVersion as their schema
// version: Load ignores snapshots of another version and replays the stream
// from the start (as it does for a snapshot it cannot read). A failure to
// save or load a snapshot is logged to Logger, never returned.
type Config struct {
	// Snapshots is where the repository keeps snapshots. Nil: it keeps
	// none, and SnapshotEvery and SnapshotSchemaVersion are ignored.
	Snapshots eventstore.SnapshotStore
	// SnapshotEvery is how many events pass between two snapshots of a
	// stream. Zero: DefaultSnapshotEvery. Negative: NewRepository panics.
	SnapshotEvery int
	// SnapshotSchemaVersion is the version of the snapshots' shape: change
	// it whenever the state's shape changes. It has no default, because a
	// defaulted version would make it easy to "change" it to the value it
	// already has: with Snapshots set, below 1 makes NewRepository panic.
	SnapshotSchemaVersion int
	// Logger receives snapshot failures. Nil: slog.Default() at the time of
	// NewRepository.
	Logger *slog.Logger
	// PageSize is how many events Load reads per ReadStream call. Zero or
	// less: eventstore.DefaultBatchSize.
	PageSize int
}

// options is a Config with its defaults applied.
type options struct {
	snapshots      eventstore.SnapshotStore
	snapshotEvery  int
	snapshotSchema int
	logger         *slog.Logger
	pageSize       int
}

// Repository loads and saves the aggregates of one category. It is safe for
// concurrent use; the aggregates it returns are not.
type Repository[T Aggregate] struct {
	store    Store
	registry *eventstore.Registry
	category string
	newFn    func() T
	opts     options
}

// NewRepository returns a repository of the aggregates of category (the
// part of their stream IDs before the first '-'), which newFn creates empty
// and whose events are encoded and decoded by registry, configured by cfg
// (Config{} for the defaults). It panics on configuration that cannot work:
// a nil argument, a category that is empty, contains '-' or characters
// outside eventstore.StreamIDCharacters, or snapshot settings that are out
// of range or would lose state (see Config).
func NewRepository[T Aggregate](store Store, registry *eventstore.Registry, category string, newFn func() T, cfg Config) *Repository[T] {
	if store == nil || registry == nil || newFn == nil {
		panic("aggregate: NewRepository needs a store, a registry and a constructor")
	}
	if err := eventstore.ValidateStreamID(category); err != nil || strings.Contains(category, "-") {
		panic(fmt.Sprintf("aggregate: category %q must be a non-empty stream ID without '-'", category))
	}
	o, err := cfg.options()
	if err != nil {
		panic(err.Error())
	}
	if o.snapshots != nil {
		if err := checkSnapshottable[T](); err != nil {
			panic(err.Error())
		}
	}
	return &Repository[T]{store: store, registry: registry, category: category, newFn: newFn, opts: o}
}

// options applies cfg's defaults and rejects snapshot settings that cannot
// work.
func (cfg Config) options() (options, error) {
	o := options{logger: cfg.Logger, pageSize: cfg.PageSize}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.pageSize <= 0 {
		o.pageSize = eventstore.DefaultBatchSize
	}
	if cfg.Snapshots == nil {
		return o, nil
	}
	if cfg.SnapshotEvery < 0 || cfg.SnapshotSchemaVersion < 1 {
		return o, fmt.Errorf("aggregate: Config.SnapshotEvery %d must not be negative and Config.SnapshotSchemaVersion %d must be at least 1", cfg.SnapshotEvery, cfg.SnapshotSchemaVersion)
	}
	o.snapshots = cfg.Snapshots
	o.snapshotEvery = cfg.SnapshotEvery
	if o.snapshotEvery == 0 {
		o.snapshotEvery = DefaultSnapshotEvery
	}
	o.snapshotSchema = cfg.SnapshotSchemaVersion
	return o, nil
}

// checkSnapshottable rejects aggregates whose JSON encoding would silently
// drop state: structs with unexported fields that do not implement
// Snapshotter. Embedded fields are allowed (their exported fields are
// encoded; Base is restored from the stream version).
func checkSnapshottable[T Aggregate]() error {
	t := reflect.TypeFor[T]()
	if t.Implements(reflect.TypeFor[Snapshotter]()) {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			return fmt.Errorf("aggregate: snapshots of %v would lose unexported field %s: export it (json:\"-\" to leave it out deliberately) or implement aggregate.Snapshotter", t, f.Name)
		}
	}
	return nil
}

// Category returns the repository's category.
func (r *Repository[T]) Category() string { return r.category }

// StreamID returns the stream of the aggregate with the given ID:
// category + "-" + id.
func (r *Repository[T]) StreamID(id string) string { return r.category + "-" + id }

// New returns a fresh aggregate with its ID set, to be saved as a new
// stream.
func (r *Repository[T]) New(id string) T { return New(r.newFn, id) }

func emptyID(streamID string) error {
	return &eventstore.ValidationError{Err: eventstore.ErrInvalidStreamID, StreamID: streamID, Index: -1, Reason: "empty aggregate ID"}
}

// Load returns the aggregate with the given ID, built by replaying its
// stream (from the latest usable snapshot, when the repository keeps them)
// through the registry, so upcasters apply. An ID without events returns a
// *NotFoundError; an event the registry cannot decode returns its typed
// error (eventstore.UnknownEventTypeError, UnknownSchemaVersionError or
// DecodeError), wrapped.
func (r *Repository[T]) Load(ctx context.Context, id string) (T, error) {
	var zero T
	streamID := r.StreamID(id)
	if id == "" {
		return zero, emptyID(streamID)
	}
	agg, fromSnapshot := r.loadSnapshot(ctx, id, streamID)
	b := agg.base()
	for {
		events, err := r.store.ReadStream(ctx, streamID, eventstore.ReadStreamOptions{Direction: eventstore.Forward, From: b.version + 1, Limit: r.opts.pageSize})
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return zero, &NotFoundError{ID: id, StreamID: streamID, Err: err}
		}
		if err != nil {
			return zero, fmt.Errorf("aggregate: loading %q: %w", streamID, err)
		}
		for _, rec := range events {
			if rec.Version != b.version+1 {
				return zero, fmt.Errorf("aggregate: loading %q: read version %d after version %d", streamID, rec.Version, b.version)
			}
			event, err := r.registry.Decode(rec)
			if err != nil {
				return zero, fmt.Errorf("aggregate: loading %q: %w", streamID, err)
			}
			agg.Apply(event)
			b.version = rec.Version
		}
		if len(events) < r.opts.pageSize {
			break
		}
	}
	if b.version == 0 && !fromSnapshot {
		// A store that reports a missing stream as an empty read.
		return zero, &NotFoundError{ID: id, StreamID: streamID, Err: &eventstore.StreamNotFoundError{StreamID: streamID}}
	}
	return agg, nil
}

// loadSnapshot returns a fresh aggregate, restored from the stream's
// snapshot when there is a usable one.
func (r *Repository[T]) loadSnapshot(ctx context.Context, id, streamID string) (T, bool) {
	fresh := r.New(id)
	if r.opts.snapshots == nil {
		return fresh, false
	}
	log := r.opts.logger.With(slog.String("stream", streamID))
	snap, ok, err := r.opts.snapshots.LoadSnapshot(ctx, streamID)
	switch {
	case err != nil:
		log.WarnContext(ctx, "aggregate: loading snapshot failed; replaying the stream", slog.Any("error", err))
		return fresh, false
	case !ok:
		return fresh, false
	case snap.Type != r.category || snap.SchemaVersion != r.opts.snapshotSchema:
		log.DebugContext(ctx, "aggregate: ignoring snapshot of another type or schema version",
			slog.String("snapshot_type", snap.Type), slog.Int("snapshot_schema_version", snap.SchemaVersion),
			slog.String("want_type", r.category), slog.Int("want_schema_version", r.opts.snapshotSchema))
		return fresh, false
	case snap.Version < 1:
		log.WarnContext(ctx, "aggregate: ignoring snapshot at version below 1", slog.Int64("version", snap.Version))
		return fresh, false
	}
	agg := r.New(id)
	if s, ok := any(agg).(Snapshotter); ok {
		err = s.RestoreSnapshot(snap.Data)
	} else {
		err = json.Unmarshal(snap.Data, agg)
	}
	if err != nil {
		log.WarnContext(ctx, "aggregate: restoring snapshot failed; replaying the stream", slog.Int64("version", snap.Version), slog.Any("error", err))
		return fresh, false
	}
	agg.base().version = snap.Version
	return agg, true
}

// Save appends the events recorded on agg since it was loaded or saved,
// expecting its stream to be at agg.Version() (no stream for a new
// aggregate), and returns the store's result. A stream that moved on in the
// meantime fails with an error matching eventstore.ErrConcurrency: load the
// aggregate again and retry the command.
//
// When ctx carries an eventstore.Causation, the events are stamped with it
// and the append records its command: if the store has handled that
// command already, nothing is written and the original result is returned
// with Duplicate set. The aggregate's in-memory state then includes events
// that were not stored, so it is marked stale and a later Save of it fails
// with ErrStale.
//
// On success (duplicate or not) the recorded events are cleared and the
// version advanced to the result's. On error they are kept, the aggregate's
// state includes them, and it should be discarded. Saving an aggregate with
// no recorded events appends nothing and returns its current version.
func (r *Repository[T]) Save(ctx context.Context, agg T) (eventstore.AppendResult, error) {
	b := agg.base()
	streamID := r.StreamID(b.id)
	if b.id == "" {
		return eventstore.AppendResult{}, emptyID(streamID)
	}
	if len(b.changes) == 0 {
		return eventstore.AppendResult{StreamID: streamID, Version: b.version}, nil
	}
	if b.stale {
		return eventstore.AppendResult{}, fmt.Errorf("%w: %q", ErrStale, streamID)
	}
	events := make([]eventstore.Event, len(b.changes))
	for i, change := range b.changes {
		e, err := r.registry.Encode(change)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("aggregate: saving %q: event %d: %w", streamID, i, err)
		}
		events[i] = e
	}
	var appendOpts []eventstore.AppendOption
	if c, ok := eventstore.CausationFrom(ctx); ok {
		appendOpts = c.Stamp(events)
	}
	res, err := r.store.Append(ctx, streamID, eventstore.Exact(b.version), events, appendOpts...)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("aggregate: saving %q: %w", streamID, err)
	}
	previous := b.version
	b.changes = nil
	b.version = res.Version
	if res.Duplicate {
		b.stale = true
		return res, nil
	}
	if r.opts.snapshots != nil && previous/int64(r.opts.snapshotEvery) < res.Version/int64(r.opts.snapshotEvery) {
		r.saveSnapshot(ctx, agg, streamID, res.Version)
	}
	return res, nil
}

func (r *Repository[T]) saveSnapshot(ctx context.Context, agg T, streamID string, version int64) {
	var state any = agg
	var err error
	if s, ok := any(agg).(Snapshotter); ok {
		state, err = s.SnapshotState()
	}
	var data []byte
	if err == nil {
		data, err = json.Marshal(state)
	}
	if err == nil {
		err = r.opts.snapshots.SaveSnapshot(ctx, eventstore.Snapshot{
			StreamID:      streamID,
			Version:       version,
			Type:          r.category,
			SchemaVersion: r.opts.snapshotSchema,
			Data:          data,
			TakenAt:       time.Now().UTC(),
		})
	}
	if err != nil {
		r.opts.logger.WarnContext(ctx, "aggregate: saving snapshot failed; the events are saved",
			slog.String("stream", streamID), slog.Int64("version", version), slog.Any("error", err))
	}
}
