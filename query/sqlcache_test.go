package query

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/Masterminds/squirrel"
)

func resetQueryCache() {
	queryCache.mu.Lock()
	queryCache.m = nil
	queryCache.mu.Unlock()
}

// Bases of every kind of clause that carries arguments, before and after
// the WHERE clause List adds to.
func cacheTestBases() map[string]squirrel.SelectBuilder {
	return map[string]squirrel.SelectBuilder{
		"plain":    SQL.Select("*").From("orders"),
		"no args":  SQL.Select("o.id", "o.total").From("orders o").Where("o.deleted = false"),
		"where":    SQL.Select("*").From("orders").Where(squirrel.Eq{"tenant": "t1"}).Where("region = ANY(?)", []string{"eu", "us"}),
		"question": squirrel.Select("*").From("orders").Where("tenant = ?", "t1"),
		"all clauses": SQL.Select("o.*").Column("? AS tag", "x").
			FromSelect(SQL.Select("*").From("orders").Where("kind = ?", "k"), "o").
			JoinClause("JOIN customers c ON c.id = o.customer_id AND c.region = ?", "eu").
			Where("o.tenant = ?", "t1").
			GroupBy("o.id").Having("count(*) > ?", 0).
			Suffix("FOR SHARE OF o SKIP LOCKED /* ? */", "s"),
	}
}

// TestQueryCacheMatchesFreshBuild: for every shape (base query, sort,
// direction, cursor or none, page size, filters in use), the SQL List runs
// from its cache is the SQL text and arguments squirrel builds afresh, and
// other values in the same shape (filters, cursor) hit the same cached
// text unchanged, whatever they contain.
func TestQueryCacheMatchesFreshBuild(t *testing.T) {
	resetQueryCache()
	t.Cleanup(resetQueryCache)
	spec := fuzzSpec
	names := slices.Sorted(maps.Keys(spec.Filters))
	// None, every filter alone, neighbours in pairs, and all of them.
	sets := [][]string{nil, names}
	for i := range names {
		sets = append(sets, names[i:i+1])
		if i > 0 {
			sets = append(sets, names[i-1:i+1])
		}
	}
	hostile := []string{"'; DROP TABLE orders; --", "$1", "?", "??", ") OR (1=1", "a,b,?,$2", "\x00", "ünï \"q\""}
	values := func(set []string, variant int) []boundFilter {
		var fs []boundFilter
		for k, n := range set {
			v := "v" + n
			if variant > 0 {
				v = hostile[(variant+k)%len(hostile)]
			}
			fs = append(fs, boundFilter{name: n, f: spec.Filters[n], value: v})
		}
		return fs
	}
	shapes, misses := 0, 0
	for baseName, base := range cacheTestBases() {
		for _, sortName := range slices.Sorted(maps.Keys(spec.Sorts)) {
			for _, desc := range []bool{false, true} {
				for _, after := range []bool{false, true} {
					for _, limit := range []int{1, spec.maxLimit()} {
						for _, set := range sets {
							shapes++
							var cached string
							for variant := range 3 {
								p := &plan{sortName: sortName, sort: spec.Sorts[sortName], desc: desc, filters: values(set, variant), limit: limit}
								if after {
									p.after = &cursor{Key: "2024-01-01T00:00:00+00:00", Tie: "7"}
									if variant > 0 {
										p.after = &cursor{Key: hostile[variant], Tie: hostile[variant+2]}
									}
								}
								name := fmt.Sprintf("%s sort=%s desc=%v after=%v limit=%d filters=%v variant %d", baseName, sortName, desc, after, limit, set, variant)
								k := p.key(&spec, mustSQL(t, base))
								hit := cachedQuery(&k) != nil
								if !hit {
									misses++
								}
								if variant > 0 && !hit {
									t.Fatalf("%s: other values missed the cache", name)
								}
								gotSQL, gotArgs, err := p.query(&spec, base)
								if err != nil {
									t.Fatalf("%s: %v", name, err)
								}
								wantSQL, wantArgs, err := p.build(&spec, base).ToSql()
								if err != nil {
									t.Fatalf("%s: %v", name, err)
								}
								if gotSQL != wantSQL || !reflect.DeepEqual(gotArgs, wantArgs) {
									t.Fatalf("%s:\ncached %s %#v\nfresh  %s %#v", name, gotSQL, gotArgs, wantSQL, wantArgs)
								}
								if variant == 0 {
									cached = gotSQL
								} else if gotSQL != cached {
									t.Fatalf("%s: values changed the cached SQL:\n%s\n%s", name, cached, gotSQL)
								}
								if tmpl := cachedQuery(&k); tmpl == nil || tmpl.sql != gotSQL {
									t.Fatalf("%s: the query was not cached", name)
								}
								if strings.Contains(gotSQL, "DROP") || strings.Contains(gotSQL, "1=1") || strings.Contains(gotSQL, "ünï") {
									t.Fatalf("%s: a value reached the SQL text: %s", name, gotSQL)
								}
								if n := cachedQueries(); n > maxCachedQueries {
									t.Fatalf("%d cached queries, more than %d", n, maxCachedQueries)
								}
							}
						}
					}
				}
			}
		}
	}
	if shapes <= maxCachedQueries || misses != shapes {
		t.Errorf("%d shapes, %d cache misses: want more shapes than the cache holds, each missing once", shapes, misses)
	}
}

