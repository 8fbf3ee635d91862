package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
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
// leads; it returns when ctx ends.
func (m *Manager) runProjection(ctx context.Context, r *registered) {
	log := m.log.With("projection", r.p.Name())
	backoff := m.cfg.LeaderRetry
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, m.pool.Config().ConnConfig.Copy())
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cairn: connecting projection runner failed", "error", err)
			}
			_ = sleep(ctx, backoff)
			continue
		}
		var leader bool
		err = conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lockKey("leader", m.schema, r.p.Name())).Scan(&leader)
		if err == nil && leader {
			log.Info("cairn: projection runner took the lead")
			err = m.lead(ctx, conn, r)
		}
		// Closing the connection releases the leader lock.
		_ = conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("cairn: projection runner stopped; retrying", "error", err)
		}
		_ = sleep(ctx, backoff)
	}
}

// lead applies the projection while holding its leader lock on conn.
func (m *Manager) lead(ctx context.Context, conn *pgx.Conn, r *registered) error {
	p := r.p
	if err := m.prepare(ctx, conn, p); err != nil {
		return err
	}
	for ctx.Err() == nil {
		running, err := m.waitRunning(ctx, conn, p.Name())
		if err != nil || !running {
			return err
		}
		if err := m.follow(ctx, conn, r); err != nil && !errors.Is(err, errNotRunning) && !errors.Is(err, errMoved) {
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

// waitRunning blocks while the projection is paused or failed.
func (m *Manager) waitRunning(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	for {
		var state State
		if err := conn.QueryRow(ctx, m.q.state, name).Scan(&state); err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		if state == Running {
			return true, nil
		}
		if sleep(ctx, 250*time.Millisecond) != nil {
			return false, nil
		}
	}
}

// follow subscribes from the live checkpoint and applies batches until the
// projection stops running, its checkpoint moves under it, or ctx ends.
func (m *Manager) follow(ctx context.Context, conn *pgx.Conn, r *registered) error {
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
	sub, err := m.store.Subscribe(ctx, cp.Position, eventstore.SubscribeOptions{BatchSize: m.cfg.BatchSize, Types: p.EventTypes()})
	if err != nil {
		return err
	}
	defer sub.Close()
	pos := cp.Position
	for {
		// A paused projection waiting for events would not notice; the
		// short wait lets it re-check its state.
		waitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := sub.NextBatch(waitCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, context.DeadlineExceeded) {
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
// attempt a failing event twice Retry.MaxAttempts times.
func (m *Manager) applyWithPolicy(ctx context.Context, conn *pgx.Conn, r *registered, pos eventstore.Position, batch []eventstore.RecordedEvent) error {
	if len(batch) > 1 {
		err := m.applyTx(ctx, conn, r.p, r.p.Name(), true, m.pipelines(r.p, len(batch)), pos, batch)
		if err == nil || isControl(err) || ctx.Err() != nil {
			return err
		}
		m.log.Warn("cairn: batch failed; applying its events one by one", "projection", r.p.Name(), "error", err)
	}
	for _, e := range batch {
		attempts := 0
		var firstFailed time.Time
		err := m.retry(ctx, func() error {
			attempts++
			err := m.applyTx(ctx, conn, r.p, r.p.Name(), true, false, pos, []eventstore.RecordedEvent{e})
			if err != nil && firstFailed.IsZero() {
				firstFailed = time.Now()
			}
			return err
		})
		if isControl(err) || ctx.Err() != nil {
			return err
		}
		if err != nil {
			if err := m.giveUp(ctx, conn, r, pos, e, attempts, time.Since(firstFailed), err); err != nil {
				return err
			}
		}
		pos = e.Position
	}
	return nil
}

// isControl tells the errors that are not failures of the event.
func isControl(err error) bool {
	return errors.Is(err, errMoved) || errors.Is(err, errNotRunning)
}

// retry runs fn up to the retry policy's attempts, with backoff.
func (m *Manager) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn()
		if err == nil || isControl(err) || attempt >= m.cfg.Retry.MaxAttempts {
			return err
		}
		if sleep(ctx, m.cfg.Retry.delay(attempt)) != nil {
			return ctx.Err()
		}
	}
}

// giveUp applies the failure policy to an event that kept failing; since is
// the time since its first failed attempt.
func (m *Manager) giveUp(ctx context.Context, conn *pgx.Conn, r *registered, pos eventstore.Position, e eventstore.RecordedEvent, attempts int, since time.Duration, cause error) error {
	p := r.p
	failure := &ApplyError{Projection: p.Name(), Event: e, Attempts: attempts, Err: cause}
	if r.policy == PolicyDeadLetter {
		m.log.Error("cairn: event dead-lettered", "projection", p.Name(), "error", failure)
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if err := writeLock(ctx, tx, m.schema, p.Name()); err != nil {
				return err
			}
			if err := useSchema(ctx, tx, p.Name()); err != nil {
				return err
			}
			cp, ok, err := readCheckpoint(ctx, tx, p.Name(), true)
			if err != nil {
				return err
			}
			if !ok || cp.Position != pos {
				return errMoved
			}
			if _, err := tx.Exec(ctx, m.q.deadLetter, p.Name(), e.ID, e.StreamID, e.Version, e.Position.Tx, int64(e.Position.Seq),
				e.Type, cause.Error(), attempts, since.Microseconds()); err != nil {
				return err
			}
			if err := advance(ctx, tx, []eventstore.RecordedEvent{e}); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", m.channel, p.Name())
			return err
		})
	}
	m.log.Error("cairn: projection failed and stopped", "projection", p.Name(), "error", failure)
	if _, err := conn.Exec(ctx, m.q.fail, p.Name(), failure.Error(), e.ID, e.Position.Tx, int64(e.Position.Seq)); err != nil {
		return err
	}
	return errNotRunning
}

// hasSideEffects tells whether the projection was registered WithSideEffects.
func (m *Manager) hasSideEffects(name string) bool {
	r, err := m.lookup(name)
	return err == nil && r.sideEffects
}
