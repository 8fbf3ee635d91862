package query

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// SQL starts statements with PostgreSQL's $n placeholders:
//
//	query.SQL.Select("id", "status").From("orders").Where(squirrel.Eq{"id": id})
var SQL = squirrel.StatementBuilder.PlaceholderFormat(squirrel.Dollar)

// Querier runs a query: *pgxpool.Pool, *pgx.Conn and pgx.Tx all do.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Page is one page of a listing. NextCursor, empty on the last page, asks
// for the next one (ListRequest.Cursor).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// Get runs q, which must select at most one row, and scans the row with
// scan (e.g. pgx.RowToStructByName[Order]). No row is NotFound(resource,
// id); so is an id PostgreSQL cannot read as its column's type (say "abc"
// for a uuid column), since no such row can exist.
func Get[T any](ctx context.Context, db Querier, q squirrel.SelectBuilder, scan pgx.RowToFunc[T], resource, id string) (T, error) {
	var zero T
	sql, args, err := q.PlaceholderFormat(squirrel.Dollar).ToSql()
	if err != nil {
		return zero, fmt.Errorf("query: building the %s query: %w", resource, err)
	}
	return getOne(ctx, db, sql, args, scan, resource, id)
}

// Prepared is a SELECT rendered once, for the hot paths of a read API:
// squirrel builds its SQL text at start-up, and each call only binds its
// arguments.
type Prepared struct {
	sql    string
	params int
}

// ErrPreparedArgs: a prepared query built with bound values, or called
// with a different number of arguments than it has placeholders.
var ErrPreparedArgs = errors.New("query: prepared query arguments")

// Prepare renders q once. Its conditions take their values at each call,
// in order: write them as placeholders without values (Where("id = ?")).
// A builder that carries values is refused, since they would be fixed for
// every call; put constants in the SQL text instead.
func Prepare(q squirrel.SelectBuilder) (Prepared, error) {
	sql, args, err := q.PlaceholderFormat(squirrel.Question).ToSql()
	if err != nil {
		return Prepared{}, fmt.Errorf("query: preparing: %w", err)
	}
	if len(args) > 0 {
		return Prepared{}, fmt.Errorf("%w: the builder carries %d values; use placeholders without values", ErrPreparedArgs, len(args))
	}
	params := countPlaceholders(sql)
	sql, err = squirrel.Dollar.ReplacePlaceholders(sql)
	if err != nil {
		return Prepared{}, fmt.Errorf("query: preparing: %w", err)
	}
	return Prepared{sql: sql, params: params}, nil
}

// countPlaceholders counts the ? placeholders as squirrel numbers them:
// "??" is an escaped question mark, not a placeholder.
func countPlaceholders(sql string) int {
	n := 0
	for i := 0; i < len(sql); i++ {
		if sql[i] != '?' {
			continue
		}
		if i+1 < len(sql) && sql[i+1] == '?' {
			i++
			continue
		}
		n++
	}
	return n
}

// MustPrepare is Prepare for package-level variables: it panics on error.
func MustPrepare(q squirrel.SelectBuilder) Prepared {
	p, err := Prepare(q)
	if err != nil {
		panic(err)
	}
	return p
}

// SQL returns the prepared SQL text.
func (p Prepared) SQL() string { return p.sql }

// GetPrepared is Get for a prepared query: args fill its placeholders, in
// order.
func GetPrepared[T any](ctx context.Context, db Querier, p Prepared, scan pgx.RowToFunc[T], resource, id string, args ...any) (T, error) {
	if len(args) != p.params {
		var zero T
		return zero, fmt.Errorf("%w: %d placeholders, %d arguments", ErrPreparedArgs, p.params, len(args))
	}
	return getOne(ctx, db, p.sql, args, scan, resource, id)
}

// getOne runs a query of at most one row: what Get and GetPrepared share.
func getOne[T any](ctx context.Context, db Querier, sql string, args []any, scan pgx.RowToFunc[T], resource, id string) (T, error) {
	var zero T
	rows, err := db.Query(ctx, sql, args...)
	if err == nil {
		var v T
		v, err = pgx.CollectExactlyOneRow(rows, scan)
		if err == nil {
			return v, nil
		}
	}
	if errors.Is(err, pgx.ErrNoRows) || isInputError(err) {
		return zero, NotFound(resource, id)
	}
	return zero, fmt.Errorf("query: getting %s %q: %w", resource, id, err)
}

