package server

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/aggregate"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/query"
)

// TestErrorClasses: every kind of error gets the same class as an HTTP
// answer and as a command failure's metric reason, from the one table.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	s := &Server{cfg: Config{RetryAfter: 2 * time.Second}}
	streamMissing := &eventstore.StreamNotFoundError{StreamID: "order-1"}
	cases := []struct {
		name   string
		err    error
		status int
		typ    string
		reason string
		detail string // "" for the class's own
	}{
		{"overloaded with a reason", &command.OverloadedError{Reason: "saga backlog", RetryAfter: 1500 * time.Millisecond},
			503, ProblemOverloaded, "overloaded", "the service is overloaded (saga backlog); the command was not run; resend it after Retry-After"},
		{"overloaded sentinel", command.ErrOverloaded, 503, ProblemOverloaded, "overloaded", ""},
		{"rejected", command.Reject(errors.New("amount exceeds the limit")), 422, ProblemCommandRejected, "rejected", "amount exceeds the limit"},
		{"invalid", &command.ValidationError{CommandType: "X", Err: errors.New("amount must be positive")},
			422, ProblemInvalidCommand, "invalid", "amount must be positive"},
		{"idempotency key reused", &eventstore.IdempotencyKeyReusedError{CommandID: "k"}, 409, ProblemIdempotencyKeyReused, "idempotency_key_reused", ""},
		{"conflict", fmt.Errorf("saving: %w", &eventstore.ConcurrencyError{StreamID: "s"}), 409, ProblemConcurrencyConflict, "conflict", ""},
		{"unknown command", &command.UnknownCommandError{CommandType: "X"}, 500, ProblemInternal, "unknown_command", ""},
		{"invalid query", fmt.Errorf("%w: bad cursor", query.ErrInvalidQuery), 400, ProblemInvalidQuery, "invalid", "invalid query: bad cursor"},
		{"query subject missing", query.NotFound("order", "o-1"), 404, ProblemNotFound, "not_found", query.NotFound("order", "o-1").Error()},
		{"stream missing", streamMissing, 404, ProblemNotFound, "not_found", "the requested resource does not exist"},
		{"aggregate missing", &aggregate.NotFoundError{ID: "o-1", StreamID: "order-o-1", Err: streamMissing},
			404, ProblemNotFound, "not_found", "the requested resource does not exist"},
		// Needs aggregate.ErrNotFound to wrap eventstore.ErrStreamNotFound.
		{"aggregate sentinel", fmt.Errorf("cancel: %w", aggregate.ErrNotFound), 404, ProblemNotFound, "not_found", ""},
		{"invalid stream ID", &eventstore.ValidationError{Err: eventstore.ErrInvalidStreamID}, 422, ProblemInvalidCommand, "invalid", ""},
		{"event too large", &eventstore.ValidationError{Err: eventstore.ErrEventTooLarge}, 422, ProblemInvalidCommand, "invalid", ""},
		{"invalid event", &eventstore.ValidationError{Err: eventstore.ErrInvalidEvent, Reason: "a NUL character in field note"},
			422, ProblemInvalidCommand, "invalid", invalidEventDetail + ": a NUL character in field note"},
		{"read model missing", &pgconn.PgError{Code: "42P01"}, 503, ProblemReadModelUnavailable, "unavailable", ""},
		{"database unavailable", &pgconn.PgError{Code: "57P01"}, 503, ProblemDatabaseUnavailable, "unavailable", ""},
		{"deadline", context.DeadlineExceeded, 503, ProblemUnavailable, "canceled", ""},
		{"canceled", context.Canceled, 503, ProblemUnavailable, "canceled", ""},
		{"anything else", errors.New("boom: secret internals"), 500, ProblemInternal, "error", internalDetail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := s.problemFor(tc.err)
			require.Equal(t, tc.status, p.Status)
			require.Equal(t, tc.typ, p.Type)
			require.Equal(t, problemTitles[tc.typ], p.Title)
			require.Equal(t, tc.reason, FailureReason(tc.err))
			require.True(t, p.Err == tc.err, "the problem wraps the error itself")
			if tc.detail != "" {
				require.Equal(t, tc.detail, p.Detail)
			}
			require.NotContains(t, p.Detail, "secret", "the detail of an unclassified error leaks nothing")
			if p.Status == http.StatusServiceUnavailable {
				require.NotEmpty(t, p.Header.Get("Retry-After"))
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	s := &Server{cfg: Config{RetryAfter: 2400 * time.Millisecond}}
	require.Equal(t, "2", s.problemFor(context.DeadlineExceeded).Header.Get("Retry-After"), "the server's, rounded")
	require.Equal(t, "2", s.problemFor(&command.OverloadedError{RetryAfter: 1100 * time.Millisecond}).Header.Get("Retry-After"),
		"an overload refusal's own, rounded up")
	require.Equal(t, "2", s.problemFor(command.ErrOverloaded).Header.Get("Retry-After"), "the server's without one")
}

// TestNoAggregateImport: the server tells a missing aggregate by the
// store's error, so it does not depend on package aggregate.
func TestNoAggregateImport(t *testing.T) {
	t.Parallel()
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	require.False(t, slices.Contains(pkg.Imports, "github.com/cairn-es/cairn/aggregate"), "imports: %v", pkg.Imports)
}
