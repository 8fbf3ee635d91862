package eventstore

import (
	"context"
	"sync"
	"time"
)

// SubscribeOptions tunes a subscription. BatchSize bounds each read (and so
// the memory a subscriber holds: backpressure is the subscriber's own pace,
// since nothing is read ahead of NextBatch). Types and Categories filter on
// the server. PollInterval is the safety-net poll for wake-ups that never
// come (a writer that died between commit and notify); it is not how a live
// subscription learns of new events.
type SubscribeOptions struct {
	BatchSize    int
	Types        []string
	Categories   []string
	PollInterval time.Duration
	// Linger delays the read that follows a wake-up, so that what is
	// appended meanwhile comes in the same batch: for consumers that trade
	// that much freshness for fewer reads and fewer transactions (a read
	// model nobody waits on). Zero reads at once.
	Linger time.Duration
}

// DefaultPollInterval is the safety-net poll of a subscription.
const DefaultPollInterval = time.Second

// Subscription catches up from a position and then follows the live log.
// It is pull-based: NextBatch blocks until at least one event after the
// current position can be delivered. A Subscription is used by one goroutine.
type Subscription struct {
	reader LogReader
	wake   <-chan struct{}
	stop   func()
	opts   SubscribeOptions
	pos    Position
	buf    []RecordedEvent
	// caughtUp: the last read returned everything committed that this
	// subscription wants, and said so (a HoldbackReader's page short of
	// BatchSize with nothing held back). Anything appended since then
	// signals a wake-up, so the next read waits for one.
	caughtUp bool

	closeOnce sync.Once
	closed    chan struct{}
}

// NewSubscription builds a subscription on any LogReader and Notifier; stores
// return it from Subscribe so that catch-up and waiting live in one place.
func NewSubscription(reader LogReader, notifier Notifier, after Position, opts SubscribeOptions) *Subscription {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchSize > MaxBatchSize {
		opts.BatchSize = MaxBatchSize
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	var wake <-chan struct{}
	var stop func()
	if f, ok := notifier.(FilteringNotifier); ok {
		wake, stop = f.ChangesOf(opts.Types, opts.Categories)
	} else {
		wake, stop = notifier.Changes()
	}
	return &Subscription{reader: reader, wake: wake, stop: stop, opts: opts, pos: after, closed: make(chan struct{})}
}

// Position is the position of the last event delivered (or the starting
// position before any): the checkpoint to resume from.
func (s *Subscription) Position() Position { return s.pos }

// Next returns the next event, blocking until there is one.
func (s *Subscription) Next(ctx context.Context) (RecordedEvent, error) {
	if len(s.buf) == 0 {
		batch, err := s.NextBatch(ctx)
		if err != nil {
			return RecordedEvent{}, err
		}
		s.buf = batch
	}
	e := s.buf[0]
	s.buf = s.buf[1:]
	return e, nil
}

// NextBatch returns the next 1 to BatchSize events in log order, blocking
// until there is at least one. Position() afterwards is the last one's.
func (s *Subscription) NextBatch(ctx context.Context) ([]RecordedEvent, error) {
	if len(s.buf) > 0 {
		b := s.buf
		s.buf = nil
		return b, nil
	}
	// After a wake-up that finds nothing new, the writer's events can be
	// held back by an older transaction still in flight; retry soon, backing
	// off to at most maxRetry until something is delivered. A reader that
	// says when events are held back (HoldbackReader) is re-read while
	// they are, whether or not a wake-up came: its wake-up may have been
	// spent on the events read before them.
	const firstRetry, maxRetry = time.Millisecond, 100 * time.Millisecond
	retry := time.Duration(0)
	for {
		select {
		case <-s.closed:
			return nil, ErrSubscriptionClosed
		default:
		}
		if s.caughtUp {
			// Nothing to read until a wake-up (or the poll) says so: an
			// append after the last read's snapshot signalled after its
			// commit, and the signal waits in s.wake.
			if err := s.wait(ctx, s.opts.PollInterval); err != nil {
				return nil, err
			}
			s.caughtUp = false
			continue
		}
		events, heldBack, known, err := s.read(ctx)
		if err != nil {
			return nil, err
		}
		s.caughtUp = known && !heldBack && len(events) < s.opts.BatchSize
		if len(events) > 0 {
			s.pos = events[len(events)-1].Position
			return events, nil
		}
		s.caughtUp = false
		switch {
		case known && heldBack:
			if retry == 0 {
				retry = firstRetry
			}
		case known:
			// Nothing this subscription wants is committed: the wake-up
			// was for events it filters out. Wait for the next one.
			retry = 0
		}
		// Held-back events are re-read soon, lingering or not: the linger
		// is for new events.
		wait, linger := s.opts.PollInterval, retry == 0
		if retry > 0 {
			wait = min(retry, s.opts.PollInterval)
			retry = min(2*retry, maxRetry)
		}
		woken, err := s.waitWoken(ctx, wait, linger)
		if err != nil {
			return nil, err
		}
		if woken {
			retry = firstRetry
		}
	}
}

// wait waits for a wake-up or d, whichever comes first, then lingers.
func (s *Subscription) wait(ctx context.Context, d time.Duration) error {
	_, err := s.waitWoken(ctx, d, true)
	return err
}

// waitWoken waits for a wake-up or d and says which came; then, after a
// wake-up and when linger is set, for the Linger.
func (s *Subscription) waitWoken(ctx context.Context, d time.Duration, linger bool) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-s.closed:
		return false, ErrSubscriptionClosed
	case <-t.C:
		return false, nil
	case <-s.wake:
	}
	if !linger || s.opts.Linger <= 0 {
		return true, nil
	}
	t.Reset(s.opts.Linger)
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case <-s.closed:
		return true, ErrSubscriptionClosed
	case <-t.C:
		return true, nil
	}
}

