package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgnotify"
)

// notifier connects appends to subscriptions across processes.
//
// Writers do not NOTIFY inside their append transaction: PostgreSQL takes a
// database-wide lock at commit for a transaction that has notified, which
// would serialise every append through commit. Instead a successful append
// pokes this goroutine, which sends one NOTIFY for all pokes that arrived
// while the previous one was in flight. Subscriptions in this process are
// woken directly. A NOTIFY lost to a crash between commit and send is caught
// by the subscriptions' safety-net poll.
//
// Each NOTIFY carries the notifier's token, so that the listener ignores
// its own: this process's subscriptions were woken when it appended, and
// only by the appends they want (see eventstore.Broadcaster).
type notifier struct {
	pool    *pgxpool.Pool
	channel string
	sender  *pgnotify.Sender
	local   *eventstore.Broadcaster
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listening bool
}

func startNotifier(pool *pgxpool.Pool, channel string, local *eventstore.Broadcaster, log *slog.Logger) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	sender := pgnotify.NewSender(pool, channel, func(err error) {
		log.Warn("cairn: sending append notification failed; subscribers in other processes will catch up on their next poll", "error", err)
	})
	return &notifier{pool: pool, channel: channel, sender: sender, local: local, log: log, ctx: ctx, cancel: cancel}
}

func (n *notifier) poke() { n.sender.Poke() }

// listen makes sure this process listens for other processes' appends. The
// first call connects synchronously so a subscription fails fast when the
// database is unreachable; later reconnections happen in the background.
func (n *notifier) listen(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listening {
		return nil
	}
	conn, err := n.connect(ctx)
	if err != nil {
		return err
	}
	n.listening = true
	n.wg.Add(1)
	go n.receive(conn)
	return nil
}

func (n *notifier) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, n.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("postgres: connecting the listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{n.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: LISTEN: %w", err)
	}
	return conn, nil
}

func (n *notifier) receive(conn *pgx.Conn) {
	defer n.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		for conn != nil {
			note, err := conn.WaitForNotification(n.ctx)
			if err != nil {
				_ = conn.Close(context.Background())
				conn = nil
				if n.ctx.Err() != nil {
					return
				}
				n.log.Warn("cairn: lost the notification connection; reconnecting", "error", err)
				break
			}
			backoff = 100 * time.Millisecond
			if !n.sender.Own(note.Payload) {
				n.local.Broadcast()
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		c, err := n.connect(n.ctx)
		if err != nil {
			n.log.Warn("cairn: reconnecting the notification listener failed", "error", err)
			continue
		}
		conn = c
		// Anything appended while we were deaf is found by reading the log.
		n.local.Broadcast()
	}
}

func (n *notifier) close() {
	n.cancel()
	n.wg.Wait()
	n.sender.Close()
}
