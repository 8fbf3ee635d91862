// Package kurrentdbtest is an in-process stand-in for a KurrentDB server: a
// gRPC server on 127.0.0.1 that implements the parts of the KurrentDB
// protocol Cairn's kurrentdb store uses, on the KurrentDB Go client's own
// generated protobuf services, so that the real client talks to it over a
// real connection.
//
// It reproduces KurrentDB's documented behaviour for what it implements:
//
//   - Streams.Append: stream revisions from 0; expected revision (a number,
//     no_stream, any, stream_exists) checked as the server's commit check
//     does, with the wrong-expected-version answer carrying the actual
//     revision; idempotent writes by event ID (the strong check for an
//     exact expected revision behind the stream's end, the weak check of
//     recently written IDs for any and stream_exists, a partial match
//     answered as a wrong expected version); the position of the
//     original last event on an idempotent write.
//   - Streams.Read: count reads of a stream and of $all, forwards and
//     backwards, from start, end, a revision or a position; the
//     stream-not-found answer; $all filters on stream name or event type,
//     by regular expression or prefixes; catch-up subscriptions to $all
//     with confirmation, checkpoints for filtered subscriptions, the
//     caught-up signal, then live events.
//
// Every event has its log position as both commit and prepare position,
// as a KurrentDB node gives for events written in one append: positions
// are byte offsets in an imagined transaction file, strictly increasing in
// log order.
//
// What it does not implement: stream subscriptions, deletes and tombstones,
// BatchAppend and the v2 append, persistent subscriptions, projections,
// gossip and server features (Unimplemented, which the client takes for an
// older single node), authentication and TLS, stream metadata semantics
// ($maxCount, $tb and the rest are stored as ordinary events of the $$
// stream and not applied), link resolution, fell-behind signals, and any
// size limit. Regular expressions are Go's RE2, not .NET's: filters that use
// .NET-only syntax behave differently. The weak idempotency check
// remembers every event ID, where a real node remembers only recent ones.
package kurrentdbtest

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	streams "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/streams"
)

// firstPosition is where the first event lands: a real log starts with an
// epoch record and system events, so no user event is at position 0.
const firstPosition = 1024

// recordOverhead approximates a prepare record's header, so positions grow
// like byte offsets.
const recordOverhead = 96

// record is one event in the log.
type record struct {
	id          uuid.UUID
	stream      string
	revision    uint64
	pos         uint64
	eventType   string
	contentType string
	created     int64 // .NET ticks (100 ns) since the Unix epoch
	data        []byte
	meta        []byte
}

// Server is a running stand-in. The zero value is not usable; call Start.
type Server struct {
	lis  net.Listener
	grpc *grpc.Server
	done chan struct{}

	mu      sync.RWMutex
	log     []*record
	streams map[string][]*record
	ids     map[uuid.UUID]*record // last record written with each ID
	nextPos uint64
	grown   chan struct{} // closed and replaced after every write

	refuse func(stream string) bool // see RefuseAppends
}

// RefuseAppends makes the server fail every append to a stream for which
// match returns true with an Internal error, writing nothing, until it is
// called again with nil: a way to make the second write of a two-write
// operation fail, as a crash or a lost connection would.
func (s *Server) RefuseAppends(match func(stream string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = match
}

// Start listens on 127.0.0.1 on a free port and serves until Close.
func Start() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kurrentdbtest: listen: %w", err)
	}
	s := &Server{
		lis:     lis,
		grpc:    grpc.NewServer(),
		done:    make(chan struct{}),
		streams: make(map[string][]*record),
		ids:     make(map[uuid.UUID]*record),
		nextPos: firstPosition,
		grown:   make(chan struct{}),
	}
	streams.RegisterStreamsServer(s.grpc, &streamsService{s: s})
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(lis)
	}()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ConnectionString is a KurrentDB connection string for the server.
func (s *Server) ConnectionString() string {
	return "kurrentdb://" + s.Addr() + "?tls=false"
}

// Close stops the server, ending open subscriptions, and waits for it.
func (s *Server) Close() {
	s.grpc.Stop()
	<-s.done
}

// EventCount is the number of events in the log, system and bookkeeping
// streams included.
func (s *Server) EventCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.log)
}

// StreamNames lists the streams that have events, in no order.
func (s *Server) StreamNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.streams))
	for name := range s.streams {
		out = append(out, name)
	}
	return out
}

// ticks is t as .NET ticks since the Unix epoch, the unit of the
// "created" system metadata.
func ticks(t time.Time) int64 { return t.UnixNano() / 100 }
