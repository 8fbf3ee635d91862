package saga

import (
	"context"
	"time"

	"github.com/cairn-es/cairn/eventstore"
)

// unhandledSince returns, for each registered saga that has events still
// to handle, when the oldest of them was recorded. Two things use it: the
// timer, which fires no timeout due after that moment (the events before
// it may answer what the timeout is waiting for: a payment recorded before
// its deadline but not handled yet is not late), and backpressure, which
// counts a saga falling behind the log as backlog, like commands waiting
// to be sent.
func (m *Manager) unhandledSince(ctx context.Context) (map[string]time.Time, error) {
	since := map[string]time.Time{}
	for _, name := range m.registered() {
		s, ok := m.lookup(name)
		if !ok {
			continue
		}
		cp, err := m.projections.Checkpoint(ctx, ProjectionName(name))
		if err != nil {
			return nil, err
		}
		next, err := m.store.ReadLog(ctx, cp, eventstore.ReadLogOptions{Types: s.eventTypes(), Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(next) > 0 {
			since[name] = next[0].RecordedAt
		}
	}
	return since, nil
}

// farFuture stands for "no bound" where a saga has handled every event.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
