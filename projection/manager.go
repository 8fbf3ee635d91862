package projection

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgnotify"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/telemetry"
)

// Config tunes a Manager. The zero value is usable.
type Config struct {
	// BatchSize bounds the events read and applied per transaction
	// (default 500).
	BatchSize int
	// Retry bounds the attempts at a failing event before its policy
	// applies, and spaces them (defaults: DefaultRetry).
	Retry retry.Policy
	// Policy is the failure policy of projections registered without one
	// (default PolicyStop).
	Policy Policy
	// LeaderRetry is how often a standby runner tries to take over a
	// projection (default 1s): the takeover time when the holder dies.
	LeaderRetry time.Duration
	// Logger receives the daemon's progress and failures (default slog.Default()).
	Logger *slog.Logger
	// TracerProvider makes the span of every batch transaction, a child
	// of the trace context of the batch's first event (see
	// telemetry.ExtractMetadata). Nil: otel.GetTracerProvider(), which
	// makes none until the application installs an SDK.
	TracerProvider trace.TracerProvider
}

// DefaultRetry is the retry policy of a failing event: 5 attempts, waits
// from 50ms doubling up to 5s.
var DefaultRetry = retry.Policy{MaxAttempts: 5, BaseDelay: 50 * time.Millisecond, MaxDelay: 5 * time.Second}

// Option adjusts one registration.
type Option func(*registered)

// WithPolicy sets the failure policy of one projection.
func WithPolicy(p Policy) Option { return func(r *registered) { r.policy = p } }

// WithSideEffects marks a projector whose Apply does more than build a
// read model: a saga sending commands, an event handler sending mail.
// Replaying the log would repeat those effects, so Rebuild and Reset refuse
// it (ErrSideEffects) and a changed Version does not rebuild it: it goes on
// from its checkpoint.
func WithSideEffects() Option { return func(r *registered) { r.sideEffects = true } }

// WithLinger makes a projection wait d after the log says there is
// something new before it reads, so that what is appended in the meantime
// is applied in the same transaction: for a read model nobody waits on
// (counters, reports, notifications), whose freshness is worth less than
// the transactions and reads it saves the database when events come one
// by one. Read-your-writes waits on it take up to d longer. Catching up
// (a rebuild, a backlog) is not slowed: the wait comes only after a read
// that found everything.
func WithLinger(d time.Duration) Option { return func(r *registered) { r.linger = d } }

type registered struct {
	p      Projector
	policy Policy
	// sideEffects: WithSideEffects.
	sideEffects bool
	// linger: WithLinger.
	linger time.Duration
}

// Manager runs and administers projections of an event log into
// PostgreSQL read models: Run is the projection daemon; the other methods
// are what the CLI calls. It reads the log only through eventstore.Log, so
// the log may live in any store; its own control tables and the read
// models live in the database of its pgdb.DB.
type Manager struct {
	store   eventstore.Log
	db      pgdb.DB
	pool    *pgxpool.Pool
	schema  string
	channel string
	cfg     Config
	log     *slog.Logger
	q       controlQueries
	tracer  trace.Tracer

	mu          sync.Mutex
	projections map[string]*registered

	waiters waitHub
}

// NewManager returns a manager for projections of log. Its control tables
// live in db's schema (apply Migrations there first); read models live in
// schemas of their own in db's database.
func NewManager(log eventstore.Log, db pgdb.DB, cfg Config) (*Manager, error) {
	db, err := db.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("projection: %w", err)
	}
	if log == nil {
		return nil, errors.New("projection: no event log")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = eventstore.DefaultBatchSize
	}
	cfg.BatchSize = min(cfg.BatchSize, eventstore.MaxBatchSize)
	cfg.Retry = cfg.Retry.WithDefaults(DefaultRetry)
	if cfg.LeaderRetry <= 0 {
		cfg.LeaderRetry = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		store:       log,
		db:          db,
		pool:        db.Pool,
		schema:      db.Schema,
		channel:     "cairn_checkpoints_" + db.Schema,
		cfg:         cfg,
		log:         cfg.Logger,
		q:           newControlQueries(db.Schema),
		tracer:      telemetry.Tracer(cfg.TracerProvider, telemetry.ScopeName+"/projection"),
		projections: map[string]*registered{},
	}
	m.waiters.channel = pgnotify.New(m.pool, m.channel, pgnotify.Config{OnError: func(err error) {
		m.log.Debug("cairn: checkpoint notifications across processes failed; waiters will poll", "error", err)
	}})
	return m, nil
}

// Log returns the event log the manager projects.
func (m *Manager) Log() eventstore.Log { return m.store }

// DB returns the handle of the manager's own tables and read models.
func (m *Manager) DB() pgdb.DB { return m.db }

// Close releases the manager's listener connection and stops its
// notifications. It does not close the store.
func (m *Manager) Close() {
	m.waiters.channel.Close()
}

