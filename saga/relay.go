package saga

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgerr"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/retry"
)

// outboxRow is a command a saga decided, as the relay claimed it.
type outboxRow struct {
	id                       int64
	saga, instanceID         string
	commandID, commandType   string
	payload                  []byte
	correlationID, causation string
	attempts                 int
	// traceContext: the queueing step's trace context (see startSend).
	traceContext map[string]string
}

// relay sends queued commands until ctx ends, up to Config.Concurrency at
// once, then waits for the sends in flight: each is bounded by
// CommandTimeout, so a stop does not abandon a command mid-way. While a
// command is being sent (and until its outcome is recorded) its lease is
// renewed, so the lease can be short: a relay that died is replaced within
// one Lease, not after the longest send. The commands sent are marked sent
// in the same round trip as the next claim (see markAndClaim).
func (m *Manager) relay(ctx context.Context, w *waker) error {
	done := make(chan sendResult, m.cfg.Concurrency)
	leases := newLeaseSet()
	stopRenewing := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		m.renewLeases(ctx, leases, stopRenewing)
	}()
	inflight := 0
	var sent []int64 // sent and not yet marked sent; still leased
	finish := func(r sendResult) {
		inflight--
		if r.sent {
			sent = append(sent, r.id)
		} else {
			leases.remove(r.id)
		}
	}
	defer func() {
		for inflight > 0 {
			finish(<-done)
		}
		m.flushSent(ctx, sent, leases)
		close(stopRenewing)
		<-renewed
	}()
	for ctx.Err() == nil {
		for drained := false; !drained; {
			select {
			case r := <-done:
				finish(r)
			default:
				drained = true
			}
		}
		rows, err := m.markAndClaim(ctx, sent, m.cfg.Concurrency-inflight)
		if err != nil {
			m.log.Warn("cairn: saga relay could not read the outbox", "error", err)
		} else {
			leases.remove(sent...)
			sent = sent[:0]
		}
		for _, r := range rows {
			inflight++
			leases.add(r.id)
			go func() { done <- sendResult{id: r.id, sent: m.send(ctx, r)} }()
		}
		// No claim again at once: fewer rows than asked for means none
		// is sendable now, and a full claim leaves no room. The next
		// claim follows a send's end (which may free its instance's next
		// command), a notification or the poll.
		select {
		case <-ctx.Done():
		case r := <-done:
			finish(r)
		case <-w.relay:
		case <-time.After(m.cfg.Poll):
		}
	}
	return nil
}

// sendResult is what became of one send: sent, for a command the
// dispatcher accepted whose "sent" mark is left to the relay's loop.
type sendResult struct {
	id   int64
	sent bool
}

