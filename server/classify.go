package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/internal/pgerr"
	"github.com/cairn-es/cairn/query"
)

// errorClass is one row of errorClasses: the errors it matches and what
// they become, as an HTTP answer (status and problem type; the title goes
// with the type, see problemTitles) and as the reason label of
// command.MetricFailed (FailureReason).
type errorClass struct {
	match  func(error) bool
	status int
	typ    string
	reason string
	// detail is what the client reads. detailOf, when set, words it from
	// the error itself instead: only for errors about the client's input,
	// whose messages are safe to show.
	detail   string
	detailOf func(error) string
}

// errorClasses is the one table from errors to answers, first match wins.
// The order matters where one error matches several: backpressure comes
// first (nothing ran), then the domain's own answers, and a database or
// deadline failure only when nothing more specific matched.
//
// Not found is told by eventstore.ErrStreamNotFound, which
// aggregate.NotFoundError wraps, so that server need not import aggregate.
var errorClasses = []errorClass{
	{match: is(command.ErrOverloaded), status: http.StatusServiceUnavailable, typ: ProblemOverloaded, reason: "overloaded",
		detail: "the service is overloaded; the command was not run; resend it after Retry-After", detailOf: overloadedDetail},
	{match: is(command.ErrRejected), status: http.StatusUnprocessableEntity, typ: ProblemCommandRejected, reason: "rejected",
		detail: "a domain rule refused the command", detailOf: rejectedDetail},
	{match: is(command.ErrInvalidCommand), status: http.StatusUnprocessableEntity, typ: ProblemInvalidCommand, reason: "invalid",
		detail: "the command is invalid", detailOf: invalidCommandDetail},
	{match: is(eventstore.ErrIdempotencyKeyReused), status: http.StatusConflict, typ: ProblemIdempotencyKeyReused, reason: "idempotency_key_reused",
		detail: "this idempotency key was already used for a different command or payload"},
	{match: is(eventstore.ErrConcurrency), status: http.StatusConflict, typ: ProblemConcurrencyConflict, reason: "conflict",
		detail: "the command conflicted with concurrent changes to the same entity; reload and retry"},
	{match: is(command.ErrUnknownCommand), status: http.StatusInternalServerError, typ: ProblemInternal, reason: "unknown_command",
		detail: internalDetail},
	{match: is(query.ErrInvalidQuery), status: http.StatusBadRequest, typ: ProblemInvalidQuery, reason: "invalid",
		detailOf: func(err error) string { return strings.TrimPrefix(err.Error(), "query: ") }},
	{match: is(query.ErrNotFound, eventstore.ErrStreamNotFound), status: http.StatusNotFound, typ: ProblemNotFound, reason: "not_found",
		detail: "the requested resource does not exist", detailOf: notFoundDetail},
	{match: is(eventstore.ErrInvalidStreamID), status: http.StatusUnprocessableEntity, typ: ProblemInvalidCommand, reason: "invalid",
		detail: "the command names an invalid identifier"},
	{match: is(eventstore.ErrEventTooLarge), status: http.StatusUnprocessableEntity, typ: ProblemInvalidCommand, reason: "invalid",
		detail: "the command's events are too large"},
	{match: is(eventstore.ErrInvalidEvent), status: http.StatusUnprocessableEntity, typ: ProblemInvalidCommand, reason: "invalid",
		detail: invalidEventDetail, detailOf: invalidEventReason},
	{match: readModelMissing, status: http.StatusServiceUnavailable, typ: ProblemReadModelUnavailable, reason: "unavailable",
		detail: "the read model is not built yet; try again later"},
	{match: pgerr.Transient, status: http.StatusServiceUnavailable, typ: ProblemDatabaseUnavailable, reason: "unavailable",
		detail: "the database is unavailable; try again later"},
	{match: is(context.DeadlineExceeded), status: http.StatusServiceUnavailable, typ: ProblemUnavailable, reason: "canceled",
		detail: "the request took too long; try again later"},
	{match: is(context.Canceled), status: http.StatusServiceUnavailable, typ: ProblemUnavailable, reason: "canceled",
		detail: "the request was canceled"},
}

// internalDetail is all a client learns of a 500.
const internalDetail = "an internal error occurred; quote the request ID when reporting it"

// otherErrors is the class of an error no row matches.
var otherErrors = errorClass{status: http.StatusInternalServerError, typ: ProblemInternal, reason: "error", detail: internalDetail}

// classify returns the row of errorClasses err matches.
func classify(err error) *errorClass {
	for i := range errorClasses {
		if errorClasses[i].match(err) {
			return &errorClasses[i]
		}
	}
	return &otherErrors
}

// is matches errors that match any of targets.
func is(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
}

// FailureReason is the class of err's problem as one word: the reason
// label of command.MetricFailed for a service behind this server (pass it
// as command.MetricsConfig.Reason), so that a command's failure is counted
// under the class its route answers with. The words are invalid,
// rejected, conflict, idempotency_key_reused, not_found, unknown_command,
// overloaded, unavailable (the database, as pgerr.Transient tells it, or
// a missing read model), canceled and error.
func FailureReason(err error) string { return classify(err).reason }

// classified is the problem of err by its row of errorClasses. A 503 gets
// a Retry-After: an overload refusal's own, else the server's.
func (s *Server) classified(err error) *Problem {
	c := classify(err)
	detail := c.detail
	if c.detailOf != nil {
		if d := c.detailOf(err); d != "" {
			detail = d
		}
	}
	p := NewProblem(c.status, c.typ, detail).wrap(err)
	if c.status == http.StatusServiceUnavailable {
		p.withHeader("Retry-After", strconv.Itoa(s.retryAfterSeconds(err)))
	}
	return p
}

// retryAfterSeconds is the Retry-After of a 503 caused by err. An overload
// refusal's own delay is rounded up, so that the client does not come back
// before the backlog had the time it asked for.
func (s *Server) retryAfterSeconds(err error) int {
	var o *command.OverloadedError
	if errors.As(err, &o) && o.RetryAfter > 0 {
		return max(1, int((o.RetryAfter+time.Second-1)/time.Second))
	}
	return max(1, int(s.cfg.RetryAfter.Round(time.Second).Seconds()))
}

func overloadedDetail(err error) string {
	var o *command.OverloadedError
	if errors.As(err, &o) && o.Reason != "" {
		return "the service is overloaded (" + o.Reason + "); the command was not run; resend it after Retry-After"
	}
	return ""
}

// rejectedDetail is the domain's reason: a refusal is worded for the
// client.
func rejectedDetail(err error) string {
	var r *command.RejectedError
	if errors.As(err, &r) && r.Reason != nil {
		return r.Reason.Error()
	}
	return ""
}

func invalidCommandDetail(err error) string {
	var v *command.ValidationError
	if errors.As(err, &v) && v.Err != nil {
		return v.Err.Error()
	}
	return ""
}

func notFoundDetail(err error) string {
	var nf *query.NotFoundError
	if errors.As(err, &nf) {
		return nf.Error()
	}
	return ""
}

// invalidEventDetail is the 422 of a command whose events the store
// refused (a NUL character or an unpaired surrogate in a value, say): the
// client's input, since the events carry what the command did.
const invalidEventDetail = "the command's events carry a value the event store cannot keep"

// invalidEventReason adds the store's reason, which names the field but no
// stream or internal state.
func invalidEventReason(err error) string {
	var ve *eventstore.ValidationError
	if errors.As(err, &ve) && ve.Reason != "" {
		return invalidEventDetail + ": " + ve.Reason
	}
	return ""
}
