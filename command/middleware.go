package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/retry"
)

// Logging logs one record per command with logger: its ID, type and
// correlation ID, the outcome, the duration and, on success, the stream and
// version written. The outcome names what happened, with the same words as
// the command metrics' reasons (see Metrics):
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

// Retry re-runs the rest of the chain when it fails with an error matching
// eventstore.ErrConcurrency: the handler reloads the aggregate and decides
// again against the newer state. Zero fields of p take DefaultRetry's. It
// waits p.Delay(n) after failed attempt n (exponential back-off with
// jitter, see retry.Policy), so that competing writers spread out. It never
// retries any other error. When attempts run out it returns the last
// conflict, wrapped; when the context ends while waiting it returns an
// error matching both the context's error and the conflict.
func Retry(p retry.Policy) Middleware { return retryWith(p, nil) }

// retryWith is Retry calling onRetry, when set, before each retry with
// the command, the number of the attempt that failed (1-based) and its
// conflict: Metrics counts retries with it.
func retryWith(p retry.Policy, onRetry func(ctx context.Context, env Envelope, attempt int, err error)) Middleware {
	p = p.WithDefaults(DefaultRetry)
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
				if onRetry != nil {
					onRetry(ctx, env, attempt, err)
				}
				if retry.Sleep(ctx, p.Delay(attempt)) != nil {
					return res, fmt.Errorf("command: %w while retrying after %w", context.Cause(ctx), err)
				}
			}
		}
	}
}
