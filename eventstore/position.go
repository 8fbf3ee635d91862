package eventstore

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Position is a point in the log's total order. It is a pair because the
// PostgreSQL store orders by (transaction ID, sequence): see
// docs/architecture.md. Positions compare with Compare; the zero Position
// sorts before every event, so subscribing "after" it reads the whole log.
type Position struct {
	Tx  uint64
	Seq uint64
}

// Start is the position before the first event.
var Start = Position{}

// Compare returns -1, 0 or +1 as p sorts before, equal to or after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.Tx, q.Tx); c != 0 {
		return c
	}
	return cmp.Compare(p.Seq, q.Seq)
}

// Before reports whether p sorts strictly before q.
func (p Position) Before(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Start }

// String renders p as an opaque token that fits an HTTP header and parses
// back with ParsePosition.
func (p Position) String() string {
	return strconv.FormatUint(p.Tx, 10) + "." + strconv.FormatUint(p.Seq, 10)
}

// MarshalText implements encoding.TextMarshaler, so positions travel in JSON
// as their token.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePosition parses a token made by Position.String. A malformed token is
// an error matching ErrInvalidPosition.
func ParsePosition(token string) (Position, error) {
	tx, seq, ok := strings.Cut(token, ".")
	if !ok {
		return Position{}, fmt.Errorf("%w: %q", ErrInvalidPosition, token)
	}
	t, err1 := strconv.ParseUint(tx, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, fmt.Errorf("%w: %q", ErrInvalidPosition, token)
	}
	return Position{Tx: t, Seq: s}, nil
}
