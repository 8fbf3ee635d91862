package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
)

// outboxRow is a command a saga decided, as the relay claimed it.
type outboxRow struct {
	id                       int64
	saga, instanceID         string
	commandID, commandType   string
	payload                  []byte
	correlationID, causation string
	attempts                 int
}

// relay sends queued commands until ctx ends, up to Config.Concurrency at
// once, then waits for the sends in flight: each is bounded by
// CommandTimeout, so a stop does not abandon a command mid-way.
func (m *Manager) relay(ctx context.Context, w *waker) error {
	done := make(chan struct{}, m.cfg.Concurrency)
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-done
		}
	}()
	for ctx.Err() == nil {
		for {
			select {
			case <-done:
				inflight--
				continue
			default:
			}
			break
		}
		var rows []outboxRow
		if free := m.cfg.Concurrency - inflight; free > 0 && ctx.Err() == nil {
			var err error
			if rows, err = m.claimDetached(ctx, free); err != nil {
				m.log.Warn("cairn: saga relay could not read the outbox", "error", err)
			}
		}
		for _, r := range rows {
			inflight++
			go func() {
				defer func() { done <- struct{}{} }()
				m.send(ctx, r)
			}()
		}
		if len(rows) > 0 && inflight < m.cfg.Concurrency {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
		case <-done:
			inflight--
		case <-w.relay:
		case <-time.After(m.cfg.Poll):
		}
	}
	return nil
}

// claimDetached claims without ctx's cancellation: a claim cancelled in
// flight may still commit, leaving commands leased that nobody sends until
// the lease runs out. Once claimed, they are sent (see send).
func (m *Manager) claimDetached(ctx context.Context, n int) ([]outboxRow, error) {
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return m.claim(claimCtx, n)
}

// claim leases up to n sendable commands.
func (m *Manager) claim(ctx context.Context, n int) ([]outboxRow, error) {
	rows, err := m.pool.Query(ctx, m.q.claim, m.registered(), n, m.cfg.Lease.Microseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
		var r outboxRow
		err := row.Scan(&r.id, &r.saga, &r.instanceID, &r.commandID, &r.commandType, &r.payload, &r.correlationID, &r.causation, &r.attempts)
		return r, err
	})
}

// send dispatches one claimed command and records the outcome.
func (m *Manager) send(ctx context.Context, r outboxRow) {
	// A send in flight finishes even when ctx ends (bounded by
	// CommandTimeout): abandoning it would leave it leased until the lease
	// runs out.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.CommandTimeout)
	defer cancel()
	cmd, err := m.dispatcher.Decode(r.commandType, r.payload)
	if err == nil {
		_, err = m.dispatcher.Dispatch(sendCtx, command.Envelope{
			ID: r.commandID, CorrelationID: r.correlationID, CausationID: r.causation, Payload: cmd,
		})
	}
	// Recording the outcome gets a budget of its own: the send may have
	// used up most of sendCtx's.
	recCtx, cancelRec := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancelRec()
	var outcome string
	switch {
	case err == nil:
		outcome = "sent"
		_, err = m.pool.Exec(recCtx, m.q.markSent, r.id)
	case errors.Is(err, command.ErrRejected):
		outcome = "rejected"
		if rerr := m.rejected(recCtx, r, cmd, err); rerr != nil {
			// The saga's handling of the rejection failed: retry the
			// command like any failure, so it ends dead after MaxAttempts
			// rather than coming back forever.
			outcome, err = m.retryOrDie(recCtx, r, fmt.Errorf("handling its rejection (%v): %w", err, rerr))
		}
	case permanent(err):
		outcome, err = "dead", m.dead(recCtx, r, err)
	default:
		outcome, err = m.retryOrDie(recCtx, r, err)
	}
	m.metrics.commands.WithLabelValues(r.saga, outcome).Inc()
	if err != nil {
		// The outcome is not recorded: the lease runs out and the command
		// is sent again under the same ID, which the command log dedups.
		m.log.Error("cairn: saga relay could not record a command's outcome", "saga", r.saga, "command_id", r.commandID, "error", err)
	}
}

// retryOrDie schedules another send of a failed command, with backoff, or
// gives up on it after MaxAttempts.
func (m *Manager) retryOrDie(ctx context.Context, r outboxRow, cause error) (string, error) {
	if r.attempts >= m.cfg.MaxAttempts {
		m.log.Error("cairn: saga command failed for good; its instance has failed", "saga", r.saga, "instance", r.instanceID,
			"command_id", r.commandID, "command_type", r.commandType, "attempts", r.attempts, "error", cause)
		return "dead", m.dead(ctx, r, cause)
	}
	delay := backoff(r.attempts, m.cfg.RetryBase, m.cfg.RetryMax, jitter)
	m.log.Warn("cairn: saga command failed; retrying", "saga", r.saga, "instance", r.instanceID,
		"command_id", r.commandID, "command_type", r.commandType, "attempt", r.attempts, "retry_in", delay, "error", cause)
	_, err := m.pool.Exec(ctx, m.q.markRetry, r.id, delay.Microseconds(), truncate(cause.Error()))
	return "retried", err
}

// permanent tells failures that no retry can cure.
func permanent(err error) bool {
	return errors.Is(err, command.ErrInvalidCommand) || errors.Is(err, command.ErrUnknownCommand) ||
		errors.Is(err, eventstore.ErrIdempotencyKeyReused)
}

// rejected hands a refused command back to its instance.
func (m *Manager) rejected(ctx context.Context, r outboxRow, cmd any, cause error) error {
	s, ok := m.lookup(r.saga)
	if !ok {
		return fmt.Errorf("saga %s is not registered", r.saga)
	}
	return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		inst, err := m.q.loadInstance(ctx, tx, r.saga, r.instanceID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, m.q.markDone, r.id, "rejected", truncate(cause.Error()))
		if err != nil || tag.RowsAffected() == 0 {
			return err // another relay recorded it
		}
		if !inst.exists || inst.status != StatusActive {
			return nil
		}
		fx, err := s.run(ctx, inst, message{rejection: &Rejection{
			CommandID: r.commandID, Command: cmd, Type: r.commandType, Reason: cause.Error(),
		}, now: time.Now()})
		if err != nil {
			return err
		}
		_, err = m.q.persist(ctx, tx, r.saga, inst, fx, "rejected:"+r.commandID, r.commandID)
		return err
	})
}

// dead gives up on a command and fails its instance, in one transaction.
// An instance still active runs its registered compensations, last first,
// as a failed step should; one that had already ended is marked failed so
// that its outcome does not hide the dead command.
func (m *Manager) dead(ctx context.Context, r outboxRow, cause error) error {
	return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		inst, err := m.q.loadInstance(ctx, tx, r.saga, r.instanceID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, m.q.markDone, r.id, "dead", truncate(cause.Error()))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		outcome := truncate(fmt.Sprintf("command %s %s failed: %v", r.commandType, r.commandID, cause))
		if !inst.exists || inst.status != StatusActive {
			_, err = tx.Exec(ctx, m.q.failInstance, r.saga, r.instanceID, outcome)
			return err
		}
		fx := &effects{state: inst.state, status: StatusFailed, outcome: outcome}
		for i := len(inst.compensations) - 1; i >= 0; i-- {
			fx.sends = append(fx.sends, inst.compensations[i])
		}
		_, err = m.q.persist(ctx, tx, r.saga, inst, fx, "dead:"+r.commandID, r.commandID)
		return err
	})
}

func truncate(s string) string {
	const limit = 2000
	if len(s) > limit {
		return s[:limit]
	}
	return s
}
