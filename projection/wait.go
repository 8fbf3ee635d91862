package projection

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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

// waitHub listens for checkpoint notifications on one connection and fans
// them out to waiters.
//
// This process's runners do not NOTIFY in their transactions: a
// transaction that notified takes a database-wide lock at commit, which
// serialised every projection's commits behind each other's. A runner's
// commit wakes this process's waiters directly, and the hub sends one
// NOTIFY, outside any transaction, for every commit that landed while the
// previous one was on its way (pgnotify.Sender), carrying the sender's
// token so that its own listener ignores it.
type waitHub struct {
	m         *Manager
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	listening bool
	fan       eventstore.Broadcaster
	sender    *pgnotify.Sender
}

// checkpointed wakes the waiters after a runner's commit: this process's
// at once, other processes' through a NOTIFY. One lost (the database
// away) leaves other processes' waiters to their poll.
func (h *waitHub) checkpointed() {
	h.fan.Broadcast()
	h.sender.Poke()
}

func (h *waitHub) changes(ctx context.Context) (<-chan struct{}, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.listening && h.ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, h.m.pool.Config().ConnConfig.Copy())
		if err != nil {
			return nil, nil, err
		}
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{h.m.channel}.Sanitize()); err != nil {
			_ = conn.Close(context.Background())
			return nil, nil, err
		}
		h.listening = true
		h.wg.Add(1)
		go h.listen(conn)
	}
	wake, stop := h.fan.Changes()
	return wake, stop, nil
}

// listen runs for the life of the process once a wait has started; on a
// lost connection it stops, and the next wait reconnects (waits meanwhile
// fall back to polling).
func (h *waitHub) listen(conn *pgx.Conn) {
	defer h.wg.Done()
	defer func() {
		_ = conn.Close(context.Background())
		h.mu.Lock()
		h.listening = false
		h.mu.Unlock()
	}()
	for {
		note, err := conn.WaitForNotification(h.ctx)
		if err != nil {
			if h.ctx.Err() == nil {
				h.m.log.Warn("cairn: checkpoint listener stopped", "error", err)
			}
			return
		}
		if !h.sender.Own(note.Payload) {
			h.fan.Broadcast()
		}
	}
}
