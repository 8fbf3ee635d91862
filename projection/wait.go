package projection

import (
	"context"
	"time"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgnotify"
)

// WaitFor blocks until every named projection has processed the log up to
// pos (a command's result position: the read-your-writes token), or ctx
// ends, which returns a *WaitTimeoutError naming the projection still
// behind. A projection counts as there when its checkpoint is at or past
// pos, or when pos is readable and none of the projection's event types lie
// between its checkpoint and pos. Checkpoint advances wake waiters through
// LISTEN/NOTIFY, across processes.
func (m *Manager) WaitFor(ctx context.Context, pos eventstore.Position, names ...string) error {
	regs := make([]*registered, 0, len(names))
	for _, n := range names {
		r, err := m.lookup(n)
		if err != nil {
			return err
		}
		regs = append(regs, r)
	}
	wake, stop, err := m.waiters.changes(ctx)
	if err != nil {
		return err
	}
	defer stop()
	for {
		behind, reached, err := m.firstBehind(ctx, pos, regs)
		if err != nil {
			if ctx.Err() != nil {
				return &WaitTimeoutError{Projection: behind, Want: pos, Reached: reached}
			}
			return err
		}
		if behind == "" {
			return nil
		}
		// Notifications do the waking; the poll covers a lost one.
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return &WaitTimeoutError{Projection: behind, Want: pos, Reached: reached}
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// firstBehind returns the first projection that has not reached pos, with
// its checkpoint, or "" when all have.
func (m *Manager) firstBehind(ctx context.Context, pos eventstore.Position, regs []*registered) (string, eventstore.Position, error) {
	var head *eventstore.Position
	for _, r := range regs {
		cp, ok, err := readCheckpoint(ctx, m.pool, r.p.Name(), false)
		if err != nil {
			return r.p.Name(), eventstore.Start, err
		}
		if ok && !cp.Position.Before(pos) {
			continue
		}
		if !ok || len(r.p.EventTypes()) == 0 {
			return r.p.Name(), cp.Position, nil
		}
		// The projection may simply have nothing to do up to pos.
		if head == nil {
			h, err := m.store.Head(ctx)
			if err != nil {
				return r.p.Name(), cp.Position, err
			}
			head = &h
		}
		if head.Before(pos) {
			return r.p.Name(), cp.Position, nil
		}
		next, err := m.store.ReadLog(ctx, cp.Position, eventstore.ReadLogOptions{Types: r.p.EventTypes(), Limit: 1})
		if err != nil {
			return r.p.Name(), cp.Position, err
		}
		if len(next) > 0 && !pos.Before(next[0].Position) {
			return r.p.Name(), cp.Position, nil
		}
	}
	return "", eventstore.Start, nil
}

// waitHub fans checkpoint advances out to waiters: this process's
// runners' commits directly, other processes' through the checkpoint
// channel (pgnotify: a NOTIFY after commit, never in the runner's
// transaction, coalesced, and only while another process listens).
type waitHub struct {
	fan     eventstore.Broadcaster
	channel *pgnotify.Channel
}

// checkpointed wakes the waiters after a runner's commit: this process's
// at once, other processes' through a NOTIFY. One lost (the database
// away) leaves other processes' waiters to their poll.
func (h *waitHub) checkpointed() {
	h.fan.Broadcast()
	h.channel.Poke()
}

// changes registers a waiter; the first makes this process listen for
// other processes' checkpoints.
func (h *waitHub) changes(ctx context.Context) (<-chan struct{}, func(), error) {
	if err := h.channel.Listen(ctx, h.fan.Broadcast); err != nil {
		return nil, nil, err
	}
	wake, stop := h.fan.Changes()
	return wake, stop, nil
}
