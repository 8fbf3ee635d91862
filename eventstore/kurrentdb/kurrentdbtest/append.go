package kurrentdbtest

import (
	"errors"
	"io"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shared "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/shared"
	streams "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/streams"
)

// streamsService implements the Streams gRPC service; what it does not
// implement answers Unimplemented.
type streamsService struct {
	streams.UnimplementedStreamsServer
	s *Server
}

// Expected revisions, as the server encodes them.
const (
	expectAny          int64 = -2
	expectNoStream     int64 = -1
	expectStreamExists int64 = -4
)

// decision is the outcome of the commit check.
type decision int

const (
	commitOK decision = iota
	commitIdempotent
	commitWrongVersion // wrong expected version, or a partial (corrupted) idempotent match
)

// Append receives the options, then the proposed events, and answers once
// the client closes its side.
func (svc *streamsService) Append(stream grpc.ClientStreamingServer[streams.AppendReq, streams.AppendResp]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry the options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	if name == "" {
		return status.Error(codes.InvalidArgument, "empty stream name")
	}
	expected := expectAny
	switch o := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Revision:
		expected = int64(o.Revision)
	case *streams.AppendReq_Options_NoStream:
		expected = expectNoStream
	case *streams.AppendReq_Options_StreamExists:
		expected = expectStreamExists
	}
	var proposed []*streams.AppendReq_ProposedMessage
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "options sent twice")
		}
		proposed = append(proposed, pm)
	}
	records := make([]*record, len(proposed))
	for i, pm := range proposed {
		id, err := uuidFromProto(pm.GetId())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		records[i] = &record{
			id:          id,
			stream:      name,
			eventType:   pm.GetMetadata()["type"],
			contentType: pm.GetMetadata()["content-type"],
			data:        pm.GetData(),
			meta:        pm.GetCustomMetadata(),
		}
	}
	resp, err := svc.s.append(name, expected, records)
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// append runs the commit check and writes the records if it passes.
func (s *Server) append(name string, expected int64, records []*record) (*streams.AppendResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil && s.refuse(name) {
		return nil, status.Errorf(codes.Internal, "kurrentdbtest: appends to %q are refused", name)
	}
	existing := s.streams[name]
	current := int64(len(existing)) - 1 // -1: no stream
	dec, last := s.commitCheck(name, existing, expected, records)
	switch dec {
	case commitWrongVersion:
		return wrongExpectedVersion(expected, current), nil
	case commitIdempotent:
		// The original answer: the last of the matching events and its
		// position.
		return success(int64(last.revision), last.pos), nil
	}
	if len(records) == 0 {
		return success(current, 0), nil
	}
	created := ticks(time.Now())
	for i, r := range records {
		r.revision = uint64(current + 1 + int64(i))
		r.pos = s.nextPos
		r.created = created
		s.nextPos += recordOverhead + uint64(len(r.stream)+len(r.eventType)+len(r.data)+len(r.meta))
		s.log = append(s.log, r)
		existing = append(existing, r)
		s.ids[r.id] = r
	}
	s.streams[name] = existing
	close(s.grown)
	s.grown = make(chan struct{})
	last = records[len(records)-1]
	return success(int64(last.revision), last.pos), nil
}

// commitCheck decides an append as a KurrentDB node does: last is the
// last matching event of an idempotent write.
func (s *Server) commitCheck(name string, existing []*record, expected int64, records []*record) (decision, *record) {
	current := int64(len(existing)) - 1
	switch {
	case expected == expectStreamExists && current < 0:
		return commitWrongVersion, nil
	case expected == expectAny || expected == expectStreamExists:
		// The weak check: the write's events among those already
		// written to this stream, wherever they are.
		var last *record
		for i, r := range records {
			prev, ok := s.ids[r.id]
			if ok && prev.stream == name {
				last = prev
				continue
			}
			if i > 0 {
				return commitWrongVersion, nil
			}
			return commitOK, nil
		}
		if last == nil {
			return commitOK, nil // no events
		}
		return commitIdempotent, last
	case expected < current:
		// The strong check: the same IDs at exactly the revisions this
		// write would have taken.
		if len(records) == 0 {
			return commitWrongVersion, nil
		}
		for i, r := range records {
			rev := expected + 1 + int64(i)
			if rev > current || existing[rev].id != r.id {
				return commitWrongVersion, nil
			}
		}
		return commitIdempotent, existing[expected+int64(len(records))]
	case expected > current:
		return commitWrongVersion, nil
	}
	return commitOK, nil
}

func success(revision int64, pos uint64) *streams.AppendResp {
	ok := &streams.AppendResp_Success{}
	if revision < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(revision)}
	}
	if pos == 0 {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{CommitPosition: pos, PreparePosition: pos}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

func wrongExpectedVersion(expected, current int64) *streams.AppendResp {
	w := &streams.AppendResp_WrongExpectedVersion{}
	switch expected {
	case expectAny:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
	case expectStreamExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
	case expectNoStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: uint64(expected)}
	}
	if current < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(current)}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

func uuidFromProto(id *shared.UUID) (uuid.UUID, error) {
	if st := id.GetStructured(); st != nil {
		var u uuid.UUID
		most, least := uint64(st.GetMostSignificantBits()), uint64(st.GetLeastSignificantBits())
		for i := range 8 {
			u[i] = byte(most >> (56 - 8*i))
			u[8+i] = byte(least >> (56 - 8*i))
		}
		return u, nil
	}
	return uuid.Parse(id.GetString_())
}

func uuidToProto(u uuid.UUID, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: u.String()}}
	}
	var most, least uint64
	for i := range 8 {
		most = most<<8 | uint64(u[i])
		least = least<<8 | uint64(u[8+i])
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: int64(most), LeastSignificantBits: int64(least),
	}}}
}