// read reads the next batch and whether events after it are held back;
// known is false for a reader that cannot tell.
func (s *Subscription) read(ctx context.Context) (events []RecordedEvent, heldBack, known bool, err error) {
	opts := ReadLogOptions{Limit: s.opts.BatchSize, Types: s.opts.Types, Categories: s.opts.Categories}
	if h, ok := s.reader.(HoldbackReader); ok {
		events, heldBack, err = h.ReadLogHoldback(ctx, s.pos, opts)
		return events, heldBack, true, err
	}
	events, err = s.reader.ReadLog(ctx, s.pos, opts)
	return events, false, false, err
}

// Close releases the subscription's wake-up registration. It is safe to call
// more than once and from another goroutine.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.stop()
	})
	return nil
}

// FilteringNotifier is a Notifier that can wake a listener only for
// appends that may hold events it wants: a subscription filtering on types
// or categories is then not woken, and does not read the log, for every
// append of events it would filter out.
type FilteringNotifier interface {
	Notifier
	ChangesOf(types, categories []string) (wake <-chan struct{}, stop func())
}

// Broadcaster is a FilteringNotifier that fans one signal out to every
// registered listener without ever blocking the signaller: each listener's
// channel holds at most one pending wake-up.
type Broadcaster struct {
	mu        sync.Mutex
	listeners map[chan struct{}]wakeFilter
}

// wakeFilter is what a listener wants; empty sets want everything.
type wakeFilter struct {
	types, categories map[string]bool
}

func (f wakeFilter) wants(category string, types []string) bool {
	if len(f.categories) > 0 && !f.categories[category] {
		return false
	}
	if len(f.types) == 0 {
		return true
	}
	for _, t := range types {
		if f.types[t] {
			return true
		}
	}
	return false
}

func setOf(values []string) map[string]bool {
	if len(values) == 0 {
		return nil
	}
	set := make(map[string]bool, len(values))
	for _, v := range values {
		set[v] = true
	}
	return set
}

// Changes registers a listener woken by every signal.
func (b *Broadcaster) Changes() (<-chan struct{}, func()) { return b.ChangesOf(nil, nil) }

// ChangesOf registers a listener that BroadcastAppend wakes only for
// appends of one of types (any, when empty) to a stream of one of
// categories (any, when empty); Broadcast wakes it always.
func (b *Broadcaster) ChangesOf(types, categories []string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.listeners == nil {
		b.listeners = make(map[chan struct{}]wakeFilter)
	}
	b.listeners[ch] = wakeFilter{types: setOf(types), categories: setOf(categories)}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.listeners, ch)
		b.mu.Unlock()
	}
}

// Broadcast wakes every listener: the log may have grown in ways this
// process does not know (another process appended).
func (b *Broadcaster) Broadcast() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.listeners {
		wake(ch)
	}
}

// BroadcastAppend wakes the listeners that want an append of events of
// types to a stream of category.
func (b *Broadcaster) BroadcastAppend(category string, types []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, f := range b.listeners {
		if f.wants(category, types) {
			wake(ch)
		}
	}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
