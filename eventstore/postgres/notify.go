package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgnotify"
)

// notifier connects appends to subscriptions across processes.
//
// Writers do not NOTIFY inside their append transaction: PostgreSQL takes a
// database-wide lock at commit for a transaction that has notified, which
// would serialise every append through commit. A successful append wakes
// this process's subscriptions directly (only those that want its events,
// see eventstore.Broadcaster) and pokes the channel, which sends one NOTIFY
// for all pokes that arrived while the previous one was in flight, and
// none while no other process listens (see pgnotify). A NOTIFY lost to a
// crash between commit and send is caught by the subscriptions' poll.
type notifier struct {
	channel *pgnotify.Channel
	local   *eventstore.Broadcaster
}

func startNotifier(pool *pgxpool.Pool, channel string, local *eventstore.Broadcaster, log *slog.Logger) *notifier {
	return &notifier{local: local, channel: pgnotify.New(pool, channel, pgnotify.Config{OnError: func(err error) {
		log.Warn("cairn: append notifications across processes failed; subscribers will catch up on their next poll", "error", err)
	}})}
}

func (n *notifier) poke() { n.channel.Poke() }

// listen makes sure this process hears other processes' appends. The first
// call connects synchronously so a subscription fails fast when the
// database is unreachable; later reconnections happen in the background,
// each followed by a wake-up (anything appended while we were deaf is
// found by reading the log).
func (n *notifier) listen(ctx context.Context) error {
	if err := n.channel.Listen(ctx, n.local.Broadcast); err != nil {
		return fmt.Errorf("postgres: listening for other processes' appends: %w", err)
	}
	return nil
}

func (n *notifier) close() { n.channel.Close() }
