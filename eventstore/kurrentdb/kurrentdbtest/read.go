package kurrentdbtest

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shared "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/shared"
	streams "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/streams"
)

// Read serves count reads of a stream or of $all, and subscriptions to $all.
func (svc *streamsService) Read(req *streams.ReadReq, out grpc.ServerStreamingServer[streams.ReadResp]) error {
	opts := req.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "no read options")
	}
	asString := opts.GetUuidOption().GetString_() != nil
	filter, err := newFilter(opts.GetFilter())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	backwards := opts.GetReadDirection() == streams.ReadReq_Options_Backwards
	_, subscribe := opts.GetCountOption().(*streams.ReadReq_Options_Subscription)
	switch so := opts.GetStreamOption().(type) {
	case *streams.ReadReq_Options_Stream:
		if subscribe {
			return status.Error(codes.Unimplemented, "kurrentdbtest: stream subscriptions are not implemented")
		}
		return svc.s.readStream(so.Stream, backwards, opts.GetCount(), asString, out)
	case *streams.ReadReq_Options_All:
		if subscribe {
			return svc.s.subscribeAll(so.All, filter, asString, out)
		}
		return svc.s.readAll(so.All, backwards, opts.GetCount(), filter, asString, out)
	}
	return status.Error(codes.InvalidArgument, "no stream option")
}

func (s *Server) readStream(o *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64, asString bool, out grpc.ServerStreamingServer[streams.ReadResp]) error {
	name := string(o.GetStreamIdentifier().GetStreamName())
	s.mu.RLock()
	existing := s.streams[name]
	var picked []*record
	if len(existing) > 0 {
		last := uint64(len(existing) - 1)
		from := uint64(0)
		switch r := o.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = r.Revision
		case *streams.ReadReq_Options_StreamOptions_End:
			from = last
			if !backwards {
				from = last + 1
			}
		}
		if backwards {
			// A backward read from past the end starts at the last event.
			for rev := int64(min(from, last)); rev >= 0 && uint64(len(picked)) < count; rev-- {
				picked = append(picked, existing[rev])
			}
		} else {
			for rev := from; rev <= last && uint64(len(picked)) < count; rev++ {
				picked = append(picked, existing[rev])
			}
		}
	}
	s.mu.RUnlock()
	if len(existing) == 0 {
		return out.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	for _, r := range picked {
		if err := out.Send(eventResp(r, asString)); err != nil {
			return err
		}
	}
	return nil
}

// readAll serves a count read of $all. Forwards from a position includes
// the event at it; backwards from a position starts before it.
func (s *Server) readAll(o *streams.ReadReq_Options_AllOptions, backwards bool, count uint64, f *filter, asString bool, out grpc.ServerStreamingServer[streams.ReadResp]) error {
	s.mu.RLock()
	var picked []*record
	if backwards {
		end := len(s.log)
		if p := o.GetPosition(); p != nil {
			end = sort.Search(len(s.log), func(i int) bool { return s.log[i].pos >= p.GetCommitPosition() })
		} else if o.GetStart() != nil {
			end = 0
		}
		for i := end - 1; i >= 0 && uint64(len(picked)) < count; i-- {
			if f.match(s.log[i]) {
				picked = append(picked, s.log[i])
			}
		}
	} else {
		start := s.startIndex(o, false)
		for i := start; i < len(s.log) && uint64(len(picked)) < count; i++ {
			if f.match(s.log[i]) {
				picked = append(picked, s.log[i])
			}
		}
	}
	s.mu.RUnlock()
	for _, r := range picked {
		if err := out.Send(eventResp(r, asString)); err != nil {
			return err
		}
	}
	return nil
}

// startIndex is the log index a forward read or subscription starts at.
// A subscription from a position starts after the event at it.
func (s *Server) startIndex(o *streams.ReadReq_Options_AllOptions, exclusive bool) int {
	switch {
	case o.GetEnd() != nil:
		return len(s.log)
	case o.GetPosition() != nil:
		p := o.GetPosition().GetCommitPosition()
		return sort.Search(len(s.log), func(i int) bool {
			if exclusive {
				return s.log[i].pos > p
			}
			return s.log[i].pos >= p
		})
	}
	return 0
}