// markAndClaim marks the commands sent and leases up to n sendable ones, in
// one round trip and one transaction: a command's successor in its
// instance's queue can be claimed in the same statement that follows its
// mark. It runs without ctx's cancellation: a claim cancelled in flight
// may still commit, leaving commands leased that nobody sends until the
// lease runs out. Once claimed, they are sent (see send).
func (m *Manager) markAndClaim(ctx context.Context, sent []int64, n int) ([]outboxRow, error) {
	if len(sent) == 0 && (n <= 0 || ctx.Err() != nil) {
		return nil, nil
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var b pgx.Batch
	if len(sent) > 0 {
		b.Queue(m.q.markSent, sent)
	}
	var rows []outboxRow
	if n > 0 && ctx.Err() == nil {
		b.Queue(m.q.claim, m.registered(), n, m.cfg.Lease.Microseconds()).Query(func(rs pgx.Rows) error {
			var err error
			rows, err = pgx.CollectRows(rs, scanOutboxRow)
			return err
		})
	}
	if err := m.pool.SendBatch(bctx, &b).Close(); err != nil {
		return nil, err
	}
	return rows, nil
}

func scanOutboxRow(row pgx.CollectableRow) (outboxRow, error) {
	var r outboxRow
	err := row.Scan(&r.id, &r.saga, &r.instanceID, &r.commandID, &r.commandType, &r.payload, &r.correlationID, &r.causation, &r.attempts, &r.traceContext)
	return r, err
}

// flushSent marks the last commands sent when the relay stops, trying
// again while the database is away (for up to recordBudget); whatever is
// left unmarked is sent again once its lease runs out, and deduplicated.
func (m *Manager) flushSent(ctx context.Context, sent []int64, leases *leaseSet) {
	giveUp := time.Now().Add(recordBudget)
	for attempt := 1; len(sent) > 0; attempt++ {
		_, err := m.markAndClaim(ctx, sent, 0)
		if err == nil {
			leases.remove(sent...)
			return
		}
		if !pgerr.Transient(err) || time.Now().After(giveUp) {
			m.log.Error("cairn: saga relay could not mark commands sent; they will be sent again when their leases run out",
				"commands", len(sent), "error", err)
			return
		}
		_ = retry.Sleep(context.WithoutCancel(ctx), m.recordRetry().Delay(attempt))
	}
}

// leaseSet is the outbox rows this relay is sending.
type leaseSet struct {
	mu  sync.Mutex
	ids map[int64]struct{}
}

func newLeaseSet() *leaseSet { return &leaseSet{ids: map[int64]struct{}{}} }

func (l *leaseSet) add(id int64) {
	l.mu.Lock()
	l.ids[id] = struct{}{}
	l.mu.Unlock()
}

func (l *leaseSet) remove(ids ...int64) {
	l.mu.Lock()
	for _, id := range ids {
		delete(l.ids, id)
	}
	l.mu.Unlock()
}

func (l *leaseSet) list() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]int64, 0, len(l.ids))
	for id := range l.ids {
		ids = append(ids, id)
	}
	return ids
}

// renewLeases extends the leases of the rows being sent, every third of a
// Lease, until stop is closed (after the last send has finished, which may
// be after ctx ended). A renewal that fails is tried again at the next
// tick: if the database stays away longer than a Lease another relay may
// claim the command and send it too, which the command log makes harmless.
func (m *Manager) renewLeases(ctx context.Context, leases *leaseSet, stop <-chan struct{}) {
	t := time.NewTicker(m.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ids := leases.list()
		if len(ids) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Lease/3)
		_, err := m.pool.Exec(rctx, m.q.renew, ids, m.cfg.Lease.Microseconds())
		cancel()
		if err != nil {
			m.log.Warn("cairn: saga relay could not renew its leases", "commands", len(ids), "error", err)
		}
	}
}

// send dispatches one claimed command and records the outcome, except a
// success, which it reports for the relay's loop to mark (see
// markAndClaim).
func (m *Manager) send(ctx context.Context, r outboxRow) (sent bool) {
	ctx, span := m.startSend(ctx, r)
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
	if err == nil {
		m.metrics.commands.WithLabelValues(r.saga, "sent").Inc()
		endSend(span, "sent", nil)
		return true
	}
	outcome, rerr := m.recordOutcome(ctx, r, cmd, err)
	endSend(span, outcome, err)
	m.metrics.commands.WithLabelValues(r.saga, outcome).Inc()
	if rerr != nil {
		// The outcome is not recorded: the lease runs out (within one
		// Lease) and the command is sent again under the same ID, which
		// the command log turns into a no-op.
		m.log.Error("cairn: saga relay could not record a command's outcome; it will be sent again when its lease runs out",
			"saga", r.saga, "command_id", r.commandID, "outcome", outcome, "error", rerr)
	}
	return false
}

// recordRetry spaces the attempts at recording an outcome while the
// database is away: the send's own backoff, capped at a second, since the
// command stays leased meanwhile.
func (m *Manager) recordRetry() retry.Policy {
	return retry.Policy{BaseDelay: m.cfg.Retry.BaseDelay, MaxDelay: time.Second}.WithDefaults(m.cfg.Retry)
}