// Register adds a projector. Names must be valid and unique.
func (m *Manager) Register(p Projector, opts ...Option) error {
	if err := ValidateName(p.Name()); err != nil {
		return err
	}
	if p.Name() == m.schema {
		return fmt.Errorf("%w: %q is the event store's schema", ErrInvalidName, p.Name())
	}
	if p.Version() < 1 {
		return fmt.Errorf("%w: projection %s has version %d, want 1 or more", ErrInvalidName, p.Name(), p.Version())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.projections[p.Name()]; dup {
		return fmt.Errorf("%w: %s", ErrDuplicateProjection, p.Name())
	}
	r := &registered{p: p, policy: m.cfg.Policy}
	for _, o := range opts {
		o(r)
	}
	m.projections[p.Name()] = r
	return nil
}

// MustRegister is Register for start-up code: it panics on error.
func (m *Manager) MustRegister(p Projector, opts ...Option) {
	if err := m.Register(p, opts...); err != nil {
		panic(err)
	}
}

// Names returns the registered projection names, sorted.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.projections))
	for n := range m.projections {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Projector returns the projector registered under name.
func (m *Manager) Projector(name string) (Projector, error) {
	r, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	return r.p, nil
}

func (m *Manager) lookup(name string) (*registered, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.projections[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return r, nil
}

// controlQueries is the SQL over the control tables of one store schema.
type controlQueries struct {
	ensure, state, setState, fail, setVersion, deadLetter, deadLetters, deadLetterByID, deleteDeadLetter, touchDeadLetter, countDeadLetters, clearDeadLetters, control string
	requestRetry, takeRetryRequests, pendingRetryRequests                                                                                                              string
}

func newControlQueries(schema string) controlQueries {
	r := strings.NewReplacer("{s}", schema)
	return controlQueries{
		ensure:     r.Replace(`INSERT INTO {s}.projections (name, version) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`),
		state:      r.Replace(`SELECT state FROM {s}.projections WHERE name = $1`),
		setState:   r.Replace(`UPDATE {s}.projections SET state = $2, updated_at = now(), error = CASE WHEN $2 = 'failed' THEN error END, failed_event_id = CASE WHEN $2 = 'failed' THEN failed_event_id END, failed_pos_tx = CASE WHEN $2 = 'failed' THEN failed_pos_tx END, failed_pos_seq = CASE WHEN $2 = 'failed' THEN failed_pos_seq END WHERE name = $1`),
		fail:       r.Replace(`UPDATE {s}.projections SET state = 'failed', error = $2, failed_event_id = $3, failed_pos_tx = $4, failed_pos_seq = $5, updated_at = now() WHERE name = $1`),
		setVersion: r.Replace(`UPDATE {s}.projections SET version = $2, updated_at = now() WHERE name = $1`),
		deadLetter: r.Replace(`INSERT INTO {s}.dead_letters (projection, event_id, stream_id, stream_version, pos_tx, pos_seq, event_type, error, attempts, first_failed_at, last_failed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp() - $10::bigint * interval '1 microsecond', clock_timestamp())
			ON CONFLICT (projection, event_id) DO UPDATE SET error = excluded.error, attempts = {s}.dead_letters.attempts + excluded.attempts, last_failed_at = excluded.last_failed_at`),
		deadLetters: r.Replace(`SELECT id, projection, event_id, stream_id, stream_version, pos_tx, pos_seq, event_type, error, attempts, first_failed_at, last_failed_at
			FROM {s}.dead_letters WHERE projection = $1 ORDER BY pos_tx, pos_seq`),
		deadLetterByID: r.Replace(`SELECT id, projection, event_id, stream_id, stream_version, pos_tx, pos_seq, event_type, error, attempts, first_failed_at, last_failed_at
			FROM {s}.dead_letters WHERE projection = $1 AND id = $2`),
		deleteDeadLetter: r.Replace(`DELETE FROM {s}.dead_letters WHERE id = $1`),
		// requestRetry marks dead letters (all of the projection's when $2
		// is empty) for the projection's leader to retry; it returns the
		// IDs marked.
		requestRetry: r.Replace(`UPDATE {s}.dead_letters SET retry_requested_at = clock_timestamp()
			WHERE projection = $1 AND (coalesce(cardinality($2::bigint[]), 0) = 0 OR id = ANY($2)) RETURNING id`),
		// takeRetryRequests clears the requests of a projection and returns
		// their dead letters' IDs: each request is taken once.
		takeRetryRequests: r.Replace(`UPDATE {s}.dead_letters SET retry_requested_at = NULL
			WHERE projection = $1 AND retry_requested_at IS NOT NULL RETURNING id`),
		pendingRetryRequests: r.Replace(`SELECT count(*) FROM {s}.dead_letters
			WHERE projection = $1 AND id = ANY($2) AND retry_requested_at IS NOT NULL`),
		touchDeadLetter:  r.Replace(`UPDATE {s}.dead_letters SET error = $2, attempts = attempts + 1, last_failed_at = clock_timestamp() WHERE id = $1`),
		countDeadLetters: r.Replace(`SELECT count(*) FROM {s}.dead_letters WHERE projection = $1`),
		clearDeadLetters: r.Replace(`DELETE FROM {s}.dead_letters WHERE projection = $1`),
		control:          r.Replace(`SELECT version, state, error, failed_event_id, failed_pos_tx, failed_pos_seq, updated_at FROM {s}.projections WHERE name = $1`),
	}
}
