// Package postgres is Cairn's default event store: PostgreSQL through a pgx/v5
// pool. Apply its tables first: migrations.Up with Migrations().
//
// Appending a batch is one statement (a PL/pgSQL function), so one round trip
// and one transaction. Reads of the log are ordered by (transaction ID,
// sequence) and bounded by the oldest transaction still in flight, which gives
// every subscriber one total order in which no event can appear behind a
// checkpoint; docs/architecture.md explains why and what it costs.
//
// A Store also implements eventstore.EventReader, through the unique index
// by event ID, and bounds log reads by ReadLogOptions.Since, a filter on
// recorded_at applied as the read scans from its position (no index: every
// append would pay for one).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/migrations"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
	_ eventstore.EventReader   = (*Store)(nil)
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// Schema holding Cairn's tables; migrations.DefaultSchema when empty.
	Schema string
	// MaxEventSize bounds one event's data plus metadata, in bytes;
	// eventstore.DefaultMaxEventSize when zero.
	MaxEventSize int
	// Logger receives the notifier's and listener's connection trouble;
	// slog.Default() when nil.
	Logger *slog.Logger
}

// Store is the PostgreSQL event store. Create it with New and Close it when
// done; the pool stays the caller's to close.
type Store struct {
	pool    *pgxpool.Pool
	cfg     Config
	q       queries
	channel string

	local  eventstore.Broadcaster // wakes this process's subscriptions
	notify *notifier
}

// New returns a store on pool. It starts the background notifier that tells
// other processes about appends; Close stops it.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if cfg.Schema == "" {
		cfg.Schema = migrations.DefaultSchema
	}
	if err := migrations.ValidateSchema(cfg.Schema); err != nil {
		return nil, err
	}
	if cfg.MaxEventSize <= 0 {
		cfg.MaxEventSize = eventstore.DefaultMaxEventSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{pool: pool, cfg: cfg, q: newQueries(cfg.Schema), channel: "cairn_events_" + cfg.Schema}
	s.notify = startNotifier(pool, s.channel, &s.local, cfg.Logger)
	return s, nil
}

// Close stops the store's background goroutines. It does not close the pool.
func (s *Store) Close() {
	s.notify.close()
}

// Schema returns the schema the store works in.
func (s *Store) Schema() string { return s.cfg.Schema }

// Append implements eventstore.Appender.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	o := eventstore.ApplyAppendOptions(opts)
	events, err := eventstore.PrepareAppend(streamID, expected, events, o, s.cfg.MaxEventSize)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	args, err := appendArgs(streamID, expected, events, o.Command)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, ok, err := s.appendFast(ctx, streamID, expected, len(events), args); ok || err != nil {
		if ok {
			s.appended(streamID, events)
		}
		return res, err
	}
	var (
		status               string
		stream               *string
		current, first, last *int64
		posTx                *uint64
		posSeq               *int64
	)
	err = s.pool.QueryRow(ctx, s.q.append, args...).Scan(&status, &stream, &current, &first, &last, &posTx, &posSeq)
	if err != nil {
		return s.appendFailed(ctx, streamID, events, o.Command, err)
	}
	res := eventstore.AppendResult{StreamID: streamID}
	switch status {
	case "exists":
		return s.existingAppend(ctx, streamID, events)
	case "ok", "duplicate":
		res.StreamID = *stream // a replayed command's own stream
		res.FirstVersion, res.Version = *first, *last
		res.Position = eventstore.Position{Tx: *posTx, Seq: uint64(*posSeq)}
		res.Duplicate = status == "duplicate"
		if !res.Duplicate && len(events) > 0 {
			s.appended(streamID, events)
		}
		return res, nil
	case "conflict":
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: *current}
	case "key_reused":
		return eventstore.AppendResult{}, &eventstore.IdempotencyKeyReusedError{CommandID: o.Command.ID}
	default:
		return eventstore.AppendResult{}, fmt.Errorf("postgres: append returned unknown status %q", status)
	}
}

// appended wakes this process's subscriptions that want the events, and
// the other processes' (see notifier).
func (s *Store) appended(streamID string, events []eventstore.Event) {
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	s.local.BroadcastAppend(eventstore.Category(streamID), types)
	s.notify.poke()
}

