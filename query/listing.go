package query

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The query parameters ParseListRequest reserves; no filter may use them.
const (
	SortParam   = "sort"
	LimitParam  = "limit"
	CursorParam = "cursor"
)

// Limits applied when a ListSpec leaves them zero.
const (
	DefaultLimit    = 20
	DefaultMaxLimit = 100
)

// MaxInValues bounds how many comma-separated values an In filter accepts.
const MaxInValues = 100

// Op is how a filter compares its column with the client's value.
type Op int

// Filter operators. Ranges are two filters on one column, e.g.
// "created_from" with GtOrEq and "created_to" with Lt.
const (
	Eq     Op = iota // column = value
	NotEq            // column <> value
	Lt               // column < value
	LtOrEq           // column <= value
	Gt               // column > value
	GtOrEq           // column >= value
	In               // column = any of the comma-separated values
)

var opSQL = [...]string{Eq: "=", NotEq: "<>", Lt: "<", LtOrEq: "<=", Gt: ">", GtOrEq: ">=", In: "= ANY"}

// String returns the operator's SQL.
func (o Op) String() string {
	if o < 0 || int(o) >= len(opSQL) {
		return "Op(" + strconv.Itoa(int(o)) + ")"
	}
	return opSQL[o]
}

// Column is an allow-listed sort key or tie-breaker.
type Column struct {
	// Name is the SQL expression, inserted verbatim into the query: a
	// constant of the program (e.g. "created_at" or "o.created_at"), never
	// client input. A literal question mark must be written "??".
	Name string
	// Type is the column's SQL type (e.g. "timestamptz", "bigint", "uuid",
	// "text"): cursor values travel as text and are cast back to it.
	Type string
}

// Filter is an allow-listed filter: the client's value, always a bound
// parameter, is compared with Column by Op.
type Filter struct {
	// Column is the SQL expression, inserted verbatim (see Column.Name).
	Column string
	// Op compares the column with the value; the zero value is Eq.
	Op Op
	// Type is the SQL type the value (sent as text) is cast to; empty means
	// "text". For In, the element type.
	Type string
	// Validate, when set, checks each value; an error makes the request
	// invalid (ErrInvalidFilter). When nil, values of the well-known types
	// are checked by their type: uuid (canonical form), smallint, integer,
	// bigint, numeric, real, double precision, boolean, date, and timestamp
	// and timestamptz (RFC 3339, or a bare date meaning its midnight).
	Validate func(value string) error
}

// ListSpec describes one listing: what a client may filter and sort on, the
// tie-breaker that makes the order total, and the page sizes. Specs are
// program constants; their column names and types are the only SQL text a
// listing adds to its base query.
type ListSpec struct {
	// Name identifies the listing; a cursor works only for the listing that
	// made it.
	Name string
	// Filters maps public parameter names to filters.
	Filters map[string]Filter
	// Sorts maps public sort names to columns. The client sorts by
	// "name" (ascending) or "-name" (descending).
	Sorts map[string]Column
	// TieBreaker is a unique, non-null column (usually the primary key)
	// ordered after the sort column so that every row has a distinct
	// position.
	TieBreaker Column
	// DefaultSort is the sort when the client names none, e.g. "-created_at".
	DefaultSort string
	// DefaultLimit is the page size when the client names none: DefaultLimit
	// (or MaxLimit if smaller) when zero.
	DefaultLimit int
	// MaxLimit is the largest page size a client may ask for: DefaultMaxLimit
	// when zero.
	MaxLimit int
	// CursorKeys sign and verify this listing's cursors. Specs are program
	// constants and keys are the service's, so a handler sets them on a
	// copy of its spec (app gives modules the service's keys as
	// Deps.CursorKeys). When nil, a random key made when the process
	// started signs: its cursors fail after a restart and on any other
	// instance of the service.
	//
	// ParseListRequest verifies a cursor's signature only when the spec it
	// is given has CursorKeys: a RequestBinder, which cannot reach the
	// service's keys, checks everything else, and List verifies the
	// signature with the keys of the spec it is given.
	CursorKeys *CursorKeys
}

// ListRequest is a client's request for one page of a listing, as an HTTP
// layer fills it from query parameters (see ParseListRequest).
type ListRequest struct {
	// Filters maps filter names to values; an empty value is no filter.
	Filters map[string]string
	// Sort is a sort name, prefixed with "-" for descending order; empty
	// means the spec's DefaultSort.
	Sort string
	// Limit is the page size; zero means the spec's default.
	Limit int
	// Cursor is the NextCursor of the previous page; empty for the first
	// page. The request must repeat the filters and sort of the request
	// that returned it.
	Cursor string

	// checked is the plan ParseListRequest made, so that List does not
	// verify the cursor a second time; it is used only while the request
	// still has the fields it was made from.
	checked *checkedPlan
}

