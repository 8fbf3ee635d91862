package eventstore

import "strconv"

// ExpectedVersion is the optimistic-concurrency condition of an append, one
// of Any, NoStream, StreamExists or Exact(n).
type ExpectedVersion struct {
	kind    ExpectedKind
	version int64
}

// ExpectedKind is the kind of an ExpectedVersion.
type ExpectedKind uint8

const (
	// KindAny appends whatever the stream's version.
	KindAny ExpectedKind = iota
	// KindNoStream appends only if the stream has no events.
	KindNoStream
	// KindStreamExists appends only if the stream has events.
	KindStreamExists
	// KindExact appends only if the stream is at exactly the given version.
	KindExact
)

var (
	// Any appends whatever the stream's current version.
	Any = ExpectedVersion{kind: KindAny}
	// NoStream appends only to a stream that does not exist yet.
	NoStream = ExpectedVersion{kind: KindNoStream}
	// StreamExists appends only to a stream that already has events.
	StreamExists = ExpectedVersion{kind: KindStreamExists}
)

// Exact appends only if the stream is at version n. Exact(0) is NoStream.
// A negative n is rejected by the store with ErrInvalidExpectedVersion.
func Exact(n int64) ExpectedVersion {
	if n == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: KindExact, version: n}
}

// Kind returns the kind of e.
func (e ExpectedVersion) Kind() ExpectedKind { return e.kind }

// Version returns n for Exact(n) and 0 otherwise.
func (e ExpectedVersion) Version() int64 { return e.version }

// Check reports whether a stream at version actual (0: no stream) satisfies e.
func (e ExpectedVersion) Check(actual int64) bool {
	switch e.kind {
	case KindNoStream:
		return actual == 0
	case KindStreamExists:
		return actual > 0
	case KindExact:
		return actual == e.version
	default:
		return true
	}
}

func (e ExpectedVersion) String() string {
	switch e.kind {
	case KindNoStream:
		return "no stream"
	case KindStreamExists:
		return "stream exists"
	case KindExact:
		return "version " + strconv.FormatInt(e.version, 10)
	default:
		return "any"
	}
}
