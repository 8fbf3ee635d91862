package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
)

// Every error response is an RFC 9457 problem: a JSON object served as
// application/problem+json with the members type, title, status, detail,
// instance (the request path) and the extension request_id (the
// X-Request-ID of the response, which the server's log lines carry too).
//
// The type URIs below are stable: clients may switch on them. Each names a
// section of server/problems.md. The detail never contains a stack trace,
// SQL text or an internal error message; a 500 says only that something went
// wrong, and the real error is logged with the request ID.
const (
	// ProblemBase prefixes every problem type.
	ProblemBase = "https://github.com/cairn-es/cairn/blob/main/server/problems.md#"

	// ProblemMalformedJSON (400): the body is not well-formed JSON, ends
	// early, or has data after the JSON object.
	ProblemMalformedJSON = ProblemBase + "malformed-json"
	// ProblemUnknownField (400): the body has a member the command does
	// not define.
	ProblemUnknownField = ProblemBase + "unknown-field"
	// ProblemWrongType (400): a member (or the body itself, or a path
	// parameter of a command) has a value of the wrong JSON type or form.
	ProblemWrongType = ProblemBase + "wrong-type"
	// ProblemDuplicateKey (400): an object in the body has the same key
	// twice (keys that differ only in case count as the same).
	ProblemDuplicateKey = ProblemBase + "duplicate-key"
	// ProblemBodyTooLarge (400): the body exceeds the server's limit.
	ProblemBodyTooLarge = ProblemBase + "body-too-large"
	// ProblemHeadersTooLarge (431): the request's headers exceed the
	// server's limit (Config.MaxHeaderBytes).
	ProblemHeadersTooLarge = ProblemBase + "headers-too-large"
	// ProblemInvalidQuery (400): a query's path or query parameters do not
	// bind (unknown, repeated or malformed parameters), its Validate method
	// refused it, its handler returned an error matching
	// query.ErrInvalidQuery (a bad cursor, sort or filter), or PostgreSQL
	// refused a value the handler passed it as out of its type's range or
	// form (see dataException).
	ProblemInvalidQuery = ProblemBase + "invalid-query"
	// ProblemInvalidPosition (400): the X-Cairn-Min-Position header is not
	// a position token.
	ProblemInvalidPosition = ProblemBase + "invalid-position"
	// ProblemInvalidIdempotencyKey (400): the Idempotency-Key header is not
	// 1 to 200 printable ASCII characters, or was given twice.
	ProblemInvalidIdempotencyKey = ProblemBase + "invalid-idempotency-key"
	// ProblemInvalidCorrelationID (400): the X-Correlation-ID header is not
	// 1 to 200 printable ASCII characters, or was given twice.
	ProblemInvalidCorrelationID = ProblemBase + "invalid-correlation-id"
	// ProblemUnauthorized (401): no bearer token, or one that is invalid,
	// expired or not yet valid. The response carries WWW-Authenticate.
	ProblemUnauthorized = ProblemBase + "unauthorized"
	// ProblemInsufficientScope (403): the token lacks a scope the route
	// requires.
	ProblemInsufficientScope = ProblemBase + "insufficient-scope"
	// ProblemNotFound (404): no such route, or the query's (or command's)
	// subject does not exist (query.ErrNotFound, or
	// eventstore.ErrStreamNotFound, which aggregate.NotFoundError wraps).
	ProblemNotFound = ProblemBase + "not-found"
	// ProblemMethodNotAllowed (405): the route exists for other methods;
	// the Allow header lists them.
	ProblemMethodNotAllowed = ProblemBase + "method-not-allowed"
	// ProblemConcurrencyConflict (409): the command kept conflicting with
	// concurrent writes to its stream after its retries.
	ProblemConcurrencyConflict = ProblemBase + "concurrency-conflict"
	// ProblemIdempotencyKeyReused (409): the Idempotency-Key was used
	// before for a different command or payload.
	ProblemIdempotencyKeyReused = ProblemBase + "idempotency-key-reused"
	// ProblemUnsupportedMediaType (415): a command body that is not
	// application/json (or application/*+json) in UTF-8.
	ProblemUnsupportedMediaType = ProblemBase + "unsupported-media-type"
	// ProblemCommandRejected (422): a domain rule refused the command
	// (command.ErrRejected); the detail is the domain's reason.
	ProblemCommandRejected = ProblemBase + "command-rejected"
	// ProblemInvalidCommand (422): the command failed its Validate method
	// (command.ErrInvalidCommand), or the event store refused its stream
	// ID, its event size or a value it cannot keep
	// (eventstore.ErrInvalidEvent: a NUL character, say).
	ProblemInvalidCommand = ProblemBase + "invalid-command"
	// ProblemWaitTimeout (503): the read models behind the route did not
	// reach the X-Cairn-Min-Position in time. Retry-After says when to try
	// again.
	ProblemWaitTimeout = ProblemBase + "wait-timeout"
	// ProblemDatabaseUnavailable (503): PostgreSQL could not be used for a
	// passing reason (see pgerr.Transient: unreachable, connection dropped
	// or reset, shutting down or starting, too many clients, a
	// serialization failure or deadlock). Retry-After says when to try
	// again; a command that got it is safe to resend with the same
	// Idempotency-Key.
	ProblemDatabaseUnavailable = ProblemBase + "database-unavailable"
	// ProblemOverloaded (503): the command was refused before it ran,
	// because work the service already accepted is queued beyond its bound
	// (command.ErrOverloaded). Nothing was written; Retry-After says when
	// to resend.
	ProblemOverloaded = ProblemBase + "overloaded"
	// ProblemReadModelUnavailable (503): the read model a query needs has
	// not been built yet (its projection has never run against this
	// database).
	ProblemReadModelUnavailable = ProblemBase + "read-model-unavailable"
	// ProblemUnavailable (503): the request ran out of time, or the server
	// is shutting down. Retry-After says when to try again.
	ProblemUnavailable = ProblemBase + "unavailable"
	// ProblemInternal (500): anything else; the detail is generic.
	ProblemInternal = ProblemBase + "internal"
)

