package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cairn-es/cairn/eventstore"
)

// RequestBinder is implemented (on the value or on a pointer to it) by
// queries that bind their request themselves, typically list queries that
// parse allow-listed filter, sort and cursor parameters. path holds the
// route's path parameters, unescaped. Any error is the client's: the
// response is 400 with the problem type invalid-query and the error's
// message as detail (return a *Problem to choose another answer). A query
// without BindRequest is bound from its `param` and `query` struct tags
// with echo's binder, and a query parameter no tag names is refused.
type RequestBinder interface {
	BindRequest(path map[string]string, query url.Values) error
}

// PathBinder is implemented (on the value or on a pointer to it) by
// commands that take their route's path parameters themselves; an error is
// a 400 with the problem type wrong-type. A command without BindPath gets
// them through its `param` struct tags, after its body is decoded, so that
// the path wins over the body. Keep such a field's JSON name (do not tag it
// `json:"-"`): the command's JSON encoding is what the dispatcher hashes to
// tell a resubmission from a reused Idempotency-Key, and a path value left
// out of it would let one key be replayed against another path unnoticed.
type PathBinder interface {
	BindPath(path map[string]string) error
}

// Validator is implemented by queries (and commands: see the command
// package) that check themselves. A query's error is a 400 with the problem
// type invalid-query and the error's message as detail.
type Validator interface {
	Validate() error
}

// Request and response headers of the server.
const (
	// HeaderIdempotencyKey on a command request becomes the command ID:
	// resubmitting with the same key returns the original result.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderCorrelationID on a command request becomes its correlation ID.
	HeaderCorrelationID = "X-Correlation-ID"
	// HeaderPosition on a command response is the position of the last
	// event the command appended: the read-your-writes token.
	HeaderPosition = "X-Cairn-Position"
	// HeaderMinPosition on a query request makes the server wait until the
	// query's read models have processed the log up to that position.
	HeaderMinPosition = "X-Cairn-Min-Position"
	// HeaderReplayed is "true" on the response to a command that had been
	// handled before under the same idempotency key.
	HeaderReplayed = "Idempotent-Replayed"
)

// maxIDLength bounds idempotency keys and correlation IDs (the event
// store's limit on command IDs).
const maxIDLength = eventstore.MaxCommandIDLength

// singleHeader returns the value of a header that may appear at most once,
// trimmed; present is false when it is absent.
func singleHeader(r *http.Request, name string) (value string, present, ok bool) {
	vs := r.Header.Values(name)
	switch len(vs) {
	case 0:
		return "", false, true
	case 1:
		return strings.TrimSpace(vs[0]), true, true
	}
	return "", true, false
}

func idempotencyKey(r *http.Request) (string, error) {
	v, present, ok := singleHeader(r, HeaderIdempotencyKey)
	if !present {
		return "", nil
	}
	if !ok || !validToken(v, maxIDLength) {
		return "", badRequest(ProblemInvalidIdempotencyKey,
			"the Idempotency-Key header must appear once, with 1 to %d printable ASCII characters", maxIDLength)
	}
	return v, nil
}

func correlationID(r *http.Request) (string, error) {
	v, present, ok := singleHeader(r, HeaderCorrelationID)
	if !present {
		return "", nil
	}
	if !ok || !validToken(v, maxIDLength) {
		return "", badRequest(ProblemInvalidCorrelationID,
			"the X-Correlation-ID header must appear once, with 1 to %d printable ASCII characters", maxIDLength)
	}
	return v, nil
}

func minPosition(r *http.Request) (eventstore.Position, error) {
	v, present, ok := singleHeader(r, HeaderMinPosition)
	if !present {
		return eventstore.Start, nil
	}
	if !ok {
		return eventstore.Start, badRequest(ProblemInvalidPosition, "the X-Cairn-Min-Position header must appear once")
	}
	pos, err := eventstore.ParsePosition(v)
	if err != nil {
		return eventstore.Start, badRequest(ProblemInvalidPosition,
			"the X-Cairn-Min-Position header must be a position token as returned in X-Cairn-Position").wrap(err)
	}
	return pos, nil
}

// target allocates a T to bind into: ptr is a pointer to it (for a pointer
// type T, the pointer itself), and *v is the T.
func target[T any]() (v *T, ptr any) {
	v = new(T)
	if t := reflect.TypeFor[T](); t.Kind() == reflect.Pointer {
		*v = reflect.New(t.Elem()).Interface().(T)
		return v, *v
	}
	return v, v
}

var defaultBinder = &echo.DefaultBinder{}