// List returns one page of the listing spec over base, a SELECT of the
// listing's rows (columns, FROM, joins and fixed conditions; no ORDER BY,
// LIMIT or OFFSET, and conditions on aggregates belong in a subquery).
//
// List adds the request's filters to the WHERE clause, orders by the sort
// column and the tie-breaker, starts after the cursor's row, and scans each
// row with scan (e.g. pgx.RowToStructByName[Order]). Client input only ever
// becomes bound parameters; the SQL text added comes from the spec. An
// invalid request is an error matching ErrInvalidQuery (as
// *FilterError, *SortError or *CursorError where that applies); any other
// error is the program's or the database's.
//
// The query has the shape
//
//	SELECT ..., <sort value as text>, <tie-breaker as text>
//	FROM ... WHERE <base> AND <filters>
//	AND (sort, tie) > (CAST($n::text AS sort type), CAST($m::text AS tie type))
//	ORDER BY sort, tie LIMIT limit+1
//
// (with < and DESC for a descending sort): the extra row tells whether
// there is a next page, and the last row's values, rendered as text by
// PostgreSQL and cast back by it, become the next cursor, so any type with
// an order works. The sort column and the tie-breaker must not be NULL; an
// index on (sort column, tie-breaker) serves the query.
//
// The SQL text depends only on the base query's text and the request's
// shape (sort, direction, cursor or none, page size, which filters), never
// on its values, so List builds it once per shape and keeps it in a
// bounded cache; a request only binds its values.
func List[T any](ctx context.Context, db Querier, spec ListSpec, base squirrel.SelectBuilder, req ListRequest, scan pgx.RowToFunc[T]) (Page[T], error) {
	p, err := req.planFor(&spec)
	if err != nil {
		return Page[T]{}, err
	}
	if p == nil {
		if p, err = spec.plan(req); err != nil {
			return Page[T]{}, err
		}
	}
	sql, args, err := p.query(&spec, base)
	if errors.Is(err, errBaseOrder) {
		return Page[T]{}, fmt.Errorf("query: listing %q: %w", spec.Name, err)
	}
	if err != nil {
		return Page[T]{}, fmt.Errorf("query: listing %q: building the query: %w", spec.Name, err)
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return Page[T]{}, p.queryError(&spec, err)
	}
	defer rows.Close()

	page := Page[T]{Items: make([]T, 0, min(p.limit, 64))}
	var last [2]string
	more := false
	row := &pageRow{Rows: rows}
	for rows.Next() {
		if len(page.Items) == p.limit {
			more = true
			break
		}
		// Only the page's last row becomes the cursor; the others are
		// checked, not copied.
		if err = cursorValues(rows, len(page.Items) == p.limit-1, &last); err != nil {
			return Page[T]{}, fmt.Errorf("query: listing %q: %w", spec.Name, err)
		}
		item, err := scan(row)
		if err != nil {
			return Page[T]{}, fmt.Errorf("query: listing %q: scanning a row: %w", spec.Name, err)
		}
		page.Items = append(page.Items, item)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Page[T]{}, p.queryError(&spec, err)
	}
	if more {
		page.NextCursor, err = encodeCursor(spec.keys().signing(), cursor{
			Listing: spec.Name, Sort: p.sortName, Desc: p.desc, Filters: p.digest,
			Key: last[0], Tie: last[1],
		})
		if err != nil {
			return Page[T]{}, err
		}
	}
	return page, nil
}

var errBaseOrder = errors.New("the base query has its own ORDER BY, LIMIT or OFFSET")

// orderProbe is a term checkBase appends to a base query's ORDER BY.
const orderProbe = "cairn_order_probe"

// checkBase refuses a base query with clauses List adds. squirrel keeps a
// builder's clauses to itself, so each is found by what it does to the
// SQL text: LIMIT and OFFSET by removing them (the text changes only if
// they were set), ORDER BY by appending a probe term, which squirrel
// writes right after "ORDER BY " only when the base has no terms of its
// own. The probe column makes a base without columns renderable; a base
// that cannot be rendered for another reason passes, and building the
// page's query reports its error.
func checkBase(base squirrel.SelectBuilder) error {
	probe := base.Column(orderProbe).OrderBy(orderProbe)
	with, _, err := probe.ToSql()
	if err != nil {
		return nil
	}
	without, _, err := probe.RemoveLimit().RemoveOffset().ToSql()
	if err != nil {
		return nil
	}
	if with != without || !strings.Contains(without, " ORDER BY "+orderProbe) {
		return errBaseOrder
	}
	return nil
}

// The two columns List appends to the base query's, hidden from scan.
const (
	sortValueColumn = "cairn_cursor_sort"
	tieValueColumn  = "cairn_cursor_tie"
)

// build makes the page's query from the base query, with the request's
// values as arguments. List runs the same SQL text from its cache (see
// plan.query).
func (p *plan) build(spec *ListSpec, base squirrel.SelectBuilder) squirrel.SelectBuilder {
	return p.buildWith(spec, base, p.appendArgs(nil, spec))
}

