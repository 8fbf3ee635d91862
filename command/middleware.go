package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cairn-es/cairn/eventstore"
)

// Logging logs one record per command with logger: its ID, type and
// correlation ID, the outcome, the duration and, on success, the stream and
// version written. The outcome names what happened, with the same words as
// the server's command metrics:
//
//   - Info: "ok", "duplicate" (a resubmission answered from the command
//     log), and the refusals that are ordinary business answers to the
//     client: "invalid" (validation failed), "rejected" (a domain rule said
//     no, command.Reject) and "not_found" (a command for an aggregate that
//     does not exist). They are the client's to act on, not the operator's.
//   - Warn: what an operator may want to look at without being paged:
//     "conflict" (still contended after Retry's attempts), "overloaded"
//     (refused for backpressure), "idempotency_key_reused" (a client sent a
//     different command under a used ID), "unknown_command" (no handler:
//     a deployment out of step) and "canceled" (the caller gave up or the
//     deadline passed).
//   - Error: "error", every other failure: the system's fault.
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, env Envelope) (Result, error) {
			start := time.Now()
			res, err := next(ctx, env)
			attrs := []slog.Attr{
				slog.String("command_id", env.ID),
				slog.String("command_type", env.Type()),
				slog.String("correlation_id", env.CorrelationID),
			}
			if env.CausationID != "" {
				attrs = append(attrs, slog.String("causation_id", env.CausationID))
			}
			level, outcome := outcomeOf(res, err)
			attrs = append(attrs, slog.String("outcome", outcome), slog.Duration("duration", time.Since(start)))
			if err != nil {
				attrs = append(attrs, slog.Any("error", err))
			} else if res.StreamID != "" {
				attrs = append(attrs, slog.String("stream_id", res.StreamID), slog.Int64("version", res.Version), slog.String("position", res.Position.String()))
			}
			logger.LogAttrs(ctx, level, "command handled", attrs...)
			return res, err
		}
	}
}

// outcomes classify failures for Logging, first match wins. The order
// matters where one error matches several: a domain refusal that mentions a
// missing aggregate is the domain's answer, and a conflict cut short by the
// caller's deadline is a cancellation.
var outcomes = []struct {
	sentinels []error
	level     slog.Level
	outcome   string
}{
	{[]error{ErrInvalidCommand}, slog.LevelInfo, "invalid"},
	{[]error{ErrRejected}, slog.LevelInfo, "rejected"},
	// aggregate.ErrNotFound wraps the store's error, so a missing
	// aggregate and a missing stream a handler read itself are both here.
	{[]error{eventstore.ErrStreamNotFound}, slog.LevelInfo, "not_found"},
	{[]error{context.Canceled, context.DeadlineExceeded}, slog.LevelWarn, "canceled"},
	{[]error{eventstore.ErrConcurrency}, slog.LevelWarn, "conflict"},
	{[]error{ErrOverloaded}, slog.LevelWarn, "overloaded"},
	{[]error{eventstore.ErrIdempotencyKeyReused}, slog.LevelWarn, "idempotency_key_reused"},
	{[]error{ErrUnknownCommand}, slog.LevelWarn, "unknown_command"},
}

// outcomeOf is the level and outcome word Logging logs a command with.
func outcomeOf(res Result, err error) (slog.Level, string) {
	switch {
	case err == nil && res.Duplicate:
		return slog.LevelInfo, "duplicate"
	case err == nil:
		return slog.LevelInfo, "ok"
	}
	for _, o := range outcomes {
		for _, s := range o.sentinels {
			if errors.Is(err, s) {
				return o.level, o.outcome
			}
		}
	}
	return slog.LevelError, "error"
}

// Validator is implemented by commands that can check themselves.
type Validator interface {
	Validate() error
}

// Validation calls the command's Validate method, if it has one (on the
// value or on a pointer to it), and rejects the command with a
// *ValidationError wrapping ErrInvalidCommand and the returned error
// without calling the handler.
func Validation() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, env Envelope) (Result, error) {
			if v, ok := asInterface[Validator](env.Payload); ok {
				if err := v.Validate(); err != nil {
					return Result{CommandID: env.ID}, &ValidationError{CommandType: env.Type(), CommandID: env.ID, Err: err}
				}
			}
			return next(ctx, env)
		}
	}
}

// Timeout bounds the rest of the chain with context.WithTimeout; d <= 0
// sets no bound. It cannot stop a handler that ignores its context; it makes
// the store calls fail once the deadline passes. A command whose append
// committed just before the deadline may still be reported as failed: the
// caller resubmits under the same ID and receives the recorded result.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		if d <= 0 {
			return next
		}
		return func(ctx context.Context, env Envelope) (Result, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, env)
		}
	}
}

// RetryPolicy configures Retry. Zero fields take DefaultRetryPolicy's values.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt: 1 never retries.
	MaxAttempts int
	// BaseDelay caps the wait before the first retry; the cap doubles with
	// each retry, up to MaxDelay.
	BaseDelay time.Duration
	// MaxDelay caps every wait.
	MaxDelay time.Duration
	// OnRetry, when set, is called before each retry with the command, the
	// number of the attempt that failed (1-based) and its conflict: a hook
	// for metrics. It must not block.
	OnRetry func(ctx context.Context, env Envelope, attempt int, err error)
}

// DefaultRetryPolicy is the Retry policy of the default chain.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 5, BaseDelay: 10 * time.Millisecond, MaxDelay: time.Second}

// Retry re-runs the rest of the chain when it fails with an error matching
// eventstore.ErrConcurrency: the handler reloads the aggregate and decides
// again against the newer state. It waits between attempts with exponential
// back-off and full jitter (a uniformly random wait between zero and
// min(MaxDelay, BaseDelay·2ⁿ) before retry n+1), so that competing writers
// spread out. It never retries any other error. When attempts run out it
// returns the last conflict, wrapped; when the context ends while waiting it
// returns an error matching both the context's error and the conflict.
func Retry(p RetryPolicy) Middleware {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetryPolicy.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultRetryPolicy.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = max(DefaultRetryPolicy.MaxDelay, p.BaseDelay)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, env Envelope) (Result, error) {
			for attempt := 1; ; attempt++ {
				res, err := next(ctx, env)
				if err == nil || !errors.Is(err, eventstore.ErrConcurrency) {
					return res, err
				}
				if attempt >= p.MaxAttempts {
					if attempt == 1 {
						return res, err
					}
					return res, fmt.Errorf("command: giving up after %d attempts: %w", attempt, err)
				}
				if ctx.Err() != nil {
					return res, fmt.Errorf("command: %w while retrying after %w", context.Cause(ctx), err)
				}
				if p.OnRetry != nil {
					p.OnRetry(ctx, env, attempt, err)
				}
				t := time.NewTimer(p.backoff(attempt))
				select {
				case <-ctx.Done():
					t.Stop()
					return res, fmt.Errorf("command: %w while retrying after %w", context.Cause(ctx), err)
				case <-t.C:
				}
			}
		}
	}
}

// backoff is the full-jitter wait after the given failed attempt (1-based).
func (p RetryPolicy) backoff(attempt int) time.Duration {
	ceiling := p.BaseDelay
	for i := 1; i < attempt && ceiling < p.MaxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.MaxDelay)
	return rand.N(ceiling + 1)
}