// pathParams returns the route's path parameters, unescaped, and puts the
// unescaped values back into c for echo's binder.
func pathParams(c echo.Context) (map[string]string, error) {
	if err := unescapePathParams(c); err != nil {
		return nil, err
	}
	names, values := c.ParamNames(), c.ParamValues()
	out := make(map[string]string, len(names))
	for i, name := range names {
		out[name] = values[i]
	}
	return out, nil
}

// unescapePathParams replaces the route's path parameters in c by their
// unescaped values, when the request path has escapes.
func unescapePathParams(c echo.Context) error {
	if c.Request().URL.RawPath == "" {
		return nil // echo matched the unescaped path: nothing to undo
	}
	names, values := c.ParamNames(), c.ParamValues()
	unescaped := make([]string, len(names))
	for i, name := range names {
		u, err := url.PathUnescape(values[i])
		if err != nil {
			return badRequest(ProblemInvalidQuery, "path parameter %q is not validly escaped", name)
		}
		unescaped[i] = u
	}
	c.SetParamValues(unescaped...)
	return nil
}

// querySpec lists the query parameters a query type binds from `query`
// tags the way echo's binder finds them: name -> whether it takes several
// values.
func querySpec(t reflect.Type) map[string]bool {
	spec := map[string]bool{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 8 {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			name := f.Tag.Get("query")
			ft := f.Type
			if name == "" {
				if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[echo.BindUnmarshaler]()) {
					walk(ft, depth+1)
				} else if f.Anonymous && ft.Kind() == reflect.Pointer {
					walk(ft, depth+1)
				}
				continue
			}
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			spec[name] = ft.Kind() == reflect.Slice
		}
	}
	walk(t, 0)
	return spec
}

// bindQuery builds a Q from the request: through BindRequest, or from its
// tags, refusing unknown and repeated query parameters; then validates it.
func (s *Server) bindQuery(c echo.Context, ptr any, spec map[string]bool) error {
	r := c.Request()
	var values url.Values
	if r.URL.RawQuery != "" {
		var err error
		values, err = url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return badRequest(ProblemInvalidQuery, "the query string is malformed")
		}
	}
	if rb, ok := ptr.(RequestBinder); ok {
		path, err := pathParams(c)
		if err != nil {
			return err
		}
		if values == nil {
			values = url.Values{}
		}
		if err := rb.BindRequest(path, values); err != nil {
			var p *Problem
			if errors.As(err, &p) {
				return p
			}
			return badRequest(ProblemInvalidQuery, "%s", strings.TrimPrefix(err.Error(), "query: ")).wrap(err)
		}
	} else {
		if err := unescapePathParams(c); err != nil {
			return err
		}
		if len(values) > 0 {
			keys := make([]string, 0, len(values))
			for k := range values {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				multi, known := spec[k]
				switch {
				case !known:
					return badRequest(ProblemInvalidQuery, "unknown query parameter %q", clip(k))
				case !multi && len(values[k]) > 1:
					return badRequest(ProblemInvalidQuery, "query parameter %q given more than once", k)
				}
			}
		}
		if err := defaultBinder.BindPathParams(c, ptr); err != nil {
			return badRequest(ProblemInvalidQuery, "%s", s.diagnosePath(c, ptr)).wrap(err)
		}
		// echo's binder binds nothing from an empty query string.
		if len(values) > 0 {
			if err := defaultBinder.BindQueryParams(c, ptr); err != nil {
				return badRequest(ProblemInvalidQuery, "%s", s.diagnoseQuery(c, values, ptr)).wrap(err)
			}
		}
	}
	if v, ok := ptr.(Validator); ok {
		if err := v.Validate(); err != nil {
			return badRequest(ProblemInvalidQuery, "%s", err.Error()).wrap(err)
		}
	}
	return nil
}

// Echo's struct binder reports what failed to parse (a *strconv.NumError,
// say) but not which parameter it came from, and the client must be told.
// So on that failure, and only then, diagnosePath and diagnoseQuery ask
// echo's binder again, one parameter at a time into a fresh value, and
// name the first that fails. The parsing rules stay echo's.

// diagnosePath names the path parameter echo's binder failed on.
func (s *Server) diagnosePath(c echo.Context, ptr any) string {
	names, values := c.ParamNames(), c.ParamValues()
	return firstBad("path parameter", names, func(i int) error {
		ec := s.echo.NewContext(c.Request(), nil)
		ec.SetParamNames(names[i])
		ec.SetParamValues(values[i])
		return defaultBinder.BindPathParams(ec, fresh(ptr))
	})
}