type checkedPlan struct {
	listing string
	req     ListRequest // without checked
	plan    *plan
	// keys verified the cursor's signature; nil when ParseListRequest had
	// none to verify it with.
	keys *CursorKeys
}

// planFor returns the plan ParseListRequest made for req and spec, if req
// has not changed since; a cursor ParseListRequest could not verify is
// verified here with the spec's keys.
func (req ListRequest) planFor(spec *ListSpec) (*plan, error) {
	c := req.checked
	if c == nil || c.listing != spec.Name || c.req.Sort != req.Sort || c.req.Limit != req.Limit ||
		c.req.Cursor != req.Cursor || !maps.Equal(c.req.Filters, req.Filters) {
		return nil, nil
	}
	if req.Cursor != "" && c.keys != spec.keys() {
		if err := verifyCursor(spec.keys(), req.Cursor); err != nil {
			return nil, err
		}
	}
	return c.plan, nil
}

// FilterError reports a filter outside the allow-list or with a bad value.
// It matches ErrInvalidFilter and ErrInvalidQuery.
type FilterError struct {
	Name   string // the parameter name, as the client sent it
	Reason string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("%v %q: %s", ErrInvalidFilter, e.Name, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidFilter) true.
func (e *FilterError) Unwrap() error { return ErrInvalidFilter }

// SortError reports a sort outside the allow-list. It matches
// ErrInvalidSort and ErrInvalidQuery.
type SortError struct {
	Name string // the sort, as the client sent it
}

func (e *SortError) Error() string {
	return fmt.Sprintf("%v %q: not a sort of this listing", ErrInvalidSort, e.Name)
}

// Unwrap makes errors.Is(err, ErrInvalidSort) true.
func (e *SortError) Unwrap() error { return ErrInvalidSort }

// CursorError reports a cursor that does not decode, was not signed with
// the listing's key, or belongs to another listing, sort or set of filters.
// It matches ErrInvalidCursor and ErrInvalidQuery.
type CursorError struct {
	Reason string
}

func (e *CursorError) Error() string { return fmt.Sprintf("%v: %s", ErrInvalidCursor, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalidCursor) true.
func (e *CursorError) Unwrap() error { return ErrInvalidCursor }

// ParseListRequest reads a request from URL query parameters: "sort",
// "limit" and "cursor", and one parameter per filter of the spec. Any other
// parameter, or one given twice, is an error matching ErrInvalidQuery. The
// request is checked as List would check it, cursor included, so a handler
// can answer 400 before touching the database; the cursor's signature,
// though, only when spec has CursorKeys (see ListSpec.CursorKeys).
func ParseListRequest(spec ListSpec, v url.Values) (ListRequest, error) {
	if err := spec.check(); err != nil {
		return ListRequest{}, err
	}
	var req ListRequest
	for _, name := range sortedKeys(v) {
		vals := v[name]
		if len(vals) == 0 {
			continue
		}
		switch name {
		case SortParam:
			if len(vals) > 1 {
				return ListRequest{}, &SortError{Name: strings.Join(vals, ",")}
			}
			req.Sort = vals[0]
		case LimitParam:
			if len(vals) > 1 {
				return ListRequest{}, fmt.Errorf("%w: limit given %d times", ErrInvalidQuery, len(vals))
			}
			if vals[0] == "" {
				continue
			}
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 || n > spec.maxLimit() {
				return ListRequest{}, fmt.Errorf("%w: limit must be an integer from 1 to %d", ErrInvalidQuery, spec.maxLimit())
			}
			req.Limit = n
		case CursorParam:
			if len(vals) > 1 {
				return ListRequest{}, &CursorError{Reason: "given more than once"}
			}
			req.Cursor = vals[0]
		default:
			if _, ok := spec.Filters[name]; !ok {
				return ListRequest{}, &FilterError{Name: name, Reason: "not a parameter of this listing"}
			}
			if len(vals) > 1 {
				return ListRequest{}, &FilterError{Name: name, Reason: "given more than once"}
			}
			if req.Filters == nil {
				req.Filters = map[string]string{}
			}
			req.Filters[name] = vals[0]
		}
	}
	p, err := spec.checkedPlan(req, spec.CursorKeys)
	if err != nil {
		return ListRequest{}, err
	}
	saved := req
	saved.Filters = maps.Clone(req.Filters)
	req.checked = &checkedPlan{listing: spec.Name, req: saved, plan: p, keys: spec.CursorKeys}
	return req, nil
}

// sortedKeys returns m's keys in order; a request has few, so they fit
// in the caller's stack unless it has many.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, 8)
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// plan is a checked request: everything List needs to build its query.
type plan struct {
	sortName string
	sort     Column
	desc     bool
	filters  []boundFilter // by name
	digest   string        // of filters, carried in cursors
	limit    int
	after    *cursor
}

type boundFilter struct {
	name  string
	f     Filter
	value string
}

// plan checks the spec, then req against it.
func (s *ListSpec) plan(req ListRequest) (*plan, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.checkedPlan(req, s.keys())
}

// checkedPlan checks req against a spec that passed check, verifying a
// cursor's signature with keys unless they are nil.
func (s *ListSpec) checkedPlan(req ListRequest, keys *CursorKeys) (*plan, error) {
	p := &plan{}
	for _, name := range sortedKeys(req.Filters) {
		value := req.Filters[name]
		f, ok := s.Filters[name]
		if !ok {
			return nil, &FilterError{Name: name, Reason: "not a parameter of this listing"}
		}
		if value == "" {
			continue
		}
		if err := checkFilterValue(f, value); err != nil {
			return nil, &FilterError{Name: name, Reason: err.Error()}
		}
		p.filters = append(p.filters, boundFilter{name: name, f: f, value: value})
	}
	p.digest = filterDigest(p.filters)

	sort := req.Sort
	if sort == "" {
		sort = s.DefaultSort
	}
	name, desc := strings.CutPrefix(sort, "-")
	col, ok := s.Sorts[name]
	if !ok || name == "" {
		return nil, &SortError{Name: sort}
	}
	p.sortName, p.sort, p.desc = name, col, desc

	switch {
	case req.Limit == 0:
		p.limit = s.defaultLimit()
	case req.Limit < 1 || req.Limit > s.maxLimit():
		return nil, fmt.Errorf("%w: limit must be an integer from 1 to %d", ErrInvalidQuery, s.maxLimit())
	default:
		p.limit = req.Limit
	}

	if req.Cursor != "" {
		c, err := decodeCursor(keys, req.Cursor)
		if err != nil {
			return nil, err
		}
		switch {
		case c.Listing != s.Name:
			return nil, &CursorError{Reason: "made for another listing"}
		case c.Sort != p.sortName || c.Desc != p.desc:
			return nil, &CursorError{Reason: "made for another sort"}
		case c.Filters != p.digest:
			return nil, &CursorError{Reason: "made for other filters"}
		}
		p.after = &c
	}
	return p, nil
}

func (s *ListSpec) maxLimit() int {
	if s.MaxLimit == 0 {
		return DefaultMaxLimit
	}
	return s.MaxLimit
}

func (s *ListSpec) defaultLimit() int {
	if s.DefaultLimit == 0 {
		return min(DefaultLimit, s.maxLimit())
	}
	return s.DefaultLimit
}

// isSQLType reports whether t is what a spec may give as a SQL type: names,
// possibly schema-qualified or quoted, with modifiers and array brackets;
// that is, t matches ^[A-Za-z_"][A-Za-z0-9_ ."(),\[\]]*$ (a loop rather
// than a regexp: specs are checked on every request).
func isSQLType(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', c == '_', c == '"':
		case i > 0 && ('0' <= c && c <= '9' || strings.IndexByte(" .(),[]", c) >= 0):
		default:
			return false
		}
	}
	return true
}

