// Package pgnotify sends PostgreSQL notifications the way Cairn's stores
// and projection manager need them: after commit, never inside a
// transaction (a transaction that notified takes a database-wide lock at
// commit, which serialises every such commit behind the others), coalesced
// (every poke that lands while one NOTIFY is on its way shares the next),
// and signed with a token so that the sender's own listener can ignore
// what its process already knows.
package pgnotify

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Interval is the least time between two NOTIFYs of one Sender: a busy
// writer costs the database at most one per interval.
const Interval = 2 * time.Millisecond

// Sender sends coalesced NOTIFYs on one channel. Its goroutine starts with
// the first Poke and ends with Close.
type Sender struct {
	pool    *pgxpool.Pool
	channel string
	token   string
	failed  func(error)

	pokes  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
}

// NewSender returns a sender of NOTIFYs on channel through pool; failed,
// when not nil, hears of a NOTIFY that could not be sent (the listeners
// then rely on their polls).
func NewSender(pool *pgxpool.Pool, channel string, failed func(error)) *Sender {
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{pool: pool, channel: channel, token: uuid.NewString(), failed: failed,
		pokes: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// Own reports whether a notification's payload is this sender's.
func (s *Sender) Own(payload string) bool { return payload == s.token }

// Poke asks for a NOTIFY soon; it never blocks. After Close it does
// nothing.
func (s *Sender) Poke() {
	s.mu.Lock()
	if !s.started && s.ctx.Err() == nil {
		s.started = true
		s.wg.Add(1)
		go s.send()
	}
	s.mu.Unlock()
	select {
	case s.pokes <- struct{}{}:
	default:
	}
}

// Close stops the sender; a poke not sent yet is dropped.
func (s *Sender) Close() {
	s.mu.Lock() // no goroutine starts after this
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Sender) send() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.pokes:
		}
		if _, err := s.pool.Exec(s.ctx, "SELECT pg_notify($1, $2)", s.channel, s.token); err != nil && s.ctx.Err() == nil && s.failed != nil {
			s.failed(err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(Interval):
		}
	}
}