// appendFailed turns a unique violation into the idempotent answer it stands
// for: the same events (or the same command) appended concurrently by
// someone else, whose transaction committed first.
func (s *Store) appendFailed(ctx context.Context, streamID string, events []eventstore.Event, cmd *eventstore.CommandRecord, err error) (eventstore.AppendResult, error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return eventstore.AppendResult{}, fmt.Errorf("postgres: append to %q: %w", streamID, err)
	}
	switch pgErr.ConstraintName {
	case "commands_pkey":
		h, ok, lerr := s.HandledCommand(ctx, cmd.ID)
		if lerr != nil {
			return eventstore.AppendResult{}, lerr
		}
		if !ok {
			return eventstore.AppendResult{}, fmt.Errorf("postgres: append to %q: %w", streamID, err)
		}
		if string(h.PayloadHash) != string(cmd.PayloadHash) {
			return eventstore.AppendResult{}, &eventstore.IdempotencyKeyReusedError{CommandID: cmd.ID}
		}
		return h.Result, nil
	case "events_event_id_key":
		return s.existingAppend(ctx, streamID, events)
	}
	return eventstore.AppendResult{}, fmt.Errorf("postgres: append to %q: %w", streamID, err)
}

// existingAppend answers a re-append of events that are already stored: the
// original result when all of them are in this stream, else an error.
func (s *Store) existingAppend(ctx context.Context, streamID string, events []eventstore.Event) (eventstore.AppendResult, error) {
	ids := make([][16]byte, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	var inStream, total int
	var first, last *int64
	var posTx *uint64
	var posSeq *int64
	err := s.pool.QueryRow(ctx, s.q.existing, ids, streamID).Scan(&inStream, &total, &first, &last, &posTx, &posSeq)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("postgres: checking duplicate events on %q: %w", streamID, err)
	}
	if inStream != len(events) || total != len(events) {
		return eventstore.AppendResult{}, &eventstore.DuplicateEventError{StreamID: streamID,
			Reason: fmt.Sprintf("%d of %d event IDs exist in this stream and %d elsewhere", inStream, len(events), total-inStream)}
	}
	return eventstore.AppendResult{StreamID: streamID, FirstVersion: *first, Version: *last,
		Position: eventstore.Position{Tx: *posTx, Seq: uint64(*posSeq)}, Duplicate: true}, nil
}

func appendArgs(streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, cmd *eventstore.CommandRecord) ([]any, error) {
	n := len(events)
	ids := make([][16]byte, n)
	types := make([]string, n)
	versions := make([]int32, n)
	data := make([]string, n)
	meta := make([]string, n)
	occurred := make([]*time.Time, n) // nil: when recorded
	for i, e := range events {
		if !e.OccurredAt.IsZero() {
			occurred[i] = &e.OccurredAt
		}
		ids[i] = e.ID
		types[i] = e.Type
		versions[i] = int32(e.SchemaVersion)
		data[i] = string(e.Data)
		m, err := json.Marshal(e.Metadata)
		if err != nil {
			return nil, fmt.Errorf("postgres: encoding metadata: %w", err)
		}
		meta[i] = string(m)
	}
	var cmdID, cmdType *string
	var hash []byte
	if cmd != nil {
		cmdID, cmdType, hash = &cmd.ID, &cmd.Type, cmd.PayloadHash
	}
	return []any{streamID, int16(expected.Kind()), expected.Version(), ids, types, versions, data, meta, cmdID, cmdType, hash, occurred}, nil
}

// ReadStream implements eventstore.StreamReader.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	limit := int64(opts.Limit)
	if limit <= 0 {
		limit = -1 // LIMIT ALL
	}
	read := func() ([]eventstore.RecordedEvent, error) {
		var rows pgx.Rows
		var err error
		if opts.Direction == eventstore.Backward {
			from := opts.From
			if from <= 0 {
				from = 1<<63 - 1
			}
			rows, err = s.pool.Query(ctx, s.q.readBackward, streamID, from, nullableLimit(limit))
		} else {
			rows, err = s.pool.Query(ctx, s.q.readForward, streamID, opts.From, nullableLimit(limit))
		}
		if err != nil {
			return nil, err
		}
		return scanEvents(rows, nil)
	}
	events, err := read()
	if err != nil {
		return nil, fmt.Errorf("postgres: reading stream %q: %w", streamID, err)
	}
	// Read forward from the start, a stream with no events does not
	// exist (that is what streamExists asks): the common load of a new
	// aggregate costs one round trip, not two.
	if len(events) == 0 && opts.Direction != eventstore.Backward && opts.From <= 1 {
		return nil, &eventstore.StreamNotFoundError{StreamID: streamID}
	}
	if len(events) == 0 {
		var exists bool
		if err := s.pool.QueryRow(ctx, s.q.streamExists, streamID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("postgres: reading stream %q: %w", streamID, err)
		}
		if !exists {
			return nil, &eventstore.StreamNotFoundError{StreamID: streamID}
		}
		// The stream may have been created between the two statements:
		// read again, now that it is known to exist.
		if events, err = read(); err != nil {
			return nil, fmt.Errorf("postgres: reading stream %q: %w", streamID, err)
		}
	}
	return events, nil
}

