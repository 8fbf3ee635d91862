// Package pgnotify is one PostgreSQL notification channel as Cairn's
// stores and projection manager use it to wake other processes.
//
// A NOTIFY is sent after commit, never inside a transaction: a transaction
// that notified takes a database-wide lock at commit, which serialises
// every such commit behind the others. Pokes that land while one NOTIFY is
// on its way share the next. Each NOTIFY carries the sender's token, so the
// sender's own listener ignores what its process already knows.
//
// And a NOTIFY is sent only when another process listens. A NOTIFY is
// not free: it costs a round trip, a commit that takes that lock, and a
// wake-up of every listening connection, about as much as the append it
// announces. Most deployments run one process per schema, where nobody
// would hear it. So a process that wants the channel's notifications
// (Listen) says so on the channel when it starts and whenever asked; a
// process that sends listens for those announcements, asks who is there
// when it starts listening and every Heartbeat after, and notifies while
// another process has announced itself within the last three heartbeats,
// or while it cannot tell: its listener is not up yet, not for long enough
// to have heard the answers, or its own question has not come back lately
// (a connection that died without an error).
package pgnotify

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Interval is the least time between two NOTIFYs of one Channel: a busy
// writer costs the database at most one per interval.
const Interval = 2 * time.Millisecond

// Payload prefixes of the presence protocol. A change notification's
// payload is the bare token of its sender.
const (
	wantPrefix = "want:" // the sender listens for changes
	whoPrefix  = "who:"  // the sender asks who listens
)

// Config tunes a Channel. The zero value is usable.
type Config struct {
	// Heartbeat is how often a sender asks who listens (default 5s). It
	// stops notifying three heartbeats after another process last
	// answered.
	Heartbeat time.Duration
	// Settle is how long a sender waits after asking who listens before it
	// trusts the answers (default 250ms); until then it notifies.
	Settle time.Duration
	// OnError, when not nil, hears of a NOTIFY that could not be sent and
	// of a lost listener (the other side then relies on its polls).
	OnError func(error)
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 5 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 250 * time.Millisecond
	}
	return c
}

// Channel sends and receives notifications on one channel. Its goroutines
// start with the first Poke or Listen and end with Close.
type Channel struct {
	pool  *pgxpool.Pool
	name  string
	token string
	cfg   Config

	pokes  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	sending   bool      // the sender goroutine runs
	receiving bool      // the listener goroutine runs
	conn      *pgx.Conn // handed from Listen's connect to the listener
	informed  time.Time // from then on, others is the whole truth; zero: not listening
	echoed    time.Time // this channel's own question last came back
	others    time.Time // another process last said it listens
	onChange  func()    // set by Listen: this process wants others' changes
}

// New returns the channel called name, reached through pool.
func New(pool *pgxpool.Pool, name string, cfg Config) *Channel {
	ctx, cancel := context.WithCancel(context.Background())
	return &Channel{pool: pool, name: name, token: uuid.NewString(), cfg: cfg.withDefaults(),
		pokes: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// Own reports whether a notification's payload is this channel's.
func (c *Channel) Own(payload string) bool { return payload == c.token }

// Poke asks for a NOTIFY soon, if another process listens; it never
// blocks. After Close it does nothing.
func (c *Channel) Poke() {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	if !c.sending {
		c.sending = true
		c.wg.Add(1)
		go c.send()
	}
	c.startReceiving()
	quiet := c.quiet(time.Now())
	c.mu.Unlock()
	if quiet {
		return
	}
	select {
	case c.pokes <- struct{}{}:
	default:
	}
}

// quiet: nobody else listens, as far as the listener can tell: it has
// listened long enough to have heard the answers to its question, its
// connection still carries notifications (its own question, asked every
// heartbeat, came back lately), and no other process has announced itself
// for three heartbeats. Under mu.
func (c *Channel) quiet(now time.Time) bool {
	return !c.informed.IsZero() && now.After(c.informed) &&
		now.Sub(c.echoed) < 2*c.cfg.Heartbeat && now.Sub(c.others) > 3*c.cfg.Heartbeat
}

// Listen makes this process hear other processes' change notifications:
// onChange is called for each (several may share one call), and after the
// listener reconnects, since changes may have gone unheard meanwhile. The
// first call connects synchronously, so that a caller learns at once when
// the database is unreachable; later calls return at once, and the first
// onChange stays. Other processes notify this one from when they hear its
// announcement, a few milliseconds after Listen returns; onChange is also
// called once shortly after, so that what was appended in between is not
// left to the caller's poll.
func (c *Channel) Listen(ctx context.Context, onChange func()) error {
	c.mu.Lock()
	done := c.ctx.Err() != nil || c.onChange != nil
	running, connected := c.receiving, c.conn != nil
	c.mu.Unlock()
	if done {
		return nil
	}
	// Without the lock: a connection that hangs must not hold up Poke.
	var conn *pgx.Conn
	var err error
	switch {
	case !running:
		conn, err = c.connect(ctx)
	case !connected:
		// The listener is reconnecting: say now whether the database is
		// there.
		err = c.pool.Ping(ctx)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil || c.onChange != nil || (conn != nil && c.receiving) {
		// Closed, or another Listen or a Poke came first meanwhile.
		if conn != nil {
			_ = conn.Close(context.Background())
		}
		if c.ctx.Err() != nil || c.onChange != nil {
			return nil
		}
	} else if conn != nil {
		c.conn = conn
	}
	c.onChange = onChange
	c.startReceiving()
	c.wg.Add(1)
	go c.announce()
	return nil
}

// startReceiving starts the listener goroutine once. Under mu.
func (c *Channel) startReceiving() {
	if c.receiving {
		return
	}
	c.receiving = true
	c.wg.Add(1)
	go c.receive()
}

// Close stops the channel; a poke not sent yet is dropped.
func (c *Channel) Close() {
	c.mu.Lock() // no goroutine starts after this
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait() // the listener closes its connection
}

func (c *Channel) notify(payload string) error {
	_, err := c.pool.Exec(c.ctx, "SELECT pg_notify($1, $2)", c.name, payload)
	if err != nil && c.ctx.Err() == nil && c.cfg.OnError != nil {
		c.cfg.OnError(err)
	}
	return err
}

func (c *Channel) send() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.pokes:
		}
		_ = c.notify(c.token)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(Interval):
		}
	}
}

