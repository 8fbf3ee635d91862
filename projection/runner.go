package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgerr"
	"github.com/cairn-es/cairn/retry"
)

// Run is the projection daemon: it applies every registered projection
// until ctx ends, then returns nil once each projection has committed or
// rolled back its batch. Many processes may Run the same projections: for
// each projection exactly one holds its leader lock (a PostgreSQL session
// advisory lock on a connection of its own) and applies it; the others
// stand by and take over within Config.LeaderRetry when it dies.
func (m *Manager) Run(ctx context.Context) error {
	names := m.Names()
	if len(names) == 0 {
		return errors.New("projection: Run with no projections registered")
	}
	var wg sync.WaitGroup
	for _, name := range names {
		r, _ := m.lookup(name)
		wg.Go(func() { m.runProjection(ctx, r) })
	}
	wg.Wait()
	return nil
}

// runProjection competes for the projection's leader lock and, holding it,
// leads; it returns when ctx ends. A standby tries again every
// Config.LeaderRetry. A failure (the database down, the leader's
// connection cut, a dependency unavailable) is retried with backoff and
// jitter up to LeaderRetry, and logged when it starts, now and then while
// it lasts, and when it is over.
func (m *Manager) runProjection(ctx context.Context, r *registered) {
	log := m.log.With("projection", r.p.Name())
	var down outage
	backoff := retry.Policy{BaseDelay: min(50*time.Millisecond, m.cfg.LeaderRetry), MaxDelay: m.cfg.LeaderRetry}
	for ctx.Err() == nil {
		err := m.tryLead(ctx, r, log, &down)
		if ctx.Err() != nil {
			return
		}
		wait := m.cfg.LeaderRetry
		if err != nil {
			down.failed(log, err, m.cfg.LeaderRetry)
			wait = backoff.Delay(down.attempts)
		}
		_ = retry.Sleep(ctx, wait)
	}
}

// tryLead connects, takes the leader lock if it is free and leads until ctx
// ends or something fails; it returns nil when another runner leads.
func (m *Manager) tryLead(ctx context.Context, r *registered, log *slog.Logger, down *outage) error {
	conn, err := pgx.ConnectConfig(ctx, m.runnerConnConfig())
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	// Closing the connection releases the leader lock.
	defer func() { _ = conn.Close(context.Background()) }()
	var leader bool
	err = conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lockKey("leader", m.schema, r.p.Name())).Scan(&leader)
	if err != nil {
		return err
	}
	if !leader {
		down.recovered(log, "standing by: another runner leads")
		return nil
	}
	log.Info("cairn: projection runner took the lead")
	return m.lead(ctx, conn, r, func(working bool) {
		// After a dependency's outage (ErrUnavailable), taking the lead
		// again proves nothing: only a batch applied (or nothing left to
		// apply) ends it, so that the retries keep backing off.
		if working || !down.dependency {
			down.recovered(log, "leading")
		}
	})
}

// runnerConnConfig is the pool's connection configuration for a leader
// connection. Without an application_name of the application's own, the
// connection is named after this process, which is what projection status
// shows as the runner holding the lock.
func (m *Manager) runnerConnConfig() *pgx.ConnConfig {
	cfg := m.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		host, _ := os.Hostname()
		cfg.RuntimeParams["application_name"] = fmt.Sprintf("cairn runner pid %d on %s", os.Getpid(), host)
	}
	return cfg
}

// outage is a runner's failures in a row.
type outage struct {
	since    time.Time // of the first failure; zero when all is well
	attempts int
	logged   time.Time
	lastErr  string
	// dependency: the last failure was a dependency's (ErrUnavailable).
	dependency bool
}

// outageLogEvery spaces the reminders that a runner is still failing.
const outageLogEvery = time.Minute

// failed records one failed attempt. A retry every second would log a line
// a second: the first failure, a new error and a reminder a minute are
// warnings, the rest debug.
func (o *outage) failed(log *slog.Logger, err error, retry time.Duration) {
	now := time.Now()
	o.attempts++
	o.dependency = errors.Is(err, ErrUnavailable)
	switch {
	case o.since.IsZero():
		o.since = now
		log.Warn("cairn: projection runner interrupted; retrying", "error", err, "retry_every", retry)
	case err.Error() != o.lastErr || now.Sub(o.logged) >= outageLogEvery:
		log.Warn("cairn: projection runner still retrying", "error", err, "down_for", now.Sub(o.since).Round(time.Millisecond), "failed_attempts", o.attempts)
	default:
		log.Debug("cairn: projection runner retry failed", "error", err, "failed_attempts", o.attempts)
		return
	}
	o.logged, o.lastErr = now, err.Error()
}

