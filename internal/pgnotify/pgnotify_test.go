package pgnotify_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/internal/pgnotify"
	"github.com/cairn-es/cairn/internal/pgtest"
)

// fast is a configuration whose presence protocol runs in test time.
// Its heartbeat leaves a loaded machine room: a sender trusts its own
// question only while it came back within two heartbeats.
var fast = pgnotify.Config{Heartbeat: 300 * time.Millisecond, Settle: 50 * time.Millisecond}

// rawListener is a connection that LISTENs on channel without taking part
// in the presence protocol: it sees every notification as sent.
func rawListener(ctx context.Context, t *testing.T, pool *pgxpool.Pool, channel string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	require.NoError(t, err)
	return conn
}

// changes counts the change notifications (not the presence protocol's)
// conn receives within d.
func changes(ctx context.Context, t *testing.T, conn *pgx.Conn, d time.Duration, from *pgnotify.Channel) int {
	t.Helper()
	n := 0
	deadline := time.Now().Add(d)
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		note, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			require.ErrorIs(t, wctx.Err(), context.DeadlineExceeded, "only the deadline ends the wait: %v", err)
			return n
		}
		if from.Own(note.Payload) {
			n++
		}
	}
}

// announce says, as another process would, that something listens.
func announce(ctx context.Context, t *testing.T, pool *pgxpool.Pool, channel string) {
	t.Helper()
	_, err := pool.Exec(ctx, "SELECT pg_notify($1, 'want:someone-else')", channel)
	require.NoError(t, err)
}

// Pokes in a burst share NOTIFYs, each carrying the channel's token; after
// Close a poke sends nothing and does not block.
func TestPokesAreCoalescedAndSigned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, 4)
	name := "pgnotify_" + strings.ToLower(t.Name())
	listener := rawListener(ctx, t, pool, name)

	c := pgnotify.New(pool, name, pgnotify.Config{OnError: func(err error) { t.Error(err) }})
	for range 200 {
		c.Poke()
	}
	got := changes(ctx, t, listener, 500*time.Millisecond, c)
	require.Positive(t, got, "a channel that cannot tell yet whether anyone listens notifies")
	require.Less(t, got, 50, "200 pokes in a burst share NOTIFYs")
	require.False(t, pgnotify.New(pool, name, pgnotify.Config{}).Own("x"))
	c.Close()
	c.Poke() // after Close: nothing, and no panic
}

// A channel that has heard nobody announce itself sends nothing; an
// announcement makes it notify, and three heartbeats after the last one it
// stops again.
func TestNotifiesOnlyWhileAnotherProcessListens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, 4)
	name := "pgnotify_" + strings.ToLower(t.Name())
	listener := rawListener(ctx, t, pool, name)

	c := pgnotify.New(pool, name, fast)
	defer c.Close()
	c.Poke()
	require.Eventually(t, func() bool {
		c.Poke()
		return changes(ctx, t, listener, 3*pgnotify.Interval+20*time.Millisecond, c) == 0
	}, 5*time.Second, time.Millisecond, "once it knows nobody listens, a poke sends nothing")
	for range 20 {
		c.Poke()
		time.Sleep(pgnotify.Interval)
	}
	require.Zero(t, changes(ctx, t, listener, 100*time.Millisecond, c), "nobody announced: no NOTIFY")

	announce(ctx, t, pool, name)
	require.Eventually(t, func() bool {
		c.Poke()
		return changes(ctx, t, listener, 50*time.Millisecond, c) > 0
	}, 5*time.Second, time.Millisecond, "after an announcement, pokes notify")

	time.Sleep(3*fast.Heartbeat + 50*time.Millisecond) // no more announcements
	c.Poke()
	require.Zero(t, changes(ctx, t, listener, 100*time.Millisecond, c), "three heartbeats after the last announcement, nothing")
}

// Two channels in two "processes": the one that listens hears the other's
// pokes (and not its own), answers the other's question of who listens,
// and after its connection is killed it reconnects and says something may
// have been missed.
func TestListenerHearsOthersAndSurvivesALostConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, 6)
	name := "pgnotify_" + strings.ToLower(t.Name())

	var heard atomic.Int64
	// Neither announces itself on a heartbeat during the test: the sender
	// can learn of the listener only by asking.
	once := pgnotify.Config{Heartbeat: time.Hour, Settle: 50 * time.Millisecond}
	listening := pgnotify.New(pool, name, once)
	defer listening.Close()
	require.NoError(t, listening.Listen(ctx, func() { heard.Add(1) }))
	// The late look: once, a Settle after Listen, with nothing sent.
	require.Eventually(t, func() bool { return heard.Load() == 1 }, 5*time.Second, time.Millisecond)

	// A sender that starts after the listener learns of it by asking.
	sending := pgnotify.New(pool, name, once)
	defer sending.Close()
	before := heard.Load()
	require.Eventually(t, func() bool {
		sending.Poke()
		return heard.Load() > before
	}, 5*time.Second, 5*time.Millisecond, "the listener hears the sender")
	time.Sleep(200 * time.Millisecond) // well past the sender's Settle
	before = heard.Load()
	require.Eventually(t, func() bool {
		sending.Poke()
		return heard.Load() > before
	}, 5*time.Second, 5*time.Millisecond, "the sender, informed, still notifies: the listener answered who is there")

	listening.Poke() // its own NOTIFY is not a change to it
	time.Sleep(100 * time.Millisecond)

	before = heard.Load()
	var killed int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query = 'LISTEN "'||$1||'"' AND pid <> pg_backend_pid()`, name).Scan(&killed))
	require.Equal(t, 2, killed, "both channels' listeners")
	require.Eventually(t, func() bool { return heard.Load() > before }, 5*time.Second, 5*time.Millisecond,
		"after reconnecting, the listener says something may have been missed")
	before = heard.Load()
	require.Eventually(t, func() bool {
		sending.Poke()
		return heard.Load() > before
	}, 5*time.Second, 5*time.Millisecond, "and hears the sender again")
}

// Listen says at once when the database is not there, also when a Poke
// started the listener first.
func TestListenFailsFastWithoutADatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A port nothing listens on.
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	defer pool.Close()

	c := pgnotify.New(pool, "pgnotify_nowhere", pgnotify.Config{})
	defer c.Close()
	require.Error(t, c.Listen(ctx, func() {}), "nothing to listen on")

	c2 := pgnotify.New(pool, "pgnotify_nowhere", pgnotify.Config{})
	defer c2.Close()
	c2.Poke() // starts the listener, which cannot connect
	require.Error(t, c2.Listen(ctx, func() {}), "the listener is not connected: Listen asks the database")
}
