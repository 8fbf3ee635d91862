package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
)

// LagCap bounds the count of pending events in a status, so that status
// stays cheap on a projection that is far behind.
const LagCap = 1_000_000

// Status is a projection's state as status output shows it; its JSON form
// is stable for scripts.
type Status struct {
	Name       string              `json:"name"`
	Registered bool                `json:"registered"`
	Version    int                 `json:"version"`
	State      State               `json:"state"`
	Policy     string              `json:"policy,omitempty"`
	Checkpoint eventstore.Position `json:"checkpoint"`
	Head       eventstore.Position `json:"head"`
	// Lag is the number of events of the projection's types between its
	// checkpoint and the head (at most LagCap; LagCapped says it was cut).
	// LagTypesUnknown: the projection is not registered in this process,
	// whose Manager therefore does not know its event types, and Lag counts
	// every event after the checkpoint: an upper bound, larger than what the
	// application's own binary reports when the projection handles some
	// types only.
	Lag             int64 `json:"lag_events"`
	LagCapped       bool  `json:"lag_capped,omitempty"`
	LagTypesUnknown bool  `json:"lag_types_unknown,omitempty"`
	// Runner is the session holding the projection's leader lock: the
	// process applying it now. Nil when none does, whatever State says
	// (State is what the projection should do, Runner whether anything
	// does it).
	Runner *Runner `json:"runner"`
	// SinceLastApplied is the time since the projection last applied an
	// event (zero when it never has).
	LastAppliedAt    *time.Time           `json:"last_applied_at,omitempty"`
	SinceLastApplied float64              `json:"since_last_applied_seconds"`
	EventsApplied    int64                `json:"events_applied"`
	DeadLetters      int64                `json:"dead_letters"`
	Error            string               `json:"error,omitempty"`
	FailedEventID    *uuid.UUID           `json:"failed_event_id,omitempty"`
	FailedPosition   *eventstore.Position `json:"failed_position,omitempty"`
}

// Runner describes the database session of a projection's runner, from
// pg_stat_activity. The application name is the connection's own or, when
// it has none, "cairn runner pid PID on HOST"; PostgreSQL shows a session's
// details other than its PID only to its own role, a superuser or
// pg_read_all_stats.
type Runner struct {
	BackendPID  int32      `json:"backend_pid"`
	Application string     `json:"application_name,omitempty"`
	ClientAddr  string     `json:"client_addr,omitempty"`
	Since       *time.Time `json:"since,omitempty"` // the session's start
}

// String is how status output shows the runner.
func (r *Runner) String() string {
	s := fmt.Sprintf("backend %d", r.BackendPID)
	if r.Application != "" {
		s = r.Application + " (" + s + ")"
	}
	if r.ClientAddr != "" {
		s += " from " + r.ClientAddr
	}
	return s
}

// Status reports one projection, registered or only known to the database
// (for a projection of another application, the lag counts every event:
// LagTypesUnknown).
func (m *Manager) Status(ctx context.Context, name string) (Status, error) {
	st := Status{Name: name, LagTypesUnknown: true}
	var types []string
	if r, err := m.lookup(name); err == nil {
		st.Registered, st.Policy, types = true, r.policy.String(), r.p.EventTypes()
		st.LagTypesUnknown = false
	}
	var errText *string
	var failedTx *uint64
	var failedSeq *int64
	var updated time.Time
	err := m.pool.QueryRow(ctx, m.q.control, name).Scan(&st.Version, &st.State, &errText, &st.FailedEventID, &failedTx, &failedSeq, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		if !st.Registered {
			return st, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
		}
		st.State = "new"
	} else if err != nil {
		return st, fmt.Errorf("projection %s: status: %w", name, err)
	}
	if errText != nil {
		st.Error = *errText
	}
	if failedTx != nil && failedSeq != nil {
		st.FailedPosition = &eventstore.Position{Tx: *failedTx, Seq: uint64(*failedSeq)}
	}
	cp, ok, err := readCheckpoint(ctx, m.pool, name, false)
	if err != nil {
		return st, fmt.Errorf("projection %s: status: %w", name, err)
	}
	if ok {
		st.Checkpoint, st.EventsApplied, st.LastAppliedAt = cp.Position, cp.EventsApplied, cp.LastAppliedAt
		if cp.LastAppliedAt != nil {
			st.SinceLastApplied = time.Since(*cp.LastAppliedAt).Seconds()
		}
	}
	if st.Head, err = m.store.Head(ctx); err != nil {
		return st, err
	}
	if st.Lag, err = eventstore.CountLog(ctx, m.store, st.Checkpoint, eventstore.ReadLogOptions{Types: types, Limit: LagCap}); err != nil {
		return st, err
	}
	st.LagCapped = st.Lag >= LagCap
	if err := m.pool.QueryRow(ctx, m.q.countDeadLetters, name).Scan(&st.DeadLetters); err != nil {
		return st, err
	}
	if st.Runner, err = m.runner(ctx, name); err != nil {
		return st, fmt.Errorf("projection %s: looking for its runner: %w", name, err)
	}
	return st, nil
}