// recovered ends an outage, if there is one: the runner leads again (or
// stands by behind a runner that does).
func (o *outage) recovered(log *slog.Logger, role string) {
	if o.since.IsZero() {
		return
	}
	log.Info("cairn: projection runner recovered", "role", role, "down_for", time.Since(o.since).Round(time.Millisecond), "failed_attempts", o.attempts)
	*o = outage{}
}

// lead applies the projection while holding its leader lock on conn; up is
// called with false once the model is ready and the runner about to apply
// events, and with true whenever a batch is applied or nothing is left to
// apply.
func (m *Manager) lead(ctx context.Context, conn *pgx.Conn, r *registered, up func(working bool)) error {
	p := r.p
	if err := m.prepare(ctx, conn, p); err != nil {
		return err
	}
	up(false)
	for ctx.Err() == nil {
		running, err := m.waitRunning(ctx, conn, p.Name())
		if err != nil || !running {
			return err
		}
		if err := m.follow(ctx, conn, r, up); err != nil && !errors.Is(err, errNotRunning) && !errors.Is(err, errMoved) {
			return err
		}
	}
	return nil
}

// prepare makes sure the projection has a control row and a live model of
// the projector's version: a new projection gets an empty model; a version
// change is rebuilt blue/green while the old model keeps serving reads.
func (m *Manager) prepare(ctx context.Context, conn *pgx.Conn, p Projector) error {
	if _, err := conn.Exec(ctx, m.q.ensure, p.Name(), p.Version()); err != nil {
		return fmt.Errorf("projection %s: %w", p.Name(), err)
	}
	cp, ok, err := readCheckpoint(ctx, conn, p.Name(), false)
	if err != nil {
		return fmt.Errorf("projection %s: %w", p.Name(), err)
	}
	switch {
	case !ok:
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if err := writeLock(ctx, tx, m.schema, p.Name()); err != nil {
				return err
			}
			if _, exists, err := readCheckpoint(ctx, tx, p.Name(), false); err != nil || exists {
				return err
			}
			if _, err := tx.Exec(ctx, m.q.setVersion, p.Name(), p.Version()); err != nil {
				return err
			}
			return createModel(ctx, tx, p.Name(), p)
		})
	case cp.Version != p.Version() && m.hasSideEffects(p.Name()):
		m.log.Info("cairn: projection version changed; it has side effects, so it goes on from its checkpoint", "projection", p.Name(), "from", cp.Version, "to", p.Version())
	case cp.Version != p.Version():
		m.log.Info("cairn: projection version changed; rebuilding blue/green", "projection", p.Name(), "from", cp.Version, "to", p.Version())
		_, err = m.rebuild(ctx, conn, p, RebuildOptions{})
	}
	if err != nil {
		return fmt.Errorf("projection %s: preparing the read model: %w", p.Name(), err)
	}
	return nil
}

// waitRunning blocks while the projection is paused or failed, logging
// when it starts waiting and when it is resumed.
func (m *Manager) waitRunning(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var waiting State
	var since time.Time
	for {
		var state State
		if err := conn.QueryRow(ctx, m.q.state, name).Scan(&state); err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		if state == Running {
			if waiting != "" {
				m.log.Info("cairn: projection resumed", "projection", name, "was", waiting, "for", time.Since(since).Round(time.Millisecond))
			}
			return true, nil
		}
		if state != waiting {
			m.log.Info("cairn: projection not running; waiting for resume", "projection", name, "state", state)
			waiting, since = state, time.Now()
		}
		if retry.Sleep(ctx, 250*time.Millisecond) != nil {
			return false, nil
		}
	}
}

