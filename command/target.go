package command

import (
	"context"
	"sync"
)

// Targeted is a command that names the aggregate it changes, usually by
// its stream ID (the role of Axon's target aggregate identifier). A dispatcher
// handles the commands with one target one at a time in its process:
// concurrent commands on a hot aggregate (a product
// every order reserves) then wait their turn instead of colliding, where
// each collision costs a reload, a failed append and a retry's backoff.
// Commands from other processes still meet the store's optimistic
// concurrency check; Targeted only spares the collisions within one.
//
// A turn is not re-entrant: a handler that dispatches, on the same
// dispatcher and in its own call, another command with the same target
// waits for itself until its context ends. Queue that command instead (a
// saga, a reaction).
type Targeted interface {
	Target() string
}

// targetOf is the target of a command, if it names one.
func targetOf(payload any) string {
	if t, ok := payload.(Targeted); ok {
		return t.Target()
	}
	return ""
}

// turns serialises the handling of commands per target: a token per
// target while any command holds or awaits it.
type turns struct {
	mu    sync.Mutex
	locks map[string]*turn
}

type turn struct {
	token chan struct{} // holds one token while the target is free
	users int           // holding or waiting
}

// take waits for the target's turn, or for ctx to end, and returns its
// release; an empty target has no turn to wait for.
func (t *turns) take(ctx context.Context, target string) (release func(), err error) {
	if target == "" {
		return func() {}, nil
	}
	t.mu.Lock()
	if t.locks == nil {
		t.locks = make(map[string]*turn)
	}
	l := t.locks[target]
	if l == nil {
		l = &turn{token: make(chan struct{}, 1)}
		l.token <- struct{}{}
		t.locks[target] = l
	}
	l.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if l.users--; l.users == 0 {
			delete(t.locks, target)
		}
		t.mu.Unlock()
	}
	select {
	case <-l.token:
		return func() { l.token <- struct{}{}; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