// subscribeAll confirms the subscription, catches up, signals caught-up,
// then sends live events until the client goes away.
func (s *Server) subscribeAll(o *streams.ReadReq_Options_AllOptions, f *filter, asString bool, out grpc.ServerStreamingServer[streams.ReadResp]) error {
	id := uuid.NewString()
	if err := out.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{SubscriptionId: id}}}); err != nil {
		return err
	}
	s.mu.RLock()
	next := s.startIndex(o, true)
	s.mu.RUnlock()
	caughtUp := false
	scanned := 0
	for {
		s.mu.RLock()
		batch := s.log[next:min(len(s.log), next+256)]
		grown := s.grown
		s.mu.RUnlock()
		for _, r := range batch {
			scanned++
			if f.match(r) {
				if err := out.Send(eventResp(r, asString)); err != nil {
					return err
				}
			} else if f != nil && f.checkpointEvery > 0 && scanned%f.checkpointEvery == 0 {
				// Filtered subscriptions report progress through events
				// they skip, as the server's checkpoints do.
				if err := out.Send(checkpointResp(r.pos)); err != nil {
					return err
				}
			}
		}
		next += len(batch)
		if len(batch) > 0 {
			continue
		}
		if !caughtUp {
			caughtUp = true
			if err := out.Send(s.caughtUpResp(next)); err != nil {
				return err
			}
		}
		select {
		case <-grown:
		case <-out.Context().Done():
			return out.Context().Err()
		}
	}
}

func (s *Server) caughtUpResp(next int) *streams.ReadResp {
	cu := &streams.ReadResp_CaughtUp{Timestamp: timestamppb.Now()}
	s.mu.RLock()
	if next > 0 {
		p := s.log[next-1].pos
		cu.Position = &streams.ReadResp_Position{CommitPosition: p, PreparePosition: p}
	}
	s.mu.RUnlock()
	return &streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: cu}}
}

func checkpointResp(pos uint64) *streams.ReadResp {
	return &streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: pos, PreparePosition: pos, Timestamp: timestamppb.New(time.Now()),
	}}}
}

func eventResp(r *record, asString bool) *streams.ReadResp {
	ev := &streams.ReadResp_ReadEvent_RecordedEvent{
		Id:               uuidToProto(r.id, asString),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
		StreamRevision:   r.revision,
		PreparePosition:  r.pos,
		CommitPosition:   r.pos,
		Metadata: map[string]string{
			"type":         r.eventType,
			"content-type": r.contentType,
			"created":      strconv.FormatInt(r.created, 10),
		},
		CustomMetadata: r.meta,
		Data:           r.data,
	}
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event:    ev,
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

// filter is a $all filter on stream name or event type. A nil filter keeps
// everything.
type filter struct {
	onType          bool
	re              *regexp.Regexp
	prefixes        []string
	checkpointEvery int
}

func newFilter(o *streams.ReadReq_Options_FilterOptions) (*filter, error) {
	if o == nil {
		return nil, nil
	}
	f := &filter{}
	expr := o.GetStreamIdentifier()
	if e := o.GetEventType(); e != nil {
		f.onType, expr = true, e
	}
	if expr == nil {
		return nil, fmt.Errorf("filter without an expression")
	}
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, fmt.Errorf("filter regex: %w", err)
		}
		f.re = re
	}
	f.prefixes = expr.GetPrefix()
	window := int(o.GetMax())
	if window == 0 {
		window = 32
	}
	f.checkpointEvery = window * max(1, int(o.GetCheckpointIntervalMultiplier()))
	return f, nil
}

func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	v := r.stream
	if f.onType {
		v = r.eventType
	}
	if f.re != nil {
		return f.re.MatchString(v)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}
