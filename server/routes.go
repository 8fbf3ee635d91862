package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
)

// RouteOption adjusts one route.
type RouteOption func(*routeConfig)

type routeConfig struct {
	scopes    []string
	scopesSet bool
	anonymous bool
	maxWait   time.Duration
	policy    routePolicy // see policy.go
}

// WithScopes replaces the route's required scopes (by default the read
// scope for query routes and the write scope for command routes); the
// caller needs every one. With none, any authenticated caller may call it.
func WithScopes(scopes ...string) RouteOption {
	return func(r *routeConfig) { r.scopes, r.scopesSet = scopes, true }
}

// Anonymous makes the route need no authentication.
func Anonymous() RouteOption { return func(r *routeConfig) { r.anonymous = true } }

// WithMaxWait bounds the route's read-your-writes wait instead of
// Config.MaxWait.
func WithMaxWait(d time.Duration) RouteOption { return func(r *routeConfig) { r.maxWait = d } }

func (s *Server) routeConfig(defaultScope string, opts []RouteOption) *routeConfig {
	r := &routeConfig{scopes: []string{defaultScope}, maxWait: s.cfg.MaxWait}
	for _, o := range opts {
		o(r)
	}
	return r
}

// withAuth wraps h in the route's authentication once, at mount time:
// echo would apply route middleware anew on every request.
func (s *Server) withAuth(r *routeConfig, h echo.HandlerFunc) echo.HandlerFunc {
	if r.anonymous || s.auth == nil {
		return h
	}
	return s.requireScopes(r.scopes)(h)
}

// Query mounts a GET route answering query Q with the query bus's handler
// for it, as 200 and the JSON of R.
//
// The request binds to a Q through its BindRequest method (see
// RequestBinder), or else from its `param` (path) and `query` struct tags
// with echo's binder, refusing query parameters no tag names and repeated
// ones for single-valued fields. A Validate method then checks it. Every
// failure is a 400 with the problem type invalid-query.
//
// With an X-Cairn-Min-Position header, the request first waits (up to
// Config.MaxWait or WithMaxWait) until every projection the handler was
// registered as reading from (query.ReadsFrom) has processed the log up to
// that position, and answers 503 (problem type wait-timeout, with
// Retry-After) when they do not in time. A route whose handler reads from
// no projection does not wait; a malformed token is a 400 on every route.
//
// Q must be registered on the server's query bus, and the projections it
// reads from on the server's projection manager, before the route is
// mounted. The route requires the read scope unless WithScopes or
// Anonymous says otherwise.
func Query[Q, R any](s *Server, path string, opts ...RouteOption) error {
	if s.bus == nil {
		return errors.New("server: Query needs a query bus (Config.QueryBus)")
	}
	projections, err := query.Projections[Q](s.bus)
	if err != nil {
		return fmt.Errorf("server: route GET %s: %w", path, err)
	}
	if len(projections) > 0 && s.manager == nil {
		return fmt.Errorf("server: route GET %s reads from projections %v: it needs a projection manager (Config.Projections)", path, projections)
	}
	for _, name := range projections {
		if _, err := s.manager.Projector(name); err != nil {
			return fmt.Errorf("server: route GET %s: %w", path, err)
		}
	}
	rc := s.routeConfig(s.cfg.Auth.ReadScope, opts)
	authorize, err := compilePolicy[Q]("GET "+path, rc)
	if err != nil {
		return err
	}
	authorizeResult, err := compileResultPolicy[Q, R]("GET "+path, rc)
	if err != nil {
		return err
	}
	spec := querySpec(reflect.TypeFor[Q]())
	h := func(c echo.Context) error {
		pos, err := minPosition(c.Request())
		if err != nil {
			return err
		}
		q, ptr := target[Q]()
		if err := s.bindQuery(c, ptr, spec); err != nil {
			return err
		}
		if err := authorize(c, *q); err != nil {
			return err
		}
		if len(projections) > 0 && !pos.IsZero() {
			if err := s.waitFor(c, pos, projections, rc.maxWait); err != nil {
				return err
			}
		}
		res, err := query.Ask[Q, R](c.Request().Context(), s.bus, *q)
		if err != nil {
			if dataException(err) {
				return badRequest(ProblemInvalidQuery, "a query parameter is outside the range or form the database accepts").wrap(err)
			}
			return err
		}
		if err := authorizeResult(c, *q, res); err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, res)
	}
	s.echo.GET(path, s.withAuth(rc, h))
	s.addPath(path)
	return nil
}

