package shred

import (
	"container/list"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// maxStale bounds the old key IDs remembered per subject (see markStale).
const maxStale = 8

// lru is a bounded cache of keys by subject, least recently used out
// first, each entry for at most ttl: other processes' Forget calls do not
// evict from it, so the ttl bounds how long it serves a key deleted
// elsewhere. Its epoch counts Forget calls, so that a key loaded before a
// concurrent Forget is not cached after it (see put).
type lru struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   func() time.Time
	order *list.List // of *lruItem, most recent first
	items map[string]*list.Element
	epoch uint64
}

type lruItem struct {
	subject string
	key     Key
	expires time.Time
	// stale holds IDs of the subject's earlier keys, confirmed against
	// the table while key was current: values sealed under them need no
	// new read to be known forgotten.
	stale []uuid.UUID
}

func newLRU(size int, ttl time.Duration) *lru {
	return &lru{size: size, ttl: ttl, now: time.Now, order: list.New(), items: make(map[string]*list.Element)}
}

// item returns subject's live entry, dropping an expired one. Call with
// mu held.
func (c *lru) item(subject string) (*lruItem, bool) {
	el, ok := c.items[subject]
	if !ok {
		return nil, false
	}
	it := el.Value.(*lruItem)
	if !c.now().Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, subject)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it, true
}

func (c *lru) get(subject string) (Key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.item(subject)
	if !ok {
		return Key{}, false
	}
	return it.key, true
}

// isStale reports whether id is known to be an earlier key of subject.
func (c *lru) isStale(subject string, id uuid.UUID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.item(subject)
	return ok && slices.Contains(it.stale, id)
}

// markStale remembers id as an earlier key of subject, if subject is
// cached.
func (c *lru) markStale(subject string, id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.item(subject)
	if ok && it.key.ID != id {
		it.addStale(id)
	}
}

func (it *lruItem) addStale(id uuid.UUID) {
	if slices.Contains(it.stale, id) {
		return
	}
	if len(it.stale) == maxStale {
		it.stale = it.stale[1:]
	}
	it.stale = append(it.stale, id)
}

// begin returns the epoch to pass to put for a key about to be loaded.
func (c *lru) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put caches key for ttl unless a Forget ended since begin returned
// epoch: the key may be the one that Forget deleted.
func (c *lru) put(subject string, key Key, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	expires := c.now().Add(c.ttl)
	if el, ok := c.items[subject]; ok {
		it := el.Value.(*lruItem)
		if it.key.ID != key.ID {
			// Key IDs never come back: the replaced one is stale for good.
			it.addStale(it.key.ID)
		}
		it.key, it.expires = key, expires
		c.order.MoveToFront(el)
		return
	}
	c.items[subject] = c.order.PushFront(&lruItem{subject: subject, key: key, expires: expires})
	for c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruItem).subject)
	}
}

// forget evicts subject and starts a new epoch. Call it after the key is
// deleted from the table.
func (c *lru) forget(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[subject]; ok {
		c.order.Remove(el)
		delete(c.items, subject)
	}
	c.epoch++
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