// announce says this process listens, at once (a sender asks again every
// heartbeat, and it answers, see listen), and then looks at the log once
// more: what other processes appended before they heard it was not
// notified.
func (c *Channel) announce() {
	defer c.wg.Done()
	_ = c.notify(wantPrefix + c.token)
	late := time.NewTimer(c.cfg.Settle)
	defer late.Stop()
	select {
	case <-c.ctx.Done():
	case <-late.C:
		c.changed()
	}
}

func (c *Channel) changed() {
	c.mu.Lock()
	fn := c.onChange
	c.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (c *Channel) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{c.name}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// receive listens until Close, reconnecting with backoff. Each time it
// starts listening it asks who else listens; it trusts the answers (and
// the senders stop notifying nobody) once Settle has passed.
func (c *Channel) receive() {
	defer c.wg.Done()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		if conn == nil {
			if !first {
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
			var err error
			if conn, err = c.connect(c.ctx); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				if c.cfg.OnError != nil {
					c.cfg.OnError(err)
				}
				continue
			}
			c.mu.Lock()
			if c.ctx.Err() != nil {
				c.mu.Unlock()
				_ = conn.Close(context.Background())
				return
			}
			c.conn = conn
			c.mu.Unlock()
			if !first {
				c.changed() // what was appended while we were deaf
			}
		}
		if c.notify(whoPrefix+c.token) == nil {
			c.mu.Lock()
			c.informed = time.Now().Add(c.cfg.Settle)
			c.mu.Unlock()
		}
		asking := make(chan struct{})
		c.wg.Add(1)
		go c.ask(asking)
		err := c.listen(conn)
		close(asking)
		c.mu.Lock()
		c.informed = time.Time{}
		if c.conn == conn {
			c.conn = nil
		}
		c.mu.Unlock()
		_ = conn.Close(context.Background())
		conn = nil
		if c.ctx.Err() != nil {
			return
		}
		if c.cfg.OnError != nil {
			c.cfg.OnError(err)
		}
		backoff = 100 * time.Millisecond
	}
}

// ask asks who listens every heartbeat until stop: the answers keep
// others fresh, and the question's own echo shows the connection alive.
func (c *Channel) ask(stop <-chan struct{}) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
			_ = c.notify(whoPrefix + c.token)
		}
	}
}

// listen handles notifications until the connection fails.
func (c *Channel) listen(conn *pgx.Conn) error {
	for {
		note, err := conn.WaitForNotification(c.ctx)
		if err != nil {
			return err
		}
		switch p := note.Payload; {
		case p == whoPrefix+c.token:
			c.mu.Lock()
			c.echoed = time.Now()
			c.mu.Unlock()
		case p == c.token || p == wantPrefix+c.token:
		case strings.HasPrefix(p, wantPrefix):
			c.mu.Lock()
			c.others = time.Now()
			c.mu.Unlock()
		case strings.HasPrefix(p, whoPrefix):
			c.mu.Lock()
			wanting := c.onChange != nil
			c.mu.Unlock()
			if wanting {
				_ = c.notify(wantPrefix + c.token)
			}
		default:
			c.changed()
		}
	}
}