// ProblemContentType is the media type of every error response.
const ProblemContentType = "application/problem+json"

var problemTitles = map[string]string{
	ProblemMalformedJSON:         "Malformed JSON",
	ProblemUnknownField:          "Unknown field",
	ProblemWrongType:             "Wrong type",
	ProblemDuplicateKey:          "Duplicate key",
	ProblemBodyTooLarge:          "Request body too large",
	ProblemHeadersTooLarge:       "Request headers too large",
	ProblemInvalidQuery:          "Invalid query",
	ProblemInvalidPosition:       "Invalid position token",
	ProblemInvalidIdempotencyKey: "Invalid idempotency key",
	ProblemInvalidCorrelationID:  "Invalid correlation ID",
	ProblemUnauthorized:          "Unauthorized",
	ProblemInsufficientScope:     "Insufficient scope",
	ProblemNotFound:              "Not found",
	ProblemMethodNotAllowed:      "Method not allowed",
	ProblemConcurrencyConflict:   "Concurrency conflict",
	ProblemIdempotencyKeyReused:  "Idempotency key reused",
	ProblemUnsupportedMediaType:  "Unsupported media type",
	ProblemCommandRejected:       "Command rejected",
	ProblemInvalidCommand:        "Invalid command",
	ProblemWaitTimeout:           "Read model not up to date",
	ProblemDatabaseUnavailable:   "Database unavailable",
	ProblemOverloaded:            "Service overloaded",
	ProblemReadModelUnavailable:  "Read model not built yet",
	ProblemUnavailable:           "Service unavailable",
	ProblemInternal:              "Internal server error",
}

// Problem is an RFC 9457 problem detail. Handlers and middleware may return
// one as an error; the server writes it as is.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`

	// Header holds response headers that go with the problem
	// (WWW-Authenticate, Retry-After, Allow).
	Header http.Header `json:"-"`
	// Err is the underlying error, logged and never sent.
	Err error `json:"-"`
}

// NewProblem returns a problem of one of the types above with its title.
func NewProblem(status int, typ, detail string) *Problem {
	title := problemTitles[typ]
	if title == "" {
		title = http.StatusText(status)
	}
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail}
}