// buildWith makes the page's query with args, in the order appendArgs
// gives them, as the arguments of the listing's own placeholders.
func (p *plan) buildWith(spec *ListSpec, base squirrel.SelectBuilder, args []any) squirrel.SelectBuilder {
	sortCol, tie := p.sort, spec.TieBreaker
	// to_jsonb renders dates and times in ISO 8601 whatever the session's
	// DateStyle, so the text always casts back to the same value.
	q := base.PlaceholderFormat(squirrel.Dollar).Columns(
		"to_jsonb("+sortCol.Name+") #>> '{}' AS "+sortValueColumn,
		"to_jsonb("+tie.Name+") #>> '{}' AS "+tieValueColumn,
	)
	for i, f := range p.filters {
		typ := f.f.Type
		if typ == "" {
			typ = "text"
		}
		if f.f.Op == In {
			q = q.Where(f.f.Column+" = ANY(CAST(?::text[] AS "+typ+"[]))", args[i])
		} else {
			q = q.Where(f.f.Column+" "+f.f.Op.String()+" CAST(?::text AS "+typ+")", args[i])
		}
	}
	args = args[len(p.filters):]
	cmp, dir := ">", ""
	if p.desc {
		cmp, dir = "<", " DESC"
	}
	sameColumn := p.sameColumn(spec)
	if p.after != nil {
		if sameColumn {
			q = q.Where("("+sortCol.Name+") "+cmp+" CAST(?::text AS "+sortCol.Type+")", args[0])
		} else {
			q = q.Where("("+sortCol.Name+", "+tie.Name+") "+cmp+
				" (CAST(?::text AS "+sortCol.Type+"), CAST(?::text AS "+tie.Type+"))", args[0], args[1])
		}
	}
	if sameColumn {
		q = q.OrderBy(sortCol.Name + dir)
	} else {
		q = q.OrderBy(sortCol.Name+dir, tie.Name+dir)
	}
	return q.Limit(uint64(p.limit) + 1)
}

// cursorValues checks the hidden columns of the current row and, when
// keep is set, copies them into v.
func cursorValues(rows pgx.Rows, keep bool, v *[2]string) error {
	fds := rows.FieldDescriptions()
	raw := rows.RawValues()
	n := len(fds)
	if n < 2 || len(raw) != n || fds[n-2].Name != sortValueColumn || fds[n-1].Name != tieValueColumn {
		return errors.New("the query lost its cursor columns")
	}
	for i, col := range [...]string{"sort column", "tie-breaker"} {
		fd, b := fds[n-2+i], raw[n-2+i]
		if fd.DataTypeOID != pgtype.TextOID {
			return fmt.Errorf("%s rendered as type OID %d, not text", col, fd.DataTypeOID)
		}
		if b == nil {
			return fmt.Errorf("the %s is NULL in a row; keyset pagination needs non-null values (coalesce the column in the spec)", col)
		}
		if keep {
			// Text is the same bytes in the text and the binary format.
			v[i] = string(b)
		}
	}
	return nil
}

// queryError classifies an error from running a page's query: a value the
// database cannot read as its filter's type is the client's error.
func (p *plan) queryError(spec *ListSpec, err error) error {
	if isInputError(err) && len(p.filters) > 0 {
		var pgErr *pgconn.PgError
		errors.As(err, &pgErr)
		names := make([]string, len(p.filters))
		for i, f := range p.filters {
			names[i] = f.name
		}
		return &FilterError{Name: strings.Join(names, ","), Reason: pgErr.Message}
	}
	return fmt.Errorf("query: listing %q: %w", spec.Name, err)
}

// isInputError reports PostgreSQL refusing a parameter's text as a value
// of its type.
func isInputError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "22P02", // invalid_text_representation
		"22007", // invalid_datetime_format
		"22008", // datetime_field_overflow
		"22009", // invalid_time_zone_displacement_value
		"22003", // numeric_value_out_of_range
		"22021", // character_not_in_repertoire
		"22P05": // untranslatable_character
		return true
	}
	return false
}

// pageRow is the current row without List's cursor columns, as scan sees
// it. One serves a whole page, reusing its buffer of destinations.
type pageRow struct {
	pgx.Rows
	dest []any
}

func (r *pageRow) FieldDescriptions() []pgconn.FieldDescription {
	fds := r.Rows.FieldDescriptions()
	return fds[:len(fds)-2]
}

func (r *pageRow) RawValues() [][]byte {
	raw := r.Rows.RawValues()
	return raw[:len(raw)-2]
}

func (r *pageRow) Values() ([]any, error) {
	vs, err := r.Rows.Values()
	if err != nil {
		return nil, err
	}
	return vs[:len(vs)-2], nil
}

// Scan scans the visible columns; pgx skips nil destinations.
func (r *pageRow) Scan(dest ...any) error {
	if len(dest) == 1 {
		if rs, ok := dest[0].(pgx.RowScanner); ok {
			return rs.ScanRow(r)
		}
	}
	r.dest = append(append(r.dest[:0], dest...), nil, nil)
	err := r.Rows.Scan(r.dest...)
	clear(r.dest)
	return err
}
