package kurrentdb

import (
	"context"
	"time"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

// Subscribe opens a subscription to the events after the given position.
//
// It is eventstore's generic subscription: each NextBatch is a ReadLog
// (server-side filtered, ended by the caught-up signal) and, when that
// finds nothing, a wait for a wake-up. Wake-ups come from this store's own
// appends at once and, for appends by any other writer, from one live
// $all subscription per Store (see Changes). This keeps the contract of
// eventstore.Subscription exactly: nothing is read ahead of NextBatch, so
// a slow subscriber holds no buffer, and Position is always the last
// delivered event's.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (*eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return eventstore.NewSubscription(s, s, after, opts), nil
}

// Changes implements eventstore.Notifier. The first call starts the
// store's watcher, a live subscription to $all filtered to the store's
// streams, and waits (at most Config.WatchReadyTimeout) until the server
// has confirmed it, so that from then on an append by any writer wakes
// every listener. The watcher resubscribes after a drop and wakes every
// listener when it does, since appends may have been missed meanwhile.
func (s *Store) Changes() (<-chan struct{}, func()) {
	s.watchOnce.Do(func() {
		s.watchDone.Add(1)
		go s.watch()
	})
	t := time.NewTimer(s.cfg.WatchReadyTimeout)
	select {
	case <-s.watchReady:
	case <-s.watchCtx.Done():
	case <-t.C:
	}
	t.Stop()
	return s.changes.Changes()
}

func (s *Store) watch() {
	defer s.watchDone.Done()
	ctx := s.watchCtx
	for {
		sub, err := s.client.SubscribeToAll(ctx, kdb.SubscribeToAllOptions{
			From:   kdb.End{},
			Filter: &kdb.SubscriptionFilter{Type: kdb.StreamFilterType, Regex: s.userStreams},
		})
		if err == nil {
			s.readyOnce.Do(func() { close(s.watchReady) })
			s.changes.Broadcast()
			s.follow(sub)
			_ = sub.Close()
		}
		t := time.NewTimer(s.cfg.ReconnectDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// follow wakes the listeners for every event until the subscription drops.
func (s *Store) follow(sub *kdb.Subscription) {
	for {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			return
		case msg.EventAppeared != nil:
			s.changes.Broadcast()
		}
	}
}
