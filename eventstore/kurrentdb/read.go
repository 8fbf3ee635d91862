package kurrentdb

import (
	"context"
	"errors"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"

	kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/cairn-es/cairn/eventstore"
)

// ReadStream reads one stream; see eventstore.ReadStreamOptions. A stream
// ID that is not a valid Cairn stream ID names no stream of the store.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if eventstore.ValidateStreamID(streamID) != nil {
		return nil, &eventstore.StreamNotFoundError{StreamID: streamID}
	}
	count := uint64(math.MaxInt64)
	if opts.Limit > 0 {
		count = uint64(opts.Limit)
	}
	ro := kdb.ReadStreamOptions{Direction: kdb.Forwards, From: kdb.Revision(uint64(max(opts.From, 1) - 1))}
	if opts.Direction == eventstore.Backward {
		ro = kdb.ReadStreamOptions{Direction: kdb.Backwards, From: kdb.End{}}
		if opts.From > 0 {
			ro.From = kdb.Revision(uint64(opts.From - 1))
		}
	}
	raw, found, err := s.readStream(ctx, s.name(streamID), ro, count)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, &eventstore.StreamNotFoundError{StreamID: streamID}
	}
	out := make([]eventstore.RecordedEvent, 0, len(raw))
	for _, ev := range raw {
		e, ok, err := s.recorded(ev)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// logFilter is how one log read filters: a server-side filter, and the
// types or categories the server-side filter does not cover, checked here.
type logFilter struct {
	server *kdb.SubscriptionFilter
	types  []string // checked here, when not on the server
	cats   []string // likewise
}

// filterFor builds the filter of a log read. The protocol filters on one
// property, stream name or event type: categories go to the server as a
// stream-name expression (which also keeps out system, bookkeeping and
// other namespaces' streams), else types as an event-type expression;
// what remains is checked on the client.
func (s *Store) filterFor(types, cats []string) logFilter {
	prefix := regexp.QuoteMeta(s.cfg.StreamPrefix)
	switch {
	case len(cats) > 0:
		alts := make([]string, len(cats))
		for i, c := range cats {
			alts[i] = regexp.QuoteMeta(c)
		}
		re := "^" + prefix + "(?:" + strings.Join(alts, "|") + ")(?:-" + streamIDClass + "*)?$"
		return logFilter{server: &kdb.SubscriptionFilter{Type: kdb.StreamFilterType, Regex: re}, types: types}
	case len(types) > 0:
		alts := make([]string, len(types))
		for i, t := range types {
			alts[i] = regexp.QuoteMeta(t)
		}
		return logFilter{server: &kdb.SubscriptionFilter{Type: kdb.EventFilterType, Regex: "^(?:" + strings.Join(alts, "|") + ")$"}}
	}
	return logFilter{server: &kdb.SubscriptionFilter{Type: kdb.StreamFilterType, Regex: s.userStreams}}
}

func (f logFilter) keep(e eventstore.RecordedEvent) bool {
	return (len(f.types) == 0 || slices.Contains(f.types, e.Type)) &&
		(len(f.cats) == 0 || slices.Contains(f.cats, eventstore.Category(e.StreamID)))
}

// ReadLog returns the events after the given position in $all order,
// filtered and limited by opts. It reads through a filtered catch-up
// subscription, the only $all read the client filters on the server, and
// stops at the server's caught-up signal or at the limit. opts.Since is
// refused with an *eventstore.UnsupportedOptionError: KurrentDB cannot
// filter by time on the server, and filtering here would scan the log from
// the position in every read.
func (s *Store) ReadLog(ctx context.Context, after eventstore.Position, opts eventstore.ReadLogOptions) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !opts.Since.IsZero() {
		return nil, &eventstore.UnsupportedOptionError{Option: "ReadLogOptions.Since",
			Reason: "KurrentDB has no index by time; read from a position instead"}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	limit = min(limit, eventstore.MaxBatchSize)
	f := s.filterFor(dedupe(opts.Types), dedupe(opts.Categories))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var from kdb.AllPosition = kdb.Start{}
	if !after.IsZero() {
		from = kdb.Position{Commit: after.Tx, Prepare: after.Seq}
	}
	sub, err := s.client.SubscribeToAll(ctx, kdb.SubscribeToAllOptions{From: from, Filter: f.server})
	if err != nil {
		return nil, s.wrap(ctx, "read log", err)
	}
	defer sub.Close()
	out := []eventstore.RecordedEvent{}
	for len(out) < limit {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			err := msg.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("subscription dropped")
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("subscription ended before the caught-up signal")
			}
			return nil, s.wrap(ctx, "read log", err)
		case msg.CaughtUp != nil:
			return out, nil
		case msg.EventAppeared != nil:
			e, ok, err := s.recorded(msg.EventAppeared)
			if err != nil {
				return nil, err
			}
			// A subscription starts after its position; the check keeps
			// ReadLog strict even on a server that did not.
			if ok && after.Before(e.Position) && f.keep(e) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// headPage is how many events Head reads at a time, backwards, looking for
// the last event of the store's log.
const headPage = 64

// Head returns the position of the last event of the store's log, or
// eventstore.Start. It reads $all backwards past system and bookkeeping
// events (and other namespaces' events) to the first one of the store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Position{}, err
	}
	var from kdb.AllPosition = kdb.End{}
	for {
		rs, err := s.client.ReadAll(ctx, kdb.ReadAllOptions{Direction: kdb.Backwards, From: from}, headPage)
		if err != nil {
			return eventstore.Position{}, s.wrap(ctx, "head", err)
		}
		n := 0
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rs.Close()
				return eventstore.Position{}, s.wrap(ctx, "head", err)
			}
			n++
			if ev.Event == nil {
				continue
			}
			from = ev.Event.Position
			if _, ok := s.cairnID(ev.Event.StreamID); ok && !strings.HasPrefix(ev.Event.EventType, "$") {
				rs.Close()
				return eventstore.Position{Tx: ev.Event.Position.Commit, Seq: ev.Event.Position.Prepare}, nil
			}
		}
		rs.Close()
		if n < headPage {
			return eventstore.Start, nil
		}
	}
}