// diagnoseQuery names the query parameter echo's binder failed on.
func (s *Server) diagnoseQuery(c echo.Context, values url.Values, ptr any) string {
	keys := slices.Sorted(maps.Keys(values))
	return firstBad("query parameter", keys, func(i int) error {
		r := c.Request().Clone(c.Request().Context())
		u := *r.URL
		u.RawQuery = url.Values{keys[i]: values[keys[i]]}.Encode()
		r.URL = &u
		return defaultBinder.BindQueryParams(s.echo.NewContext(r, nil), fresh(ptr))
	})
}

// firstBad words the failure of the first of names that bind fails on.
func firstBad(kind string, names []string, bind func(i int) error) string {
	for i, name := range names {
		if err := bind(i); err != nil {
			return fmt.Sprintf("%s %q: %s", kind, clip(name), describeBindError(err))
		}
	}
	return "a " + kind + " has an invalid value"
}

// fresh returns a new zero value of the type ptr points to, as a pointer.
func fresh(ptr any) any { return reflect.New(reflect.TypeOf(ptr).Elem()).Interface() }

func describeBindError(err error) string {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		if errors.Is(ne.Err, strconv.ErrRange) {
			return "the value is out of range"
		}
		switch ne.Func {
		case "ParseInt", "Atoi":
			return "want an integer"
		case "ParseUint":
			return "want a non-negative integer"
		case "ParseFloat":
			return "want a number"
		case "ParseBool":
			return "want true or false"
		}
	}
	var te *time.ParseError
	if errors.As(err, &te) {
		return "want a time"
	}
	return "invalid value"
}

// clip shortens client-supplied text quoted in a detail.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// readCommandBody checks the content type and reads the body, bounded.
func (s *Server) readCommandBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	ct, present, ok := singleHeader(r, echo.HeaderContentType)
	if !ok {
		return nil, NewProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "give one Content-Type: application/json")
	}
	if present {
		if err := checkJSONMediaType(ct); err != nil {
			return nil, err
		}
	}
	if r.ContentLength > s.cfg.BodyLimit {
		s.discardBody(c)
		return nil, badRequest(ProblemBodyTooLarge, "the request body exceeds %d bytes", s.cfg.BodyLimit)
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, s.cfg.BodyLimit+1))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge) || int64(len(body)) > s.cfg.BodyLimit:
			s.discardBody(c)
			return nil, badRequest(ProblemBodyTooLarge, "the request body exceeds %d bytes", s.cfg.BodyLimit)
		case err != nil:
			return nil, badRequest(ProblemMalformedJSON, "the request body could not be read").wrap(err)
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return []byte("{}"), nil // a command whose data is all in the path
	}
	if !present {
		return nil, NewProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "a request body needs Content-Type: application/json")
	}
	return body, nil
}

// checkJSONMediaType accepts application/json and application/*+json, in
// UTF-8.
func checkJSONMediaType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return NewProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "the request body must be application/json (UTF-8)")
}

// decodeCommand decodes a JSON object into ptr, strictly: no unknown
// fields, no trailing data, no key twice in one object.
func decodeCommand(body []byte, ptr any) error {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		if json.Valid(body) {
			return badRequest(ProblemWrongType, "the request body must be a JSON object")
		}
		return badRequest(ProblemMalformedJSON, "the request body is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ptr); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(ProblemMalformedJSON, "the request body has data after the JSON object")
	}
	if key, dup := duplicateKey(body); dup {
		return badRequest(ProblemDuplicateKey, "the key %q appears more than once in one object (keys that differ only in case count as the same)", clip(key))
	}
	return nil
}

func jsonProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var invalid *json.InvalidUnmarshalError
	switch {
	case errors.As(err, &syntax):
		return badRequest(ProblemMalformedJSON, "the request body is not valid JSON (at byte %d)", syntax.Offset).wrap(err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest(ProblemMalformedJSON, "the request body ends unexpectedly").wrap(err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return badRequest(ProblemWrongType, "the request body must be %s", jsonKind(typ.Type)).wrap(err)
		}
		return badRequest(ProblemWrongType, "field %q must be %s", clip(field), jsonKind(typ.Type)).wrap(err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest(ProblemUnknownField, "unknown field %s", clip(strings.TrimPrefix(err.Error(), "json: unknown field "))).wrap(err)
	case errors.As(err, &invalid):
		return err // the server's mistake: a 500
	}
	// An UnmarshalJSON or UnmarshalText method of the command refused a
	// value (a time, a position, an enum).
	return badRequest(ProblemWrongType, "a field has an invalid value: %s", clip(err.Error())).wrap(err)
}

// jsonKind names the JSON form of a Go type for a client.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	if t.Implements(reflect.TypeFor[json.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return "of another form"
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer (in range)"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer (in range)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "of another type"
}