// recordBudget bounds the attempts to record one send's outcome while the
// database is unavailable; the command's lease is renewed meanwhile.
const recordBudget = 30 * time.Second

// recordOutcome records what became of a failed send, trying again with backoff
// while the database cannot be reached, so that a short outage does not
// leave the command leased.
func (m *Manager) recordOutcome(ctx context.Context, r outboxRow, cmd any, sendErr error) (string, error) {
	giveUp := time.Now().Add(recordBudget)
	for attempt := 1; ; attempt++ {
		recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		outcome, err := m.recordOnce(recCtx, r, cmd, sendErr)
		cancel()
		if err == nil || !pgerr.Transient(err) || time.Now().After(giveUp) {
			return outcome, err
		}
		if retry.Sleep(context.WithoutCancel(ctx), m.recordRetry().Delay(attempt)) != nil {
			return outcome, err
		}
	}
}

func (m *Manager) recordOnce(ctx context.Context, r outboxRow, cmd any, err error) (string, error) {
	switch {
	case errors.Is(err, command.ErrRejected):
		if rerr := m.rejected(ctx, r, cmd, err); rerr != nil {
			if pgerr.Transient(rerr) {
				return "rejected", rerr // recorded again once the database answers
			}
			// The saga's handling of the rejection failed: retry the
			// command like any failure, so it ends dead after MaxAttempts
			// rather than coming back forever.
			return m.retryOrDie(ctx, r, fmt.Errorf("handling its rejection (%v): %w", err, rerr))
		}
		return "rejected", nil
	case permanent(err):
		return "dead", m.dead(ctx, r, err)
	case pgerr.Transient(err):
		return m.retrySoon(ctx, r, err)
	default:
		return m.retryOrDie(ctx, r, err)
	}
}

// retrySoon releases a command whose send failed because the database was
// unavailable: it is tried again after the shortest backoff, and the
// attempt does not count towards MaxAttempts, so an outage kills nothing.
func (m *Manager) retrySoon(ctx context.Context, r outboxRow, cause error) (string, error) {
	delay := m.cfg.Retry.Delay(1)
	m.log.Warn("cairn: saga command not sent, the database is unavailable; retrying", "saga", r.saga, "instance", r.instanceID,
		"command_id", r.commandID, "command_type", r.commandType, "retry_in", delay, "error", cause)
	_, err := m.pool.Exec(ctx, m.q.markRetryUncounted, r.id, delay.Microseconds(), truncate(cause.Error()))
	return "retried", err
}

// retryOrDie schedules another send of a failed command, with backoff, or
// gives up on it after MaxAttempts.
func (m *Manager) retryOrDie(ctx context.Context, r outboxRow, cause error) (string, error) {
	if r.attempts >= m.cfg.Retry.MaxAttempts {
		m.log.Error("cairn: saga command failed for good; its instance has failed", "saga", r.saga, "instance", r.instanceID,
			"command_id", r.commandID, "command_type", r.commandType, "attempts", r.attempts, "error", cause)
		return "dead", m.dead(ctx, r, cause)
	}
	delay := m.cfg.Retry.Delay(r.attempts)
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
		inst, err := m.q.loadInstance(ctx, projection.Direct(tx), r.saga, r.instanceID)
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
		return m.persist(ctx, projection.Direct(tx), s, inst, fx, "rejected:"+r.commandID, r.commandID, time.Now())
	})
}

// dead gives up on a command and fails its instance, in one transaction.
// An instance still active runs its registered compensations, last first,
// as a failed step should; one that had already ended is marked failed so
// that its outcome does not hide the dead command.
func (m *Manager) dead(ctx context.Context, r outboxRow, cause error) error {
	return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		inst, err := m.q.loadInstance(ctx, projection.Direct(tx), r.saga, r.instanceID)
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
			fx.sends = append(fx.sends, queuedCommand{storedCommand: inst.compensations[i]})
		}
		_, err = m.q.persist(ctx, projection.Direct(tx), r.saga, inst, fx, "dead:"+r.commandID, r.commandID)
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