func nullableLimit(limit int64) *int64 {
	if limit < 0 {
		return nil
	}
	return &limit
}

// ReadLog implements eventstore.LogReader: events after the given position,
// in position order, never past the oldest transaction still in flight.
func (s *Store) ReadLog(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) ([]eventstore.RecordedEvent, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	limit = min(limit, eventstore.MaxBatchSize)
	sql, args := s.q.logScan(after, filterOf(opts), limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the log: %w", err)
	}
	events, err := scanEvents(rows, nil)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the log: %w", err)
	}
	return events, nil
}

// ReadLogHoldback implements eventstore.HoldbackReader: ReadLog, and
// whether events it may not return yet (committed behind a transaction
// still in flight) match the filters, in one round trip.
func (s *Store) ReadLogHoldback(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) ([]eventstore.RecordedEvent, bool, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	limit = min(limit, eventstore.MaxBatchSize)
	sql, args := s.q.logScanHoldback(after, filterOf(opts), limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: reading the log: %w", err)
	}
	var held bool
	events, err := scanEvents(rows, &held)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: reading the log: %w", err)
	}
	return events, held, nil
}

// CountLog counts the events after a position that a reader could be given
// now, filtered like ReadLog, stopping at opts.Limit (no limit when zero):
// the backlog a subscriber has left.
func (s *Store) CountLog(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) (int64, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = math.MaxInt32
	}
	sql, args := s.q.logCount(after, filterOf(opts), limit)
	var n int64
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: counting the log: %w", err)
	}
	return n, nil
}

// ReadEvent implements eventstore.EventReader through the unique index by
// event ID. Like ReadStream, it is not held back at the horizon.
func (s *Store) ReadEvent(ctx context.Context, id uuid.UUID) (eventstore.RecordedEvent, error) {
	rows, err := s.pool.Query(ctx, s.q.readEvent, [16]byte(id))
	if err != nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("postgres: reading event %s: %w", id, err)
	}
	events, err := scanEvents(rows, nil)
	if err != nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("postgres: reading event %s: %w", id, err)
	}
	if len(events) == 0 {
		return eventstore.RecordedEvent{}, &eventstore.EventNotFoundError{ID: id}
	}
	return events[0], nil
}

// Pool returns the pool the store works on, for code that keeps its own
// tables beside the log (projections, sagas).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Head implements eventstore.LogReader.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var p eventstore.Position
	var seq int64
	err := s.pool.QueryRow(ctx, s.q.head).Scan(&p.Tx, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return p, fmt.Errorf("postgres: reading the head position: %w", err)
	}
	p.Seq = uint64(seq)
	return p, nil
}

// Subscribe implements eventstore.Subscriber. Subscriptions wake on
// LISTEN/NOTIFY; the first one starts the store's listener connection.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (*eventstore.Subscription, error) {
	if err := s.notify.listen(ctx); err != nil {
		return nil, err
	}
	return eventstore.NewSubscription(s, &s.local, after, opts), nil
}

// HandledCommand implements eventstore.CommandLog.
func (s *Store) HandledCommand(ctx context.Context, commandID string) (eventstore.HandledCommand, bool, error) {
	var h eventstore.HandledCommand
	var posSeq int64
	err := s.pool.QueryRow(ctx, s.q.handledCommand, commandID).Scan(
		&h.CommandID, &h.Type, &h.PayloadHash, &h.Result.StreamID, &h.Result.FirstVersion, &h.Result.Version, &h.Result.Position.Tx, &posSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.HandledCommand{}, false, nil
	}
	if err != nil {
		return eventstore.HandledCommand{}, false, fmt.Errorf("postgres: looking up command %q: %w", commandID, err)
	}
	h.Result.Position.Seq = uint64(posSeq)
	h.Result.Duplicate = true
	return h, true, nil
}

// LoadSnapshot implements eventstore.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string) (eventstore.Snapshot, bool, error) {
	var sn eventstore.Snapshot
	err := s.pool.QueryRow(ctx, s.q.loadSnapshot, streamID).Scan(&sn.StreamID, &sn.Version, &sn.Type, &sn.SchemaVersion, &sn.Data, &sn.TakenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Snapshot{}, false, nil
	}
	if err != nil {
		return eventstore.Snapshot{}, false, fmt.Errorf("postgres: loading snapshot of %q: %w", streamID, err)
	}
	sn.TakenAt = sn.TakenAt.UTC()
	return sn, true, nil
}

// SaveSnapshot implements eventstore.SnapshotStore.
func (s *Store) SaveSnapshot(ctx context.Context, sn eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(sn); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.saveSnapshot, sn.StreamID, sn.Version, sn.Type, sn.SchemaVersion, string(sn.Data)); err != nil {
		return fmt.Errorf("postgres: saving snapshot of %q: %w", sn.StreamID, err)
	}
	return nil
}