// check reports a malformed spec: a programming error, not the client's, so
// it does not match ErrInvalidQuery.
func (s *ListSpec) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("query: listing %q: %s", s.Name, fmt.Sprintf(format, args...))
	}
	if s.Name == "" {
		return bad("no Name")
	}
	if err := checkColumn(s.TieBreaker); err != nil {
		return bad("tie-breaker: %v", err)
	}
	for name, col := range s.Sorts {
		if name == "" || strings.HasPrefix(name, "-") {
			return bad("sort name %q: must be non-empty and not start with '-'", name)
		}
		if err := checkColumn(col); err != nil {
			return bad("sort %q: %v", name, err)
		}
	}
	if _, ok := s.Sorts[strings.TrimPrefix(s.DefaultSort, "-")]; !ok {
		return bad("DefaultSort %q is not one of Sorts", s.DefaultSort)
	}
	for name, f := range s.Filters {
		switch {
		case name == "" || name == SortParam || name == LimitParam || name == CursorParam:
			return bad("filter name %q is empty or reserved", name)
		case strings.TrimSpace(f.Column) == "":
			return bad("filter %q: no Column", name)
		case f.Op < Eq || f.Op > In:
			return bad("filter %q: unknown Op %d", name, int(f.Op))
		case f.Type != "" && !isSQLType(f.Type):
			return bad("filter %q: type %q does not look like a SQL type", name, f.Type)
		}
	}
	if s.MaxLimit < 0 || s.DefaultLimit < 0 || s.defaultLimit() > s.maxLimit() {
		return bad("limits: default %d, max %d", s.defaultLimit(), s.maxLimit())
	}
	if s.CursorKeys != nil && len(s.CursorKeys.keys) == 0 {
		return bad("CursorKeys holds no key: make them with NewCursorKeys")
	}
	return nil
}

