package command

import (
	"errors"
	"fmt"
	"time"
)

// ErrOverloaded: the service refused a command before running it because
// work it already accepted is queued beyond a bound (backpressure). Nothing
// was written; the same command may be sent again after RetryAfter.
var ErrOverloaded = errors.New("command: overloaded")

// OverloadedError reports a command refused for backpressure. Reason says
// which bound was passed (for logs and the problem detail); RetryAfter is
// how long the client should wait before resending.
type OverloadedError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *OverloadedError) Error() string {
	return fmt.Sprintf("command: overloaded: %s; retry after %s", e.Reason, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrOverloaded) true.
func (e *OverloadedError) Unwrap() error { return ErrOverloaded }