// MustQuery is Query for start-up code: it panics on error.
func MustQuery[Q, R any](s *Server, path string, opts ...RouteOption) {
	if err := Query[Q, R](s, path, opts...); err != nil {
		panic(err)
	}
}

// waitFor waits for projections to reach pos, bounded by maxWait.
func (s *Server) waitFor(c echo.Context, pos eventstore.Position, projections []string, maxWait time.Duration) error {
	reqCtx := c.Request().Context()
	ctx, cancel := context.WithTimeout(reqCtx, maxWait)
	defer cancel()
	start := time.Now()
	err := s.manager.WaitFor(ctx, pos, projections...)
	outcome := "reached"
	defer func() { s.metrics.observeWait(c.Path(), outcome, time.Since(start)) }()
	if err == nil {
		return nil
	}
	if errors.Is(err, projection.ErrWaitTimeout) && reqCtx.Err() == nil {
		outcome = "timeout"
		return s.unavailable(ProblemWaitTimeout, fmt.Sprintf(
			"the read model has not reached position %s within %s; retry, or read without %s", pos, maxWait, HeaderMinPosition)).wrap(err)
	}
	outcome = "error"
	return err
}

// CommandResponse is the default body of a command route's 202 response.
type CommandResponse struct {
	CommandID string              `json:"command_id"`
	StreamID  string              `json:"stream_id"`
	Version   int64               `json:"version"`
	Position  eventstore.Position `json:"position"`
}

// Command mounts a POST route that dispatches command C and answers 202
// Accepted with a CommandResponse (CommandWithResponse chooses another
// body) and the header X-Cairn-Position, the read-your-writes token to
// send back as X-Cairn-Min-Position.
//
// The body must be a JSON object (Content-Type application/json; an empty
// body counts as {}) of at most Config.BodyLimit bytes; it is decoded
// strictly: unknown fields, values of the wrong type, malformed JSON and
// data after the object are 400s, another content type a 415. Path
// parameters are then merged in (see PathBinder). A query string is
// refused (400, invalid-query): all of a command's data is in its body and
// path.
//
// The Idempotency-Key header, when present, becomes the command ID (1 to
// 200 printable ASCII characters): a resubmission with the same key and
// payload answers 202 with the original result (and Idempotent-Replayed:
// true) without handling the command again; with another payload it is a
// 409. X-Correlation-ID becomes the correlation ID. The envelope's metadata
// carries the request ID and the authenticated principal's subject, which
// the events record.
//
// Failures: 422 for a command that fails its Validate method or that a
// domain rule refuses (command.Reject), 409 for a concurrency conflict that
// outlasted the dispatcher's retries, 404 when its aggregate does not
// exist, 503 when the database is unavailable, 500 otherwise (see
// problems.go). The route requires the write scope unless WithScopes or
// Anonymous says otherwise.
func Command[C any](s *Server, path string, opts ...RouteOption) error {
	return CommandWithResponse(s, path, defaultResponse[C], opts...)
}

// defaultResponse is the body of a command route's 202 response without
// CommandWithResponse.
func defaultResponse[C any](_ C, res command.Result) CommandResponse {
	return CommandResponse{CommandID: res.CommandID, StreamID: res.StreamID, Version: res.Version, Position: res.Position}
}