// follow subscribes from the live checkpoint and applies batches until the
// projection stops running, its checkpoint moves under it, or ctx ends.
func (m *Manager) follow(ctx context.Context, conn *pgx.Conn, r *registered, up func(working bool)) error {
	p := r.p
	cp, ok, err := readCheckpoint(ctx, conn, p.Name(), false)
	if err != nil {
		return err
	}
	if !ok {
		return m.prepare(ctx, conn, p) // reset or dropped: recreate, then follow again
	}
	if cp.Version != p.Version() {
		return m.prepare(ctx, conn, p)
	}
	sub, err := m.store.Subscribe(ctx, cp.Position, eventstore.SubscribeOptions{BatchSize: m.cfg.BatchSize, Types: p.EventTypes(), Linger: r.linger})
	if err != nil {
		return err
	}
	defer sub.Close()
	pos := cp.Position
	var retriesChecked time.Time
	for {
		// Retries other processes asked for (RequestRetry), at most once a
		// second: between batches, where the write lock is free.
		if time.Since(retriesChecked) >= time.Second {
			retriesChecked = time.Now()
			if err := m.retryRequested(ctx, r); err != nil {
				return err
			}
		}
		// A paused projection waiting for events would not notice; the
		// short wait lets it re-check its state.
		waitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := sub.NextBatch(waitCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, context.DeadlineExceeded) {
			up(true)
			// Nothing was consumed; the subscription stays usable. With
			// nothing to apply, a moved checkpoint (a reset) would go
			// unnoticed until the next event: look for one.
			if running, err := m.isRunning(ctx, conn, p.Name()); err != nil || !running {
				return errNotRunning
			}
			if now, ok, err := readCheckpoint(ctx, conn, p.Name(), false); err != nil || !ok || now.Position != pos || now.Version != p.Version() {
				return errMoved
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := m.applyWithPolicy(ctx, conn, r, pos, batch); err != nil {
			return err
		}
		up(true)
		pos = batch[len(batch)-1].Position
	}
}

func (m *Manager) isRunning(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var state State
	err := conn.QueryRow(ctx, m.q.state, name).Scan(&state)
	return state == Running, err
}

// applyWithPolicy applies a batch in one transaction. When that fails it
// applies the batch's events one at a time, each with the retry policy, so
// that the events before the failing one commit and only that one meets the
// failure policy. The batch itself is tried once: retrying it too would
// attempt a failing event twice Retry.MaxAttempts times. A failure of the
// database rather than of the event ends the leadership (errUnavailable).
func (m *Manager) applyWithPolicy(ctx context.Context, conn *pgx.Conn, r *registered, pos eventstore.Position, batch []eventstore.RecordedEvent) error {
	if len(batch) > 1 {
		err := m.applyTx(ctx, conn, r.p, r.p.Name(), true, m.pipelines(r.p, len(batch)), pos, batch)
		if err == nil || isControl(err) || ctx.Err() != nil {
			return err
		}
		if unavailable(conn, err) {
			return fmt.Errorf("%w: %w", errUnavailable, err)
		}
		m.log.Warn("cairn: batch failed; applying its events one by one", "projection", r.p.Name(), "error", err)
	}
	for _, e := range batch {
		if err := m.applyOne(ctx, conn, r, pos, e); err != nil {
			return err
		}
		pos = e.Position
	}
	return nil
}

// applyOne applies one event with the retry policy, then, if it still
// fails, its failure policy; nil means applied or dead-lettered.
func (m *Manager) applyOne(ctx context.Context, conn *pgx.Conn, r *registered, pos eventstore.Position, e eventstore.RecordedEvent) error {
	attempts := 0
	var firstFailed time.Time
	err := m.retry(ctx, func() error {
		attempts++
		err := m.applyTx(ctx, conn, r.p, r.p.Name(), true, false, pos, []eventstore.RecordedEvent{e})
		switch {
		case err == nil, isControl(err), ctx.Err() != nil:
			return err
		case unavailable(conn, err):
			return fmt.Errorf("%w: %w", errUnavailable, err)
		}
		if firstFailed.IsZero() {
			firstFailed = time.Now()
			if m.cfg.Retry.MaxAttempts > 1 {
				m.log.Warn("cairn: applying an event failed; retrying", "projection", r.p.Name(), "event", describe(e),
					"max_attempts", m.cfg.Retry.MaxAttempts, "error", err)
			}
		}
		return err
	})
	switch {
	case err == nil:
		if attempts > 1 {
			m.log.Info("cairn: event applied after retrying", "projection", r.p.Name(), "event", describe(e),
				"attempts", attempts, "failing_for", time.Since(firstFailed).Round(time.Millisecond))
		}
		return nil
	case isControl(err), ctx.Err() != nil, errors.Is(err, errUnavailable):
		return err
	}
	return m.giveUp(ctx, conn, r, pos, e, attempts, time.Since(firstFailed), err)
}

// describe names an event in logs: type, stream@version and position.
func describe(e eventstore.RecordedEvent) string {
	return fmt.Sprintf("%s %s@%d (position %s)", e.Type, e.StreamID, e.Version, e.Position)
}

// errUnavailable: the database or the leader's connection failed, not the
// projector. No failure policy applies: an outage must neither stop a
// projection nor dead-letter good events. The runner reconnects and goes
// on from the checkpoint, retrying the event.
var errUnavailable = errors.New("projection: database unavailable")

// unavailable tells a failure of the database or of the leader's connection
// from a failure of the event. A closed connection counts whatever the
// error says: it took the leader lock with it, so nothing more may be
// written as leader.
func unavailable(conn *pgx.Conn, err error) bool {
	return conn.IsClosed() || pgerr.Transient(err) || errors.Is(err, ErrUnavailable)
}

// isControl tells the errors that are not failures of the event.
func isControl(err error) bool {
	return errors.Is(err, errMoved) || errors.Is(err, errNotRunning)
}

// retry runs fn up to the retry policy's attempts, with backoff; a control
// error or an unavailable database ends it at once.
func (m *Manager) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn()
		if err == nil || isControl(err) || errors.Is(err, errUnavailable) || attempt >= m.cfg.Retry.MaxAttempts {
			return err
		}
		if retry.Sleep(ctx, m.cfg.Retry.Delay(attempt)) != nil {
			return ctx.Err()
		}
	}
}

