package shred

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLRUBoundAndOrder(t *testing.T) {
	c := newLRU(3, time.Hour)
	for i := range 10 {
		c.put(fmt.Sprint(i), Key{}, c.begin())
		require.LessOrEqual(t, c.len(), 3)
	}
	_, ok := c.get("7")
	require.True(t, ok)
	c.put("10", Key{}, c.begin()) // evicts 8, the least recently used
	_, ok = c.get("8")
	require.False(t, ok)
	for _, s := range []string{"7", "9", "10"} {
		_, ok = c.get(s)
		require.True(t, ok, s)
	}
}

// A key loaded before a Forget must not be cached after it.
func TestLRUPutAfterForgetIsDropped(t *testing.T) {
	c := newLRU(3, time.Hour)
	epoch := c.begin()
	c.forget("ann")
	c.put("ann", Key{}, epoch)
	_, ok := c.get("ann")
	require.False(t, ok)

	c.put("ann", Key{}, c.begin())
	_, ok = c.get("ann")
	require.True(t, ok)
	c.forget("ann")
	_, ok = c.get("ann")
	require.False(t, ok)
}

// An entry expires after the ttl, however recently used: other processes'
// Forget calls do not reach the cache.
func TestLRUExpires(t *testing.T) {
	now := time.Unix(0, 0)
	c := newLRU(3, time.Minute)
	c.now = func() time.Time { return now }
	c.put("ann", Key{}, c.begin())
	now = now.Add(59 * time.Second)
	_, ok := c.get("ann")
	require.True(t, ok)
	now = now.Add(time.Second)
	_, ok = c.get("ann")
	require.False(t, ok, "expired a minute after it was loaded, used or not")
	require.Zero(t, c.len())
}
