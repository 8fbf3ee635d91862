package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb"
	"github.com/cairn-es/cairn/internal/pgconnect"
)

// KurrentDBCheckTimeout bounds the first read OpenKurrentDB makes to check
// that the server answers.
const KurrentDBCheckTimeout = 10 * time.Second

// ErrNotKurrentDB matches (errors.Is) OpenKurrentDB's error for a URL that
// is not a KurrentDB connection string.
var ErrNotKurrentDB = errors.New("not a KurrentDB connection string")

// IsKurrentDBURL reports whether s is meant as a KurrentDB connection
// string: its scheme is one the KurrentDB client takes (kurrentdb://,
// kurrentdb+discover://, kdb://, esdb:// and their +discover forms).
func IsKurrentDBURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return false
	}
	switch strings.TrimSuffix(strings.ToLower(scheme), "+discover") {
	case "kurrentdb", "kurrent", "kdb", "esdb":
		return true
	}
	return false
}

// StreamPrefixParam is the query parameter of a KurrentDB connection
// string that OpenKurrentDB takes for itself: the store's
// kurrentdb.Config.StreamPrefix, which namespaces a service's log inside a
// shared server (kurrentdb://host:2113?tls=false&cairnStreamPrefix=orders.).
// It is removed before the client sees the string. Its value must be made
// of stream-ID characters (eventstore.StreamIDCharacters).
const StreamPrefixParam = "cairnStreamPrefix"

// OpenKurrentDB connects to the KurrentDB server at connString
// (kurrentdb://HOST:PORT?tls=false, say, with StreamPrefixParam if the
// log shares the server) and returns a store on it, for
// Config.EventStore, and the function that closes the store and its
// client. It reads the head of the log once, within
// KurrentDBCheckTimeout, so that a server that does not answer fails the
// start with the URL (its password masked) rather than the first command.
// The client's own log lines go to logger (default slog.Default()).
func OpenKurrentDB(ctx context.Context, connString string, logger *slog.Logger) (EventStore, func(), error) {
	if logger == nil {
		logger = slog.Default()
	}
	shown := pgconnect.Mask(connString)
	if !IsKurrentDBURL(connString) {
		return nil, nil, fmt.Errorf("app: %q: %w (kurrentdb://HOST:PORT?tls=false, say)", shown, ErrNotKurrentDB)
	}
	clientURL, prefix, err := splitStreamPrefix(connString)
	if err != nil {
		return nil, nil, fmt.Errorf("app: KurrentDB connection string %q: %w", shown, err)
	}
	conf, err := kdb.ParseConnectionString(clientURL)
	if err != nil {
		return nil, nil, fmt.Errorf("app: KurrentDB connection string %q: %w", shown, err)
	}
	conf.Logger = clientLog(logger)
	client, err := kdb.NewClient(conf)
	if err != nil {
		return nil, nil, fmt.Errorf("app: KurrentDB client for %q: %w", shown, err)
	}
	store, err := kurrentdb.New(client, kurrentdb.Config{StreamPrefix: prefix})
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("app: %w", err)
	}
	closeAll := func() {
		store.Close()
		_ = client.Close()
	}
	checkCtx, cancel := context.WithTimeout(ctx, KurrentDBCheckTimeout)
	defer cancel()
	if _, err := store.Head(checkCtx); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("app: KurrentDB at %q does not answer: %w", shown, err)
	}
	return store, closeAll, nil
}

// splitStreamPrefix takes StreamPrefixParam out of a connection string.
// The client parses the string as a URL too (with gossip seeds joined by
// commas, which net/url refuses as a host), so only the query is edited.
func splitStreamPrefix(s string) (clientURL, prefix string, err error) {
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s, "", nil
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return "", "", err
	}
	if !values.Has(StreamPrefixParam) {
		return s, "", nil
	}
	prefix = values.Get(StreamPrefixParam)
	if err := eventstore.ValidateStreamID(prefix); err != nil {
		return "", "", fmt.Errorf("%s: %w", StreamPrefixParam, err)
	}
	values.Del(StreamPrefixParam)
	if len(values) == 0 {
		return base, prefix, nil
	}
	return base + "?" + values.Encode(), prefix, nil
}

// clientLog routes the KurrentDB client's log lines to logger, at debug
// level, with the client's own level as an attribute. The client prints to
// the standard logger by default, which would mix its lines into a
// command's output, and it logs as errors what the store expects and
// handles: every read of the log ends its subscription by cancelling it
// ("subscription has dropped ... context canceled"), and the store
// resubscribes its watcher when the connection drops. What the store
// cannot handle reaches its caller as an error.
func clientLog(logger *slog.Logger) kdb.LoggingFunc {
	return func(level kdb.LogLevel, format string, args ...any) {
		logger.Debug("kurrentdb client: "+fmt.Sprintf(format, args...), "client_level", level)
	}
}