func (p *Problem) Error() string {
	if p.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", p.Status, p.Type, p.Detail, p.Err)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, p.Type, p.Detail)
}

// Unwrap returns the underlying error.
func (p *Problem) Unwrap() error { return p.Err }

func (p *Problem) withHeader(key, value string) *Problem {
	if p.Header == nil {
		p.Header = http.Header{}
	}
	p.Header.Set(key, value)
	return p
}

func (p *Problem) wrap(err error) *Problem {
	p.Err = err
	return p
}

func badRequest(typ, format string, args ...any) *Problem {
	return NewProblem(http.StatusBadRequest, typ, fmt.Sprintf(format, args...))
}

// problemFor maps any error a handler returned to the problem the client
// sees: a *Problem as is, echo's errors by their status, anything else by
// the table in classify.go.
func (s *Server) problemFor(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return s.problemForHTTPError(he)
	}
	return s.classified(err)
}

func (s *Server) problemForHTTPError(he *echo.HTTPError) *Problem {
	switch he.Code {
	case http.StatusNotFound:
		return NewProblem(http.StatusNotFound, ProblemNotFound, "no such route").wrap(he)
	case http.StatusMethodNotAllowed:
		return NewProblem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "the route does not accept this method").wrap(he)
	case http.StatusUnsupportedMediaType:
		return NewProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "unsupported content type").wrap(he)
	case http.StatusRequestEntityTooLarge:
		return badRequest(ProblemBodyTooLarge, "the request body exceeds %d bytes", s.cfg.BodyLimit).wrap(he)
	case http.StatusUnauthorized:
		return s.unauthorized("", "authentication required").wrap(he)
	case http.StatusForbidden:
		return NewProblem(http.StatusForbidden, ProblemInsufficientScope, "forbidden").wrap(he)
	}
	if he.Code >= 400 && he.Code < 500 {
		return &Problem{Type: "about:blank", Title: http.StatusText(he.Code), Status: he.Code, Err: he}
	}
	return NewProblem(http.StatusInternalServerError, ProblemInternal, internalDetail).wrap(he)
}

// dataException tells a PostgreSQL error that a value the statement was
// given is out of the type's range or malformed (a date before year 1, a
// NUL in a text parameter, a number too large): on a query route, the
// request's parameters, which the route validated as far as it knew. Only
// these codes of class 22 count; others of the class (division by zero,
// say) come from the query's own arithmetic on stored data and stay 500s.
func dataException(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "22001", // string_data_right_truncation
		"22003", // numeric_value_out_of_range
		"22007", // invalid_datetime_format
		"22008", // datetime_field_overflow
		"22009", // invalid_time_zone_displacement_value
		"22021", // character_not_in_repertoire (a NUL in text)
		"22P02", // invalid_text_representation
		"22P05": // untranslatable_character
		return true
	}
	return false
}

// unavailable is a 503 with Retry-After.
func (s *Server) unavailable(typ, detail string) *Problem {
	return NewProblem(http.StatusServiceUnavailable, typ, detail).withHeader("Retry-After", strconv.Itoa(s.retryAfterSeconds(nil)))
}

// readModelMissing tells a query of a table or schema that does not exist:
// a read model whose projection has not run yet, which a retry after the
// daemon's first pass answers.
func readModelMissing(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// writeProblem sends p, completing it with the request's path and ID rid.
func (s *Server) writeProblem(c echo.Context, p *Problem, rid string) error {
	res := c.Response()
	if res.Committed {
		return nil
	}
	out := *p
	if out.Type == "" {
		out.Type = "about:blank"
	}
	if out.Title == "" {
		out.Title = http.StatusText(out.Status)
	}
	out.Instance = c.Request().URL.EscapedPath()
	out.RequestID = rid
	for k, vs := range p.Header {
		for _, v := range vs {
			res.Header().Add(k, v)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	res.Header().Set(echo.HeaderContentType, ProblemContentType)
	res.Header().Set(echo.HeaderCacheControl, "no-store")
	if c.Request().Method == http.MethodHead {
		return c.NoContent(out.Status)
	}
	res.WriteHeader(out.Status)
	_, err = res.Write(b)
	return err
}