// runnerQuery finds the session holding a leader lock: an advisory lock on
// one bigint key shows in pg_locks as its high and low 32 bits (classid,
// objid) with objsubid 1.
const runnerQuery = `
	SELECT l.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), a.backend_start
	FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND l.classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid
	  AND l.objid = (hashtextextended($1, 0) & 4294967295)::oid`

// runner returns the session holding the projection's leader lock, or nil.
func (m *Manager) runner(ctx context.Context, name string) (*Runner, error) {
	var r Runner
	err := m.pool.QueryRow(ctx, runnerQuery, lockKey("leader", m.schema, name)).Scan(&r.BackendPID, &r.Application, &r.ClientAddr, &r.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// KnownNames returns the names of the registered projections and of those
// the database knows, sorted: every name Status accepts.
func (m *Manager) KnownNames(ctx context.Context) ([]string, error) {
	names := m.Names()
	rows, err := m.pool.Query(ctx, "SELECT name FROM "+m.schema+".projections")
	if err != nil {
		return nil, err
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, n := range known {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// StatusAll reports every registered projection and every projection the
// database knows, sorted by name.
func (m *Manager) StatusAll(ctx context.Context) ([]Status, error) {
	names, err := m.KnownNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(names))
	for _, n := range names {
		st, err := m.Status(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Pause stops the projection from applying events (in whichever process
// runs it) until Resume. It waits for a batch in flight to commit (or an
// in-place rebuild to finish): once it returns, the model no longer changes.
func (m *Manager) Pause(ctx context.Context, name string) error {
	return m.setState(ctx, name, Paused)
}

// Resume lets a paused or failed projection run again; a failed one starts
// by retrying the event it failed on.
func (m *Manager) Resume(ctx context.Context, name string) error {
	return m.setState(ctx, name, Running)
}

// setState changes the state under the write lock, which every batch holds
// while it checks the state and commits: no batch is in flight across the
// change.
func (m *Manager) setState(ctx context.Context, name string, state State) error {
	var found bool
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if err := writeLock(ctx, tx, m.schema, name); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, m.q.setState, name, state)
		found = tag.RowsAffected() > 0
		return err
	})
	if err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return nil
}

// Reset empties the projection's live model and its dead letters and sets
// its checkpoint to the start, in one transaction; the runner then replays
// the log into it. Use Rebuild to replace a model without emptying it first.
func (m *Manager) Reset(ctx context.Context, name string) error {
	r, err := m.lookup(name)
	if err != nil {
		return err
	}
	if r.sideEffects {
		return fmt.Errorf("%w: %q", ErrSideEffects, name)
	}
	return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if err := writeLock(ctx, tx, m.schema, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.q.ensure, name, r.p.Version()); err != nil {
			return err
		}
		if err := createModel(ctx, tx, name, r.p); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.q.clearDeadLetters, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.q.setVersion, name, r.p.Version()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.q.setState, name, Running); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", m.channel, name)
		return err
	})
}

// DeadLetter is an event a projection gave up on.
type DeadLetter struct {
	ID            int64               `json:"id"`
	Projection    string              `json:"projection"`
	EventID       uuid.UUID           `json:"event_id"`
	StreamID      string              `json:"stream_id"`
	StreamVersion int64               `json:"stream_version"`
	Position      eventstore.Position `json:"position"`
	EventType     string              `json:"event_type"`
	Error         string              `json:"error"`
	Attempts      int                 `json:"attempts"`
	FirstFailedAt time.Time           `json:"first_failed_at"`
	LastFailedAt  time.Time           `json:"last_failed_at"`
}

func scanDeadLetter(row pgx.CollectableRow) (DeadLetter, error) {
	var d DeadLetter
	var seq int64
	err := row.Scan(&d.ID, &d.Projection, &d.EventID, &d.StreamID, &d.StreamVersion, &d.Position.Tx, &seq, &d.EventType, &d.Error, &d.Attempts, &d.FirstFailedAt, &d.LastFailedAt)
	d.Position.Seq = uint64(seq)
	return d, err
}

// DeadLetters lists a projection's dead letters in log order.
func (m *Manager) DeadLetters(ctx context.Context, name string) ([]DeadLetter, error) {
	rows, err := m.pool.Query(ctx, m.q.deadLetters, name)
	if err != nil {
		return nil, fmt.Errorf("projection %s: dead letters: %w", name, err)
	}
	return pgx.CollectRows(rows, scanDeadLetter)
}

// Retry re-applies dead letters to the live model, in log order: the given
// IDs, or every dead letter of the projection when none are given. Each
// success removes its dead letter in the same transaction; the first
// failure stops the retry, is recorded on its dead letter, and is returned.
// A dead letter that is gone by the time its transaction holds the write
// lock (a concurrent Retry applied it, a Reset or rebuild made it moot) is
// skipped. It returns how many were applied.
func (m *Manager) Retry(ctx context.Context, name string, ids ...int64) (int, error) {
	r, err := m.lookup(name)
	if err != nil {
		return 0, err
	}
	var letters []DeadLetter
	if len(ids) == 0 {
		if letters, err = m.DeadLetters(ctx, name); err != nil {
			return 0, err
		}
	}
	for _, id := range ids {
		rows, err := m.pool.Query(ctx, m.q.deadLetterByID, name, id)
		if err != nil {
			return 0, err
		}
		d, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("%w: %s has no dead letter %d", ErrNotDeadLettered, name, id)
		}
		if err != nil {
			return 0, err
		}
		letters = append(letters, d)
	}
	slices.SortFunc(letters, func(a, b DeadLetter) int { return a.Position.Compare(b.Position) })
	applied := 0
	for _, d := range letters {
		events, err := m.store.ReadStream(ctx, d.StreamID, eventstore.ReadStreamOptions{From: d.StreamVersion, Limit: 1})
		if err != nil {
			return applied, err
		}
		if len(events) != 1 || events[0].ID != d.EventID {
			return applied, fmt.Errorf("projection %s: dead letter %d: event %s is no longer in the log", name, d.ID, d.EventID)
		}
		gone := false
		err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
			if err := writeLock(ctx, tx, m.schema, name); err != nil {
				return err
			}
			// Claim the dead letter before applying it: under the write
			// lock, only one retry can delete it.
			tag, err := tx.Exec(ctx, m.q.deleteDeadLetter, d.ID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				gone = true
				return nil
			}
			if err := useSchema(ctx, tx, name); err != nil {
				return err
			}
			return applyEvents(ctx, tx, nil, r.p, events)
		})
		if err != nil {
			_, _ = m.pool.Exec(ctx, m.q.touchDeadLetter, d.ID, err.Error())
			return applied, &ApplyError{Projection: name, Event: events[0], Attempts: d.Attempts + 1, Err: err}
		}
		if !gone {
			applied++
		}
	}
	return applied, nil
}