// CommandWithResponse is Command with the body of its 202 response shaped
// by respond, which gets the command as bound from the request and the
// dispatcher's result (the original one for a replayed command) and
// returns what to encode as JSON. The route's command type C is respond's
// first parameter's, so that a respond for another command does not
// compile:
//
//	server.CommandWithResponse(srv, "/orders", func(cmd PlaceOrder, res command.Result) PlaceOrderResponse { ... })
func CommandWithResponse[C, R any](s *Server, path string, respond func(cmd C, res command.Result) R, opts ...RouteOption) error {
	if s.dispatcher == nil {
		return errors.New("server: Command needs a dispatcher (Config.Dispatcher)")
	}
	if t := reflect.TypeFor[C](); t.Kind() == reflect.Interface {
		return fmt.Errorf("server: route POST %s: command type %s is an interface", path, t)
	}
	rc := s.routeConfig(s.cfg.Auth.WriteScope, opts)
	authorize, err := commandPolicy[C]("POST "+path, rc)
	if err != nil {
		return err
	}
	h := func(c echo.Context) error {
		r := c.Request()
		if r.URL.RawQuery != "" {
			return badRequest(ProblemInvalidQuery, "command routes take no query parameters: send the command's data in the body")
		}
		id, err := idempotencyKey(r)
		if err != nil {
			return err
		}
		corr, err := correlationID(r)
		if err != nil {
			return err
		}
		body, err := s.readCommandBody(c)
		if err != nil {
			return err
		}
		v, ptr := target[C]()
		if err := decodeCommand(body, ptr); err != nil {
			return err
		}
		if err := s.bindCommandPath(c, ptr); err != nil {
			return err
		}
		cmd := *v
		if err := authorize(c, cmd); err != nil {
			return err
		}
		meta := map[string]string{"request_id": requestIDOf(c)}
		if p, ok := PrincipalFrom(r.Context()); ok && p.Subject != "" {
			meta["principal"] = p.Subject
		}
		if s.admit != nil {
			if err := s.admit(r.Context()); err != nil {
				return err
			}
		}
		res, err := s.dispatcher.Dispatch(r.Context(), command.Envelope{ID: id, CorrelationID: corr, Metadata: meta, Payload: cmd})
		if err != nil {
			return err
		}
		hdr := c.Response().Header()
		hdr.Set(HeaderPosition, res.Position.String())
		if res.Duplicate {
			hdr.Set(HeaderReplayed, "true")
		}
		return writeJSON(c, http.StatusAccepted, respond(cmd, res))
	}
	s.echo.POST(path, s.withAuth(rc, h))
	s.addPath(path)
	return nil
}

// MustCommand is Command for start-up code: it panics on error.
func MustCommand[C any](s *Server, path string, opts ...RouteOption) {
	if err := Command[C](s, path, opts...); err != nil {
		panic(err)
	}
}

// MustCommandWithResponse is CommandWithResponse for start-up code: it
// panics on error.
func MustCommandWithResponse[C, R any](s *Server, path string, respond func(cmd C, res command.Result) R, opts ...RouteOption) {
	if err := CommandWithResponse(s, path, respond, opts...); err != nil {
		panic(err)
	}
}

func (s *Server) bindCommandPath(c echo.Context, ptr any) error {
	path, err := pathParams(c)
	if err != nil {
		return err
	}
	if pb, ok := ptr.(PathBinder); ok {
		if err := pb.BindPath(path); err != nil {
			var p *Problem
			if errors.As(err, &p) {
				return p
			}
			return badRequest(ProblemWrongType, "%s", err.Error()).wrap(err)
		}
		return nil
	}
	if len(path) == 0 {
		return nil
	}
	if err := defaultBinder.BindPathParams(c, ptr); err != nil {
		return badRequest(ProblemWrongType, "%s", s.diagnosePath(c, ptr)).wrap(err)
	}
	return nil
}

// jsonBuffer is a pooled buffer with an encoder writing into it.
type jsonBuffer struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var jsonBuffers = sync.Pool{New: func() any {
	b := new(jsonBuffer)
	b.enc = json.NewEncoder(&b.buf)
	return b
}}

// maxPooledJSON bounds the buffers kept for reuse, so that one huge
// response does not stay in memory.
const maxPooledJSON = 256 << 10

// writeJSON encodes v before writing anything, so that an encoding failure
// is still a clean 500. The body is json.Marshal's: the encoder's trailing
// newline is left out.
func writeJSON(c echo.Context, status int, v any) error {
	b := jsonBuffers.Get().(*jsonBuffer)
	defer func() {
		if b.buf.Cap() <= maxPooledJSON {
			b.buf.Reset()
			jsonBuffers.Put(b)
		}
	}()
	if err := b.enc.Encode(v); err != nil {
		return fmt.Errorf("server: encoding the response: %w", err)
	}
	out := b.buf.Bytes()
	return c.JSONBlob(status, out[:len(out)-1])
}