func checkColumn(c Column) error {
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("no Name")
	}
	if !isSQLType(c.Type) {
		return fmt.Errorf("type %q does not look like a SQL type", c.Type)
	}
	return nil
}

// filterDigest identifies a set of filter values, so that a cursor is only
// used with the filters of the listing that made it.
func filterDigest(fs []boundFilter) string {
	if len(fs) == 0 {
		return ""
	}
	var scratch [256]byte
	b := scratch[:0]
	for _, f := range fs {
		b = append(append(b, f.name...), 0)
		b = append(append(b, f.value...), 0)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// checkFilterValue applies the filter's Validate, or the check for its type,
// to each of the value's parts (an In value is a comma-separated list).
func checkFilterValue(f Filter, value string) error {
	parts := []string{value}
	if f.Op == In {
		parts = strings.Split(value, ",")
		if len(parts) > MaxInValues {
			return fmt.Errorf("more than %d values", MaxInValues)
		}
	}
	for _, v := range parts {
		if v == "" {
			return errors.New("empty value")
		}
		if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return errors.New("not valid UTF-8 text")
		}
		var err error
		if f.Validate != nil {
			err = f.Validate(v)
		} else {
			err = checkTyped(baseType(f.Type), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// baseType normalises a SQL type for checkTyped: lower case, no modifiers
// such as "(3)", single spaces, no pg_catalog prefix.
func baseType(t string) string {
	t = strings.ToLower(t)
	for {
		i := strings.IndexByte(t, '(')
		j := strings.IndexByte(t, ')')
		if i < 0 || j < i {
			break
		}
		t = t[:i] + " " + t[j+1:]
	}
	t = strings.Join(strings.Fields(t), " ")
	return strings.TrimPrefix(t, "pg_catalog.")
}

var decimal = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$`)

// checkTyped checks a value of a well-known type in the form PostgreSQL
// accepts it; values of other types are left to PostgreSQL.
func checkTyped(typ, v string) error {
	switch typ {
	case "uuid":
		if _, err := uuid.Parse(v); err != nil || len(v) != 36 {
			return errors.New("not a UUID")
		}
	case "smallint", "int2", "integer", "int", "int4", "bigint", "int8":
		bits := map[string]int{"smallint": 16, "int2": 16, "integer": 32, "int": 32, "int4": 32}[typ]
		if bits == 0 {
			bits = 64
		}
		if _, err := strconv.ParseInt(v, 10, bits); err != nil {
			return fmt.Errorf("not an integer of %d bits", bits)
		}
	case "numeric", "decimal":
		if !decimal.MatchString(v) {
			return errors.New("not a decimal number")
		}
	case "real", "float4", "double precision", "float8":
		bits := 64
		if typ == "real" || typ == "float4" {
			bits = 32
		}
		f, err := strconv.ParseFloat(v, bits)
		if !decimal.MatchString(v) || err != nil || math.IsInf(f, 0) {
			return errors.New("not a number in range")
		}
	case "boolean", "bool":
		switch strings.ToLower(v) {
		case "true", "false", "t", "f", "yes", "no", "y", "n", "on", "off", "1", "0":
		default:
			return errors.New("not a boolean")
		}
	case "date":
		if _, err := parseTime(time.DateOnly, v); err != nil {
			return errors.New("not a date (YYYY-MM-DD)")
		}
	case "timestamptz", "timestamp with time zone", "timestamp", "timestamp without time zone":
		if _, err := parseTime(time.RFC3339Nano, v); err != nil {
			if _, err := parseTime(time.DateOnly, v); err != nil {
				return errors.New("not an RFC 3339 time or a date")
			}
		}
	}
	return nil
}

func parseTime(layout, v string) (time.Time, error) {
	t, err := time.Parse(layout, v)
	if err == nil && t.Year() < 1 {
		err = errors.New("year before 1")
	}
	return t, err
}