// RequestRetry asks the process leading the projection called name to
// retry dead letters (every one of the projection's when ids is empty), for
// a process that does not have the projection's code, such as the command
// line: the leader retries them as Retry does, within about a second while
// it runs, and clears the requests. It returns the dead letters marked; an
// ID that is not one of the projection's dead letters is an error wrapping
// ErrNotDeadLettered, and then nothing is marked. PendingRetries tells
// which requests are still waiting.
func (m *Manager) RequestRetry(ctx context.Context, name string, ids ...int64) ([]int64, error) {
	var marked []int64
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, m.q.requestRetry, name, ids)
		if err != nil {
			return err
		}
		if marked, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		if len(marked) < len(ids) {
			return fmt.Errorf("%w: %s has no dead letter %v", ErrNotDeadLettered, name, missing(ids, marked))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return marked, nil
}

// PendingRetries counts the retries of ids requested (RequestRetry) and
// not yet taken by the projection's leader.
func (m *Manager) PendingRetries(ctx context.Context, name string, ids []int64) (int, error) {
	var n int
	err := m.pool.QueryRow(ctx, m.q.pendingRetryRequests, name, ids).Scan(&n)
	return n, err
}

// missing returns the IDs of want that got lacks.
func missing(want, got []int64) []int64 {
	var out []int64
	for _, id := range want {
		if !slices.Contains(got, id) {
			out = append(out, id)
		}
	}
	return out
}

// retryRequested retries the dead letters whose retry another process
// requested (RequestRetry): the leader's part. A retry that fails is
// recorded on its dead letter, as Retry records it, and not requested
// again.
func (m *Manager) retryRequested(ctx context.Context, r *registered) error {
	name := r.p.Name()
	rows, err := m.pool.Query(ctx, m.q.takeRetryRequests, name)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return err
	}
	n, err := m.Retry(ctx, name, ids...)
	if err != nil {
		m.log.Warn("cairn: a requested retry of dead letters failed", "projection", name, "retried", n, "requested", len(ids), "error", err)
		return nil
	}
	m.log.Info("cairn: requested retry of dead letters done", "projection", name, "retried", n)
	return nil
}

// Checkpoint returns the position up to which the live model of the
// projection called name has applied the log: eventstore.Start before its
// first event, or when it has no model yet. It costs two small queries,
// unlike Status, which also counts the lag.
func (m *Manager) Checkpoint(ctx context.Context, name string) (eventstore.Position, error) {
	cp, _, err := readCheckpoint(ctx, m.pool, name, false)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("projection %s: checkpoint: %w", name, err)
	}
	return cp.Position, nil
}