// giveUp applies the failure policy to an event that kept failing; since is
// the time since its first failed attempt. It logs what it did only once
// that is recorded: when recording fails (the database went away), the
// runner retries the event after reconnecting instead.
func (m *Manager) giveUp(ctx context.Context, conn *pgx.Conn, r *registered, pos eventstore.Position, e eventstore.RecordedEvent, attempts int, since time.Duration, cause error) error {
	p := r.p
	failure := &ApplyError{Projection: p.Name(), Event: e, Attempts: attempts, Err: cause}
	if r.policy == PolicyDeadLetter {
		if err := m.deadLetter(ctx, conn, p.Name(), pos, e, attempts, since, cause); err != nil {
			return err
		}
		m.log.Error("cairn: event dead-lettered", "projection", p.Name(), "error", failure)
		return nil
	}
	if _, err := conn.Exec(ctx, m.q.fail, p.Name(), failure.Error(), e.ID, e.Position.Tx, int64(e.Position.Seq)); err != nil {
		return fmt.Errorf("projection %s: recording that %s failed: %w", p.Name(), describe(e), err)
	}
	m.log.Error("cairn: projection failed and stopped", "projection", p.Name(), "error", failure,
		"then", "fix the projector or the data, then resume the projection")
	return errNotRunning
}

// deadLetter records e as a dead letter and moves the checkpoint past it,
// provided the checkpoint is still pos.
func (m *Manager) deadLetter(ctx context.Context, conn *pgx.Conn, name string, pos eventstore.Position, e eventstore.RecordedEvent, attempts int, since time.Duration, cause error) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := writeLock(ctx, tx, m.schema, name); err != nil {
			return err
		}
		if err := useSchema(ctx, tx, name); err != nil {
			return err
		}
		cp, ok, err := readCheckpoint(ctx, tx, name, true)
		if err != nil {
			return err
		}
		if !ok || cp.Position != pos {
			return errMoved
		}
		if _, err := tx.Exec(ctx, m.q.deadLetter, name, e.ID, e.StreamID, e.Version, e.Position.Tx, int64(e.Position.Seq),
			e.Type, cause.Error(), attempts, since.Microseconds()); err != nil {
			return err
		}
		if err := advance(ctx, Direct(tx), []eventstore.RecordedEvent{e}); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", m.channel, name)
		return err
	})
}

// hasSideEffects tells whether the projection was registered WithSideEffects.
func (m *Manager) hasSideEffects(name string) bool {
	r, err := m.lookup(name)
	return err == nil && r.sideEffects
}
