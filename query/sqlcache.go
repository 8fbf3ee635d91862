package query

import (
	"strconv"
	"strings"
	"sync"

	"github.com/Masterminds/squirrel"
)

// List builds each page query with squirrel once per shape and keeps it:
// a request then only binds its arguments to the cached text.
//
// A shape is everything that decides the SQL text: the base query's own
// SQL text, the sort column and the tie-breaker (names and types), the
// direction, whether there is a cursor, the page size, and the column,
// operator and type of each filter in use, in order. None of it is a
// client's value: values are always bound parameters, so the text of a
// shape is the same whatever they are (TestQueryCacheMatchesFreshBuild).
// A client chooses among the shapes a program allows (its filters, sorts
// and limits); the cache is bounded all the same, in case a program puts
// values into its base query's text.

// maxCachedQueries bounds the cache; when it is full it starts afresh.
const maxCachedQueries = 1024

type queryKey struct {
	base              string // the base query's SQL text
	sort, sortType    string
	tie, tieType      string
	filters           string // column, operator and type of each filter
	limit             int
	desc, afterCursor bool
}

// queryTemplate is the SQL text of one shape and where its arguments go:
// the listing's own (filter values, then the cursor's) are inserted into
// the base query's arguments at index at.
type queryTemplate struct {
	sql   string
	at    int
	nBase int
	nOwn  int
}

var queryCache struct {
	mu sync.RWMutex
	m  map[queryKey]*queryTemplate
}

func cachedQuery(k *queryKey) *queryTemplate {
	queryCache.mu.RLock()
	t := queryCache.m[*k]
	queryCache.mu.RUnlock()
	return t
}

func cacheQuery(k *queryKey, t *queryTemplate) {
	queryCache.mu.Lock()
	defer queryCache.mu.Unlock()
	if queryCache.m == nil || len(queryCache.m) >= maxCachedQueries {
		queryCache.m = make(map[queryKey]*queryTemplate)
	}
	queryCache.m[*k] = t
}

func cachedQueries() int {
	queryCache.mu.RLock()
	defer queryCache.mu.RUnlock()
	return len(queryCache.m)
}

// argSlot stands for the listing's i-th own argument while a template is
// built; no other package can make one, so it cannot come from the base.
type argSlot int

// query returns the SQL text and arguments of the page's query: from the
// cache when the shape is known, else built and cached.
func (p *plan) query(spec *ListSpec, base squirrel.SelectBuilder) (string, []any, error) {
	baseSQL, baseArgs, err := base.ToSql()
	if err != nil {
		// Let the full build report the error (or succeed: a base
		// without columns gets List's).
		if err := checkBase(base); err != nil {
			return "", nil, err
		}
		return p.build(spec, base).ToSql()
	}
	k := p.key(spec, baseSQL)
	t := cachedQuery(&k)
	if t == nil {
		// The base is checked when its shape is first met, not on every
		// request: a base with ORDER BY, LIMIT or OFFSET has them in its
		// SQL text, so it is not served the template of a base without
		// (short of one that writes such a clause into the raw text of
		// another, whose page query is invalid SQL either way).
		if err := checkBase(base); err != nil {
			return "", nil, err
		}
		if t = p.template(spec, base, len(baseArgs)); t == nil {
			return p.build(spec, base).ToSql()
		}
		cacheQuery(&k, t)
	}
	if len(baseArgs) != t.nBase {
		return p.build(spec, base).ToSql()
	}
	if len(baseArgs)+t.nOwn == 0 {
		return t.sql, nil, nil
	}
	args := make([]any, 0, len(baseArgs)+t.nOwn)
	args = append(args, baseArgs[:t.at]...)
	args = p.appendArgs(args, spec)
	args = append(args, baseArgs[t.at:]...)
	return t.sql, args, nil
}

func (p *plan) key(spec *ListSpec, baseSQL string) queryKey {
	k := queryKey{
		base: baseSQL,
		sort: p.sort.Name, sortType: p.sort.Type,
		tie: spec.TieBreaker.Name, tieType: spec.TieBreaker.Type,
		limit: p.limit, desc: p.desc, afterCursor: p.after != nil,
	}
	if len(p.filters) > 0 {
		var b strings.Builder
		for _, f := range p.filters {
			for _, s := range [...]string{f.f.Column, f.f.Type} {
				b.WriteString(strconv.Itoa(len(s)))
				b.WriteByte(':')
				b.WriteString(s)
			}
			b.WriteString(strconv.Itoa(int(f.f.Op)))
			b.WriteByte(';')
		}
		k.filters = b.String()
	}
	return k
}

// template builds the shape's SQL with placeholders for the listing's own
// arguments and finds where they go among the base query's nBase; nil if
// they are not together (which squirrel's clause order rules out).
func (p *plan) template(spec *ListSpec, base squirrel.SelectBuilder, nBase int) *queryTemplate {
	n := p.numArgs(spec)
	slots := make([]any, n)
	for i := range slots {
		slots[i] = argSlot(i)
	}
	sql, args, err := p.buildWith(spec, base, slots).ToSql()
	if err != nil || len(args) != nBase+n {
		return nil
	}
	at, seen := nBase, 0
	for i, a := range args {
		if s, ok := a.(argSlot); ok {
			if seen == 0 {
				at = i
			}
			if int(s) != seen || i != at+seen {
				return nil
			}
			seen++
		}
	}
	if seen != n {
		return nil
	}
	return &queryTemplate{sql: sql, at: at, nBase: nBase, nOwn: n}
}

// numArgs is how many arguments the listing adds to the base query's.
func (p *plan) numArgs(spec *ListSpec) int {
	n := len(p.filters)
	if p.after != nil {
		n++
		if !p.sameColumn(spec) {
			n++
		}
	}
	return n
}

// appendArgs appends the listing's own arguments, in the order of the
// placeholders buildWith writes.
func (p *plan) appendArgs(args []any, spec *ListSpec) []any {
	for _, f := range p.filters {
		if f.f.Op == In {
			args = append(args, strings.Split(f.value, ","))
		} else {
			args = append(args, f.value)
		}
	}
	if p.after != nil {
		args = append(args, p.after.Key)
		if !p.sameColumn(spec) {
			args = append(args, p.after.Tie)
		}
	}
	return args
}

func (p *plan) sameColumn(spec *ListSpec) bool {
	return strings.TrimSpace(p.sort.Name) == strings.TrimSpace(spec.TieBreaker.Name)
}
