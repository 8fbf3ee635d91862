package saga

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-es/cairn/command"
)

// Backpressure: a burst of commands from outside turns into ten or so saga
// commands each, which the relay sends at its own pace. Without a bound the
// queue grows without limit and every order in it waits longer. Admit
// refuses new work (before anything is appended) while the relay's backlog
// is past Config.BacklogMaxAge or Config.BacklogMaxCommands, or a saga has
// fallen more than BacklogMaxAge behind the log, and admits it
// again on its own once the backlog drains. The backlog is measured by Run
// a few times a second, so Admit costs no round trip.

// backlog is the relay's queue as last measured.
type backlog struct {
	commands int64
	age      time.Duration // of the oldest command waiting to be sent
	lag      time.Duration // of the oldest event a saga has not handled
	at       time.Time     // zero: never measured
}

type backlogWatch struct {
	mu   sync.Mutex
	last backlog
}

func (w *backlogWatch) set(b backlog) {
	w.mu.Lock()
	w.last = b
	w.mu.Unlock()
}

func (w *backlogWatch) get() backlog {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Admit reports whether the service may take on new work now: nil, or a
// *command.OverloadedError (errors.Is command.ErrOverloaded) saying which
// bound the saga backlog passed and when to try again. The server calls it
// for every command route before dispatching (see app). It admits
// everything when the backlog has not been measured lately (Run not
// running, or the database not answering: those failures speak for
// themselves).
func (m *Manager) Admit(context.Context) error {
	b := m.backlog.get()
	if b.at.IsZero() || time.Since(b.at) > m.backlogStale() {
		return nil
	}
	var reason string
	switch {
	case m.cfg.BacklogMaxAge > 0 && b.age > m.cfg.BacklogMaxAge:
		reason = fmt.Sprintf("saga commands have waited %.1fs to be sent (bound %s)", b.age.Seconds(), m.cfg.BacklogMaxAge)
	case m.cfg.BacklogMaxAge > 0 && b.lag > m.cfg.BacklogMaxAge:
		reason = fmt.Sprintf("the sagas are %.1fs behind the log (bound %s)", b.lag.Seconds(), m.cfg.BacklogMaxAge)
	case m.cfg.BacklogMaxCommands > 0 && b.commands > int64(m.cfg.BacklogMaxCommands):
		reason = fmt.Sprintf("%d saga commands are waiting to be sent (bound %d)", b.commands, m.cfg.BacklogMaxCommands)
	default:
		return nil
	}
	m.metrics.refused.Inc()
	return &command.OverloadedError{Reason: reason, RetryAfter: m.cfg.BacklogRetryAfter}
}

// backlogStale is how old a measure may be before Admit stops trusting it.
func (m *Manager) backlogStale() time.Duration { return 10 * m.backlogEvery() }

func (m *Manager) backlogEvery() time.Duration { return min(m.cfg.Poll, 250*time.Millisecond) }

// watchBacklog measures the relay's backlog until ctx ends.
func (m *Manager) watchBacklog(ctx context.Context, _ *waker) error {
	t := time.NewTicker(m.backlogEvery())
	defer t.Stop()
	for {
		if err := m.measureBacklog(ctx); err != nil && ctx.Err() == nil {
			m.log.Debug("cairn: measuring the saga backlog failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) measureBacklog(ctx context.Context) error {
	var b backlog
	var secs float64
	if err := m.pool.QueryRow(ctx, m.q.backlog, m.registered()).Scan(&b.commands, &secs); err != nil {
		return err
	}
	b.age, b.at = time.Duration(secs*float64(time.Second)), time.Now()
	since, err := m.unhandledSince(ctx)
	if err != nil {
		return err
	}
	for _, t := range since {
		b.lag = max(b.lag, time.Since(t))
	}
	m.backlog.set(b)
	m.metrics.eventLag.Set(b.lag.Seconds())
	m.metrics.backlogCommands.Set(float64(b.commands))
	m.metrics.backlogAge.Set(b.age.Seconds())
	return nil
}