// Holder is a transaction that holds log readers back: no event written
// after it started can be read until it ends.
type Holder struct {
	PID       int32
	Tx        uint64
	Database  string
	State     string
	XactStart *time.Time
	Query     string
}

// HeldBackBy lists the transactions, anywhere in the cluster, at or below
// the current read horizon, oldest first: what an operator looks at when
// subscribers stop advancing. Prepared transactions show with PID 0.
func (s *Store) HeldBackBy(ctx context.Context) ([]Holder, error) {
	rows, err := s.pool.Query(ctx, s.q.holders)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing transactions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Holder, error) {
		var h Holder
		err := r.Scan(&h.PID, &h.Tx, &h.Database, &h.State, &h.XactStart, &h.Query)
		return h, err
	})
}

// scanEvents reads events from rows. The result grows as rows come: sizing
// it by the query's limit allocated (and cleared) room for a whole batch on
// every read, while most reads of a live subscription return one event or
// none, and that garbage was the largest CPU cost of the sample system.
//
// With held non-nil, each row starts with logScanHoldback's held column,
// read into held, and a row without an event (NULL event columns) is
// skipped.
func scanEvents(rows pgx.Rows, held *bool) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	var out []eventstore.RecordedEvent
	for rows.Next() {
		var e eventstore.RecordedEvent
		var seq int64
		var data, meta []byte
		// Scanning into the array, not uuid.UUID, keeps pgx on its binary
		// path instead of uuid's sql.Scanner text parsing.
		dest := []any{(*[16]byte)(&e.ID), &e.StreamID, &e.Version, &e.Position.Tx, &seq, &e.Type, &e.SchemaVersion, &data, &meta, &e.RecordedAt, &e.OccurredAt}
		if held != nil {
			if rows.RawValues()[1] == nil {
				if err := rows.Scan(held, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil); err != nil {
					return nil, err
				}
				continue
			}
			dest = append([]any{held}, dest...)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		e.Position.Seq = uint64(seq)
		e.Data = json.RawMessage(data)
		if string(meta) != "{}" && !decodeMetadata(meta, &e.Metadata) {
			e.Metadata = eventstore.Metadata{}
			if err := json.Unmarshal(meta, &e.Metadata); err != nil {
				return nil, fmt.Errorf("decoding metadata of event %s: %w", e.ID, err)
			}
		}
		e.RecordedAt = e.RecordedAt.UTC()
		e.OccurredAt = e.OccurredAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// decodeMetadata decodes the common shape of stored metadata, as
// PostgreSQL prints a jsonb object, without encoding/json: an object whose
// keys are the Metadata field names and whose values are strings (an
// object of strings for extra), with no escapes. It reports false, leaving
// m in an unspecified state, for anything else, which the caller then
// decodes with json.Unmarshal: the result is the same either way.
func decodeMetadata(b []byte, m *eventstore.Metadata) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			if !utf8.Valid(b) {
				return false // json.Unmarshal replaces invalid UTF-8
			}
			break
		}
	}
	d := metaDecoder{b: b}
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return d.end()
	}
	for {
		key, ok := d.str()
		if !ok || !d.consume(':') {
			return false
		}
		switch string(key) {
		case "correlation_id", "causation_id", "command_id":
			v, ok := d.str()
			if !ok {
				return false
			}
			switch string(key) {
			case "correlation_id":
				m.CorrelationID = string(v)
			case "causation_id":
				m.CausationID = string(v)
			default:
				m.CommandID = string(v)
			}
		case "extra":
			if !d.consume('{') {
				return false
			}
			if m.Extra == nil {
				m.Extra = map[string]string{}
			}
			if !d.consume('}') {
				for {
					k, ok := d.str()
					if !ok || !d.consume(':') {
						return false
					}
					v, ok := d.str()
					if !ok {
						return false
					}
					m.Extra[string(k)] = string(v)
					if d.consume('}') {
						break
					}
					if !d.consume(',') {
						return false
					}
				}
			}
		default:
			return false // unknown or differently cased keys: json's rules
		}
		if d.consume('}') {
			return d.end()
		}
		if !d.consume(',') {
			return false
		}
	}
}

type metaDecoder struct {
	b []byte
	i int
}

func (d *metaDecoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, if c is next.
func (d *metaDecoder) consume(c byte) bool {
	d.skipSpace()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters.
func (d *metaDecoder) str() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	for j := d.i; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			s := d.b[d.i:j]
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (d *metaDecoder) end() bool {
	d.skipSpace()
	return d.i == len(d.b)
}