func mustSQL(t *testing.T, b squirrel.SelectBuilder) string {
	t.Helper()
	s, _, err := b.ToSql()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A base squirrel cannot render alone (no columns) still gets List's
// query, uncached, as before the cache.
func TestQueryWithoutBaseColumns(t *testing.T) {
	resetQueryCache()
	t.Cleanup(resetQueryCache)
	base := SQL.Select().From("orders")
	p, err := fuzzSpec.plan(ListRequest{Filters: map[string]string{"note": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	gotSQL, gotArgs, err := p.query(&fuzzSpec, base)
	wantSQL, wantArgs, wantErr := p.build(&fuzzSpec, base).ToSql()
	if err != nil || wantErr != nil || gotSQL != wantSQL || !reflect.DeepEqual(gotArgs, wantArgs) {
		t.Fatalf("got %s %v %v, want %s %v %v", gotSQL, gotArgs, err, wantSQL, wantArgs, wantErr)
	}
	if n := cachedQueries(); n != 0 {
		t.Errorf("%d cached queries", n)
	}
}

// checkBase finds the base's own ORDER BY, LIMIT and OFFSET from squirrel's
// SQL text alone, and is not misled by those of a subquery, by a base
// without columns or by a base whose text cannot be rendered.
func TestCheckBase(t *testing.T) {
	base := SQL.Select("*").From("orders")
	sub := SQL.Select("id").From("orders").OrderBy("id").Limit(1).Offset(2)
	for name, c := range map[string]struct {
		b      squirrel.SelectBuilder
		refuse bool
	}{
		"plain":                {base, false},
		"no columns":           {SQL.Select().From("orders"), false},
		"suffix":               {base.Suffix("FOR UPDATE"), false},
		"ordered subquery":     {SQL.Select("*").FromSelect(sub, "s"), false},
		"subquery in where":    {base.Where(squirrel.Expr("id IN (?)", sub)), false},
		"unrenderable":         {base.Where(failingSqlizer{}), false},
		"order by":             {base.OrderBy("id"), true},
		"order by clause":      {base.OrderByClause("id <-> ?", 1), true},
		"empty order by":       {base.OrderBy(""), true},
		"no columns, order by": {SQL.Select().From("orders").OrderBy("id"), true},
		"limit":                {base.Limit(0), true},
		"offset":               {base.Offset(0), true},
		"both":                 {base.Limit(3).Offset(3), true},
		"limit removed":        {base.Limit(3).RemoveLimit(), false},
	} {
		err := checkBase(c.b)
		if got := errors.Is(err, errBaseOrder); got != c.refuse || (err != nil && !got) {
			t.Errorf("%s: got %v, want refused %v", name, err, c.refuse)
		}
	}
}

// failingSqlizer is a condition squirrel cannot render.
type failingSqlizer struct{}

func (failingSqlizer) ToSql() (string, []any, error) { return "", nil, errors.New("no SQL") }

// BenchmarkPageQuery: the SQL and arguments of a page after a cursor,
// built by squirrel for every request ("fresh") or taken from the cache.
func BenchmarkPageQuery(b *testing.B) {
	base := SQL.Select("id", "customer", "status", "total_cents", "created_at").From(`"s"."items"`)
	p, err := fuzzSpec.plan(ListRequest{Limit: 20})
	if err != nil {
		b.Fatal(err)
	}
	p.after = &cursor{Key: "2024-01-01T00:00:00+00:00", Tie: "7"}
	b.Run("fresh", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := p.build(&fuzzSpec, base).ToSql(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := p.query(&fuzzSpec, base); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("base-only", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := base.ToSql(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A base with its own ORDER BY, LIMIT or OFFSET is refused every time,
// never cached.
func TestQueryRefusesBaseOrdering(t *testing.T) {
	resetQueryCache()
	t.Cleanup(resetQueryCache)
	p, err := fuzzSpec.plan(ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	base := SQL.Select("*").From("orders")
	for _, b := range []squirrel.SelectBuilder{base.OrderBy("id"), base.Limit(3), base.Offset(3), base.OrderBy("id")} {
		if _, _, err := p.query(&fuzzSpec, b); !errors.Is(err, errBaseOrder) {
			t.Errorf("got %v", err)
		}
	}
	if n := cachedQueries(); n != 0 {
		t.Errorf("%d cached queries", n)
	}
}
