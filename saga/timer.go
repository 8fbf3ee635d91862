package saga

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/telemetry"
)

// heldBackPoll is how soon the timer looks again at a timeout that is due
// but waits for its saga to catch up with the log.
const heldBackPoll = 50 * time.Millisecond

// timer fires due timeouts until ctx ends.
func (m *Manager) timer(ctx context.Context, w *waker) error {
	const batch = 64
	for ctx.Err() == nil {
		n, err := m.fireDue(ctx, batch)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("cairn: saga timer failed; retrying", "error", err)
			wait(ctx, w.timer, m.cfg.Poll) // a failure is not a reason to spin
			continue
		}
		if n == batch {
			continue
		}
		next := m.cfg.Poll
		var secs *float64
		if err := m.pool.QueryRow(ctx, m.q.nextDue, m.registered()).Scan(&secs); err == nil && secs != nil {
			// A timeout due already is waiting for its saga to catch up
			// with the log (see unhandledSince): look again shortly.
			next = min(next, max(heldBackPoll, time.Duration(*secs*float64(time.Second))))
		}
		wait(ctx, w.timer, next)
	}
	return nil
}

type dueTimeout struct {
	saga, instanceID, name string
	due                    time.Time
}

// fireDue fires up to n due timeouts, each in a transaction of its own.
func (m *Manager) fireDue(ctx context.Context, n int) (int, error) {
	since, err := m.unhandledSince(ctx)
	if err != nil {
		return 0, err
	}
	names := m.registered()
	until := make([]time.Time, len(names))
	for i, name := range names {
		until[i] = farFuture
		if t, ok := since[name]; ok {
			until[i] = t
		}
	}
	rows, err := m.pool.Query(ctx, m.q.dueTimeouts, names, n, until)
	if err != nil {
		return 0, err
	}
	due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dueTimeout, error) {
		var d dueTimeout
		return d, row.Scan(&d.saga, &d.instanceID, &d.name, &d.due)
	})
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, d := range due {
		if err := m.fire(ctx, d); err != nil {
			errs = append(errs, err)
			// Push it back, so that a timeout whose handling keeps failing
			// neither spins nor holds the ones due after it.
			if _, perr := m.pool.Exec(ctx, m.q.postponeTimeout, d.saga, d.instanceID, d.name, d.due, m.cfg.Poll.Microseconds()); perr != nil {
				errs = append(errs, perr)
			}
		}
	}
	return len(due), errors.Join(errs...)
}

// fire hands one timeout to its instance. Deleting the row is what fires
// it, in the transaction that persists the handling: a timeout another
// process fired, or the instance cancelled or rescheduled meanwhile, is
// gone or has another due time, and is left alone.
func (m *Manager) fire(ctx context.Context, d dueTimeout) (err error) {
	s, ok := m.lookup(d.saga)
	if !ok {
		return nil
	}
	ctx, span := m.startTimeout(ctx, d.saga, d.instanceID, d.name)
	defer func() { telemetry.End(span, err) }()
	fired := false
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		inst, err := m.q.loadInstance(ctx, projection.Direct(tx), d.saga, d.instanceID)
		if err != nil {
			return err
		}
		var now time.Time
		err = tx.QueryRow(ctx, m.q.fireTimeout, d.saga, d.instanceID, d.name, d.due).Scan(&now)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if !inst.exists || inst.status != StatusActive {
			return nil
		}
		fx, err := s.run(ctx, inst, message{timeout: d.name, now: now})
		if err != nil {
			return err
		}
		cause := "timeout:" + d.name + ":" + d.due.UTC().Format(time.RFC3339Nano)
		if err := m.persist(ctx, projection.Direct(tx), s, inst, fx, cause, "timeout:"+d.name, now); err != nil {
			return err
		}
		fired = true
		return nil
	})
	if err == nil && fired {
		m.metrics.timeouts.WithLabelValues(d.saga).Inc()
	}
	if span.IsRecording() {
		outcome := "fired"
		if !fired {
			outcome = "skipped" // fired elsewhere, cancelled, or the instance ended
		}
		span.SetAttributes(AttrOutcome.String(outcome))
	}
	return err
}
