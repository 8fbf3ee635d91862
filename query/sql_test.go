package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/squirrel"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/query"
)

const rowCount = 1000

type item struct {
	ID         uuid.UUID `db:"id"`
	Seq        int64     `db:"seq"`
	Name       string    `db:"name"`
	Amount     float64   `db:"amount"`
	Status     string    `db:"status"`
	CustomerID uuid.UUID `db:"customer_id"`
	CreatedAt  time.Time `db:"created_at"`
}

var customers = []uuid.UUID{
	uuid.MustParse("00000000-0000-4000-8000-000000000001"),
	uuid.MustParse("00000000-0000-4000-8000-000000000002"),
	uuid.MustParse("00000000-0000-4000-8000-000000000003"),
	uuid.MustParse("00000000-0000-4000-8000-000000000004"),
	uuid.MustParse("00000000-0000-4000-8000-000000000005"),
}

var itemsSpec = query.ListSpec{
	Name: "items",
	Filters: map[string]query.Filter{
		"customer_id":  {Column: "customer_id", Type: "uuid"},
		"status":       {Column: "status", Op: query.In},
		"name":         {Column: "name"},
		"created_from": {Column: "created_at", Op: query.GtOrEq, Type: "timestamptz"},
		"created_to":   {Column: "created_at", Op: query.Lt, Type: "timestamptz"},
		"min_amount":   {Column: "amount", Op: query.GtOrEq, Type: "numeric"},
		"seq_not":      {Column: "seq", Op: query.NotEq, Type: "bigint"},
	},
	Sorts: map[string]query.Column{
		"created_at": {Name: "created_at", Type: "timestamptz"},
		"amount":     {Name: "amount", Type: "numeric"},
		"name":       {Name: "name", Type: "text"},
		"seq":        {Name: "seq", Type: "bigint"},
		"id":         {Name: "id", Type: "uuid"},
	},
	TieBreaker:   query.Column{Name: "id", Type: "uuid"},
	DefaultSort:  "-created_at",
	DefaultLimit: 25,
	MaxLimit:     200,
	CursorKeys:   itemsKeys,
}

var itemsKeys, _ = query.NewCursorKeys([]byte("the items listing's cursor key"))

type fixture struct {
	pool  *pgxpool.Pool
	table string
	base  squirrel.SelectBuilder
}

// newFixture makes a table of rowCount items whose sort columns repeat
// values (so the tie-breaker matters), with microsecond timestamps.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool := pgtest.Pool(t, 4)
	table := pgtest.Schema(t, pool) + ".items"
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE `+table+` (
		id uuid PRIMARY KEY,
		seq bigint NOT NULL,
		name text NOT NULL,
		amount numeric(10,2) NOT NULL,
		status text NOT NULL,
		customer_id uuid NOT NULL,
		created_at timestamptz NOT NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO `+table+`
		SELECT gen_random_uuid(), i % 100,
			(ARRAY['alpha','Beta','gamma','delta','épée','zeta','eta','theta','Iota','kappa','lambda','mu','nu'])[1 + i % 13],
			(i % 17) * 1.25,
			(ARRAY['open','closed','void'])[1 + i % 3],
			($1::uuid[])[1 + i % 5],
			'2024-03-01T10:00:00Z'::timestamptz + (i % 37) * interval '1.234567 second'
		FROM generate_series(1, $2::int) i`, customers, rowCount)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		pool:  pool,
		table: table,
		base:  query.SQL.Select("id", "seq", "name", "amount", "status", "customer_id", "created_at").From(table),
	}
}

// ids returns the ids of the rows matching where (SQL written by the test),
// in the given order: the reference List must reproduce.
func (f *fixture) ids(t *testing.T, where, orderBy string, args ...any) []uuid.UUID {
	t.Helper()
	if where == "" {
		where = "true"
	}
	rows, err := f.pool.Query(context.Background(), "SELECT id FROM "+f.table+" WHERE "+where+" ORDER BY "+orderBy, args...)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// all pages through a listing from the first page, returning the items in
// order and the number of pages.
func (f *fixture) all(t *testing.T, req query.ListRequest) ([]item, int) {
	t.Helper()
	var items []item
	pages := 0
	for {
		page, err := query.List(context.Background(), f.pool, itemsSpec, f.base, req, pgx.RowToStructByName[item])
		if err != nil {
			t.Fatalf("page %d of %+v: %v", pages+1, req, err)
		}
		pages++
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			return items, pages
		}
		if len(page.Items) == 0 {
			t.Fatalf("page %d is empty but has a next cursor", pages)
		}
		if pages > rowCount+1 {
			t.Fatalf("more than %d pages", pages)
		}
		req.Cursor = page.NextCursor
	}
}

func idsOf(items []item) []uuid.UUID {
	ids := make([]uuid.UUID, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

func checkSameOrder(t *testing.T, got, want []uuid.UUID) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	seen := map[uuid.UUID]bool{}
	for i := range got {
		if seen[got[i]] {
			t.Fatalf("row %d: %s visited twice", i, got[i])
		}
		seen[got[i]] = true
		if got[i] != want[i] {
			t.Fatalf("row %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestListVisitsEveryRowOnceInOrder(t *testing.T) {
	f := newFixture(t)
	for _, sortName := range []string{"created_at", "amount", "name", "seq", "id"} {
		for _, desc := range []bool{false, true} {
			sort, order := sortName, sortName+", id"
			if desc {
				sort, order = "-"+sortName, sortName+" DESC, id DESC"
			}
			if sortName == "id" {
				order = strings.Replace(order, ", id DESC", "", 1)
				order = strings.Replace(order, ", id", "", 1)
			}
			want := f.ids(t, "", order)
			if len(want) != rowCount {
				t.Fatalf("fixture has %d rows", len(want))
			}
			for _, limit := range []int{7, 100, 200} {
				t.Run(fmt.Sprintf("%s/limit=%d", sort, limit), func(t *testing.T) {
					items, pages := f.all(t, query.ListRequest{Sort: sort, Limit: limit})
					checkSameOrder(t, idsOf(items), want)
					if wantPages := (rowCount + limit - 1) / limit; pages != wantPages {
						t.Errorf("%d pages, want %d", pages, wantPages)
					}
					checkMonotonic(t, items, sortName, desc)
				})
			}
		}
	}
	t.Run("-created_at/limit=1", func(t *testing.T) {
		items, pages := f.all(t, query.ListRequest{Limit: 1}) // the default sort
		checkSameOrder(t, idsOf(items), f.ids(t, "", "created_at DESC, id DESC"))
		if pages != rowCount {
			t.Errorf("%d pages, want %d", pages, rowCount)
		}
	})
}

// checkMonotonic checks the order in Go for the keys Go orders like
// PostgreSQL, and that the keys repeat (so the tie-breaker was needed).
func checkMonotonic(t *testing.T, items []item, sortName string, desc bool) {
	t.Helper()
	cmp := func(a, b item) int {
		switch sortName {
		case "created_at":
			return a.CreatedAt.Compare(b.CreatedAt)
		case "amount":
			return compare(a.Amount, b.Amount)
		case "seq":
			return compare(a.Seq, b.Seq)
		}
		return 0
	}
	repeats := false
	for i := 1; i < len(items); i++ {
		c := cmp(items[i-1], items[i])
		if desc {
			c = -c
		}
		if c > 0 {
			t.Fatalf("rows %d and %d out of %s order", i-1, i, sortName)
		}
		repeats = repeats || c == 0
	}
	if sortName != "id" && sortName != "name" && !repeats {
		t.Errorf("no repeated %s values: the tie-breaker went untested", sortName)
	}
}

func compare[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestListFiltersCombineWithPaging(t *testing.T) {
	f := newFixture(t)
	from := "2024-03-01T10:00:12.345670Z" // the 11th distinct timestamp
	to := "2024-03-01T10:00:30Z"
	cases := []struct {
		name    string
		filters map[string]string
		where   string
		args    []any
	}{
		{"customer", map[string]string{"customer_id": customers[2].String()}, "customer_id = $1", []any{customers[2]}},
		{"status in", map[string]string{"status": "open,void"}, "status IN ('open','void')", nil},
		{"range", map[string]string{"created_from": from, "created_to": to},
			"created_at >= $1::text::timestamptz AND created_at < $2::text::timestamptz", []any{from, to}},
		{"everything", map[string]string{
			"customer_id": customers[0].String(), "status": "closed", "created_from": from, "min_amount": "5.00", "seq_not": "42",
		}, "customer_id = $1 AND status = 'closed' AND created_at >= $2::text::timestamptz AND amount >= 5 AND seq <> 42", []any{customers[0], from}},
		{"name with space-free unicode", map[string]string{"name": "épée"}, "name = 'épée'", nil},
		{"empty value is no filter", map[string]string{"status": ""}, "", nil},
	}
	for _, c := range cases {
		for _, sort := range []string{"created_at", "-amount", "name"} {
			t.Run(c.name+"/"+sort, func(t *testing.T) {
				name, desc := strings.CutPrefix(sort, "-")
				order := name + ", id"
				if desc {
					order = name + " DESC, id DESC"
				}
				want := f.ids(t, c.where, order, c.args...)
				if len(want) == 0 || (c.where != "" && len(want) == rowCount) {
					t.Fatalf("the filter selects %d rows: a poor test", len(want))
				}
				items, _ := f.all(t, query.ListRequest{Filters: c.filters, Sort: sort, Limit: 9})
				checkSameOrder(t, idsOf(items), want)
			})
		}
	}
}

// TestListFromURL pages the way an HTTP handler does: each request repeats
// the query string with the previous page's cursor.
func TestListFromURL(t *testing.T) {
	f := newFixture(t)
	v, err := url.ParseQuery("customer_id=" + customers[1].String() + "&status=open,closed&sort=-created_at&limit=20")
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for range rowCount {
		req, err := query.ParseListRequest(itemsSpec, v)
		if err != nil {
			t.Fatal(err)
		}
		page, err := query.List(context.Background(), f.pool, itemsSpec, f.base, req, pgx.RowToStructByName[item])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, idsOf(page.Items)...)
		if page.NextCursor == "" {
			break
		}
		if page.NextCursor != url.QueryEscape(page.NextCursor) {
			t.Fatalf("cursor %q needs escaping in a URL", page.NextCursor)
		}
		v.Set("cursor", page.NextCursor)
	}
	checkSameOrder(t, got, f.ids(t, "customer_id = $1 AND status IN ('open','closed')", "created_at DESC, id DESC", customers[1]))
}

func (f *fixture) checkIntact(t *testing.T) {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+f.table).Scan(&n); err != nil {
		t.Fatalf("the table is gone or broken: %v", err)
	}
	if n != rowCount {
		t.Fatalf("the table has %d rows, want %d", n, rowCount)
	}
}

func TestListRejectsOrNeutralisesInjection(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	evil := []string{
		`'; DROP TABLE ` + f.table + `;--`,
		`status) OR (1=1`,
		`x' OR '1'='1`,
		`$1`,
		`?`,
		`'); DELETE FROM ` + f.table + `; --`,
	}
	// As values they are plain text: no row has such a name or status.
	for _, v := range evil {
		for _, filter := range []string{"name", "status", "seq_not"} {
			page, err := query.List(ctx, f.pool, itemsSpec, f.base,
				query.ListRequest{Filters: map[string]string{filter: v}}, pgx.RowToStructByName[item])
			if filter == "seq_not" {
				if !errors.Is(err, query.ErrInvalidFilter) {
					t.Errorf("seq_not=%q: got %v, want ErrInvalidFilter", v, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s=%q: %v", filter, v, err)
			}
			if len(page.Items) != 0 {
				t.Errorf("%s=%q matched %d rows", filter, v, len(page.Items))
			}
		}
	}
	// As names, sorts or limits they are refused.
	for _, v := range evil {
		_, err := query.List(ctx, f.pool, itemsSpec, f.base,
			query.ListRequest{Filters: map[string]string{v: "open"}}, pgx.RowToStructByName[item])
		var fe *query.FilterError
		if !errors.As(err, &fe) || fe.Name != v || !errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("filter name %q: got %v, want a *FilterError naming it", v, err)
		}
		_, err = query.List(ctx, f.pool, itemsSpec, f.base, query.ListRequest{Sort: v}, pgx.RowToStructByName[item])
		var se *query.SortError
		if !errors.As(err, &se) || se.Name != v || !errors.Is(err, query.ErrInvalidSort) {
			t.Errorf("sort %q: got %v, want a *SortError naming it", v, err)
		}
		_, err = query.ParseListRequest(itemsSpec, url.Values{"limit": {v}})
		if !errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("limit %q: got %v, want ErrInvalidQuery", v, err)
		}
	}
	for _, raw := range []string{
		"sort=id%3BDROP",
		"sort=-created_at%3B%20DROP%20TABLE%20items",
		"sort=created_at,id",
		"sort=created_at%20DESC",
		"status)%20OR%20(1=1=open",
		"customer_id=%27%20OR%201=1%20--",
		"created_from=2024-01-01%27%3BDROP",
		"min_amount=1%3BDROP",
		"limit=1%3BDROP",
		"limit=10%20OR%201=1",
	} {
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := query.ParseListRequest(itemsSpec, v); !errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("?%s: got %v, want ErrInvalidQuery", raw, err)
		}
	}
	_, err := query.ParseListRequest(itemsSpec, url.Values{"sort": {"id;DROP"}})
	var se *query.SortError
	if !errors.As(err, &se) || se.Name != "id;DROP" {
		t.Errorf("sort=id;DROP: got %v", err)
	}
	f.checkIntact(t)
}

func TestListCursorErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	list := func(spec query.ListSpec, req query.ListRequest) (query.Page[item], error) {
		return query.List(ctx, f.pool, spec, f.base, req, pgx.RowToStructByName[item])
	}
	first, err := list(itemsSpec, query.ListRequest{Sort: "created_at", Limit: 10, Filters: map[string]string{"status": "open"}})
	if err != nil || first.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q", err, first.NextCursor)
	}
	good := query.ListRequest{Sort: "created_at", Limit: 10, Filters: map[string]string{"status": "open"}, Cursor: first.NextCursor}
	if _, err := list(itemsSpec, good); err != nil {
		t.Fatalf("second page: %v", err)
	}
	payload, sig, _ := strings.Cut(first.NextCursor, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := itemsSpec
	other.Name = "other-items"
	otherKey := itemsSpec
	otherKey.CursorKeys, _ = query.NewCursorKeys([]byte("0123456789abcdef0123456789abcdef"))

	cases := []struct {
		name string
		spec query.ListSpec
		req  func(r query.ListRequest) query.ListRequest
	}{
		{"garbage", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = "garbage"; return r }},
		{"not base64", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = "!!!.???"; return r }},
		{"injection", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = "'; DROP TABLE items;--"; return r }},
		{"dot only", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = "."; return r }},
		{"no signature", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = payload; return r }},
		{"tampered payload", itemsSpec, func(r query.ListRequest) query.ListRequest {
			r.Cursor = flip(payload, len(payload)/2) + "." + sig
			return r
		}},
		{"tampered signature", itemsSpec, func(r query.ListRequest) query.ListRequest {
			r.Cursor = payload + "." + flip(sig, 3)
			return r
		}},
		{"trailing bytes", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor += "x"; return r }},
		{"too long", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Cursor = strings.Repeat("a", 5000); return r }},
		{"other listing", other, func(r query.ListRequest) query.ListRequest { return r }},
		{"other key", otherKey, func(r query.ListRequest) query.ListRequest { return r }},
		{"other sort", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Sort = "amount"; return r }},
		{"other direction", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Sort = "-created_at"; return r }},
		{"default sort", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Sort = ""; return r }},
		{"other filter value", itemsSpec, func(r query.ListRequest) query.ListRequest {
			r.Filters = map[string]string{"status": "void"}
			return r
		}},
		{"filters dropped", itemsSpec, func(r query.ListRequest) query.ListRequest { r.Filters = nil; return r }},
		{"filter added", itemsSpec, func(r query.ListRequest) query.ListRequest {
			r.Filters = map[string]string{"status": "open", "name": "alpha"}
			return r
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := list(c.spec, c.req(good))
			var ce *query.CursorError
			if !errors.Is(err, query.ErrInvalidCursor) || !errors.Is(err, query.ErrInvalidQuery) || !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *CursorError", err)
			}
			if ce.Reason == "" {
				t.Error("no reason")
			}
			// ParseListRequest refuses it just the same.
			v := url.Values{"cursor": {c.req(good).Cursor}, "limit": {"10"}}
			if s := c.req(good).Sort; s != "" {
				v.Set("sort", s)
			}
			for k, fv := range c.req(good).Filters {
				v.Set(k, fv)
			}
			if _, err := query.ParseListRequest(c.spec, v); !errors.As(err, &ce) {
				t.Fatalf("ParseListRequest: got %v, want a *CursorError", err)
			}
		})
	}
	// A cursor survives a change of limit: it marks a position, not a page.
	if _, err := list(itemsSpec, func() query.ListRequest { r := good; r.Limit = 50; return r }()); err != nil {
		t.Errorf("another limit: %v", err)
	}
	f.checkIntact(t)
}

func TestListLimits(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, limit := range []int{-1, 201, 1 << 40} {
		_, err := query.List(ctx, f.pool, itemsSpec, f.base, query.ListRequest{Limit: limit}, pgx.RowToStructByName[item])
		if !errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("limit %d: got %v, want ErrInvalidQuery", limit, err)
		}
	}
	for _, limit := range []string{"0", "-1", "201", "abc", "1.5", "", " 5", "99999999999999999999"} {
		_, err := query.ParseListRequest(itemsSpec, url.Values{"limit": {limit}})
		if limit == "" {
			if err != nil {
				t.Errorf("limit=%q: %v", limit, err)
			}
			continue
		}
		if !errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("limit=%q: got %v, want ErrInvalidQuery", limit, err)
		}
	}
	for limit, want := range map[int]int{0: 25, 1: 1, 200: 200} {
		page, err := query.List(ctx, f.pool, itemsSpec, f.base, query.ListRequest{Limit: limit}, pgx.RowToStructByName[item])
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != want || page.NextCursor == "" {
			t.Errorf("limit %d: %d items, cursor %q; want %d and a cursor", limit, len(page.Items), page.NextCursor, want)
		}
	}
	// A page that ends exactly at the last row has no next cursor.
	page, err := query.List(ctx, f.pool, itemsSpec, f.base.Where("seq < 20"), query.ListRequest{Limit: 200}, pgx.RowToStructByName[item])
	if err != nil || len(page.Items) != 200 || page.NextCursor != "" {
		t.Errorf("exact last page: %d items, cursor %q, %v", len(page.Items), page.NextCursor, err)
	}
}

func TestListEmptyPageIsAnEmptyArray(t *testing.T) {
	f := newFixture(t)
	page, err := query.List(context.Background(), f.pool, itemsSpec, f.base,
		query.ListRequest{Filters: map[string]string{"name": "nobody"}}, pgx.RowToStructByName[item])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(page)
	if string(b) != `{"items":[],"next_cursor":""}` {
		t.Errorf("JSON %s", b)
	}
}

// TestListScanFuncs checks that List's cursor columns are invisible to each
// of pgx's ways of scanning a row.
func TestListScanFuncs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := query.ListRequest{Sort: "seq", Limit: 3}
	want := f.ids(t, "", "seq, id")[:3]

	ids, err := query.List(ctx, f.pool, itemsSpec, query.SQL.Select("id").From(f.table), req, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	checkSameOrder(t, ids.Items, want)

	type pair struct {
		ID  uuid.UUID
		Seq int64
	}
	pairs, err := query.List(ctx, f.pool, itemsSpec, query.SQL.Select("id", "seq").From(f.table), req, pgx.RowToStructByPos[pair])
	if err != nil {
		t.Fatal(err)
	}
	maps, err := query.List(ctx, f.pool, itemsSpec, query.SQL.Select("id", "seq").From(f.table), req, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if pairs.Items[i].ID != want[i] {
			t.Errorf("RowToStructByPos row %d: %v", i, pairs.Items[i])
		}
		if len(maps.Items[i]) != 2 || maps.Items[i]["seq"] != pairs.Items[i].Seq {
			t.Errorf("RowToMap row %d: %v", i, maps.Items[i])
		}
	}
	// Scanning into a RowScanner.
	scanned, err := query.List(ctx, f.pool, itemsSpec, f.base, req, func(row pgx.CollectableRow) (rowScanner, error) {
		var r rowScanner
		err := row.Scan(&r)
		return r, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if scanned.Items[i].id != want[i] || scanned.Items[i].columns != 7 {
			t.Errorf("RowScanner row %d: %+v", i, scanned.Items[i])
		}
	}
}

type rowScanner struct {
	id      uuid.UUID
	columns int
}

func (r *rowScanner) ScanRow(rows pgx.Rows) error {
	r.columns = len(rows.FieldDescriptions())
	vals, err := rows.Values()
	if err != nil {
		return err
	}
	if len(vals) != r.columns {
		return fmt.Errorf("%d values, %d columns", len(vals), r.columns)
	}
	dest := make([]any, r.columns)
	dest[0] = &r.id
	return rows.Scan(dest...)
}

// TestListTypes pages through sort keys of other types, with NULL-free
// values that need exact text round trips.
func TestListTypes(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	schema := pgtest.Schema(t, pool)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE TYPE `+schema+`.mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TABLE `+schema+`.things (
			id bigint PRIMARY KEY,
			day date NOT NULL,
			at timestamp NOT NULL,
			ratio double precision NOT NULL,
			big numeric NOT NULL,
			mood `+schema+`.mood NOT NULL,
			flag boolean NOT NULL,
			label text NOT NULL);
		INSERT INTO `+schema+`.things SELECT i,
			'2020-02-28'::date + (i % 4),
			'2020-02-28 23:59:59.999999'::timestamp + (i % 5) * interval '0.000001 s',
			(i % 7) / 3.0,
			(i % 6) * 1000000000000000000000.000000000000000001,
			(ARRAY['sad','ok','happy'])[1 + i % 3]::`+schema+`.mood,
			i % 2 = 0,
			(ARRAY['a', 'a''b', 'a"b', E'a\\b', '{a}', ' a', 'a,b', 'ünï', '😀', ''])[1 + i % 10]
		FROM generate_series(1, 300) i`)
	if err != nil {
		t.Fatal(err)
	}
	spec := query.ListSpec{
		Name: "things",
		Filters: map[string]query.Filter{
			"mood": {Column: "mood", Type: schema + ".mood", Op: query.In},
			"day":  {Column: "day", Type: "date"},
			"flag": {Column: "flag", Type: "boolean"},
		},
		Sorts: map[string]query.Column{
			"day": {Name: "day", Type: "date"}, "at": {Name: "at", Type: "timestamp"},
			"ratio": {Name: "ratio", Type: "double precision"}, "big": {Name: "big", Type: "numeric"},
			"mood": {Name: "mood", Type: schema + ".mood"}, "flag": {Name: "flag", Type: "boolean"},
			"label": {Name: "label", Type: "text"}, "id": {Name: "id", Type: "bigint"},
		},
		TieBreaker:  query.Column{Name: "id", Type: "bigint"},
		DefaultSort: "id",
	}
	base := query.SQL.Select("id").From(schema + ".things")
	for name := range spec.Sorts {
		for _, sort := range []string{name, "-" + name} {
			for _, filters := range []map[string]string{nil, {"mood": "ok,happy", "flag": "true"}} {
				t.Run(sort+fmt.Sprint(len(filters)), func(t *testing.T) {
					order := name + ", id"
					where := "true"
					if sort[0] == '-' {
						order = name + " DESC, id DESC"
					}
					if filters != nil {
						where = "mood IN ('ok', 'happy') AND flag"
					}
					rows, _ := pool.Query(ctx, "SELECT id FROM "+schema+".things WHERE "+where+" ORDER BY "+order)
					want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
					if err != nil {
						t.Fatal(err)
					}
					var got []int64
					req := query.ListRequest{Sort: sort, Limit: 11, Filters: filters}
					for range 100 {
						page, err := query.List(ctx, pool, spec, base, req, pgx.RowTo[int64])
						if err != nil {
							t.Fatal(err)
						}
						got = append(got, page.Items...)
						if req.Cursor = page.NextCursor; req.Cursor == "" {
							break
						}
					}
					if !slices.Equal(got, want) {
						t.Fatalf("got %d rows %v\nwant %d rows %v", len(got), got, len(want), want)
					}
				})
			}
		}
	}

	// A value PostgreSQL refuses for a type checked only there (an enum) is
	// the client's error, not the server's.
	_, err = query.List(ctx, pool, spec, base, query.ListRequest{Filters: map[string]string{"mood": "ok,furious"}}, pgx.RowTo[int64])
	var fe *query.FilterError
	if !errors.As(err, &fe) || fe.Name != "mood" {
		t.Errorf("unknown enum label: got %v, want a *FilterError for mood", err)
	}
	for _, v := range []string{"2020-02-30", "yesterday", "maybe"} {
		_, err = query.List(ctx, pool, spec, base, query.ListRequest{Filters: map[string]string{"day": v, "flag": "true"}}, pgx.RowTo[int64])
		if !errors.Is(err, query.ErrInvalidFilter) {
			t.Errorf("day=%q: got %v, want ErrInvalidFilter", v, err)
		}
	}
}

func TestListNullSortValueIsTheProgramsError(t *testing.T) {
	pool := pgtest.Pool(t, 2)
	schema := pgtest.Schema(t, pool)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+schema+`.n (id int PRIMARY KEY, v int);
		INSERT INTO `+schema+`.n VALUES (1, 1), (2, NULL), (3, 3)`); err != nil {
		t.Fatal(err)
	}
	spec := query.ListSpec{
		Name:        "n",
		Sorts:       map[string]query.Column{"v": {Name: "v", Type: "int"}, "v0": {Name: "coalesce(v, 0)", Type: "int"}},
		TieBreaker:  query.Column{Name: "id", Type: "int"},
		DefaultSort: "v",
	}
	base := query.SQL.Select("id").From(schema + ".n")
	_, err := query.List(ctx, pool, spec, base, query.ListRequest{Limit: 5}, pgx.RowTo[int32])
	if err == nil || errors.Is(err, query.ErrInvalidQuery) || !strings.Contains(err.Error(), "NULL") {
		t.Errorf("NULL sort value: got %v", err)
	}
	// Coalescing in the spec works, across pages too.
	var got []int32
	req := query.ListRequest{Sort: "v0", Limit: 1}
	for range 5 {
		page, err := query.List(ctx, pool, spec, base, req, pgx.RowTo[int32])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page.Items...)
		if req.Cursor = page.NextCursor; req.Cursor == "" {
			break
		}
	}
	if !slices.Equal(got, []int32{2, 1, 3}) {
		t.Errorf("coalesced: %v", got)
	}
}

func TestListProgrammingErrorsAreNotClientErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	broken := func(edit func(*query.ListSpec)) query.ListSpec {
		s := itemsSpec
		s.Filters = map[string]query.Filter{}
		for k, v := range itemsSpec.Filters {
			s.Filters[k] = v
		}
		edit(&s)
		return s
	}
	specs := map[string]query.ListSpec{
		"no name":          broken(func(s *query.ListSpec) { s.Name = "" }),
		"no tie-breaker":   broken(func(s *query.ListSpec) { s.TieBreaker = query.Column{} }),
		"bad default sort": broken(func(s *query.ListSpec) { s.DefaultSort = "nope" }),
		"reserved filter":  broken(func(s *query.ListSpec) { s.Filters["limit"] = query.Filter{Column: "seq"} }),
		"bad type":         broken(func(s *query.ListSpec) { s.Filters["x"] = query.Filter{Column: "seq", Type: "int; DROP"} }),
		"bad op":           broken(func(s *query.ListSpec) { s.Filters["x"] = query.Filter{Column: "seq", Op: 99} }),
		"limits":           broken(func(s *query.ListSpec) { s.DefaultLimit = 500 }),
		"empty keys":       broken(func(s *query.ListSpec) { s.CursorKeys = &query.CursorKeys{} }),
	}
	for name, spec := range specs {
		_, err := query.List(ctx, f.pool, spec, f.base, query.ListRequest{}, pgx.RowToStructByName[item])
		if err == nil || errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("%s: got %v, want a non-client error", name, err)
		}
		if _, err := query.ParseListRequest(spec, url.Values{}); err == nil || errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("%s: ParseListRequest got %v, want a non-client error", name, err)
		}
	}
	for name, base := range map[string]squirrel.SelectBuilder{
		"order by": f.base.OrderBy("seq"), "limit": f.base.Limit(3), "offset": f.base.Offset(3),
	} {
		_, err := query.List(ctx, f.pool, itemsSpec, base, query.ListRequest{}, pgx.RowToStructByName[item])
		if err == nil || errors.Is(err, query.ErrInvalidQuery) {
			t.Errorf("base with %s: got %v", name, err)
		}
	}
	// The base query keeps its own conditions, and its own placeholders
	// style does not matter.
	base := squirrel.Select("id", "seq", "name", "amount", "status", "customer_id", "created_at").
		From(f.table).Where("seq = ?", 7)
	items, _ := func() ([]item, int) {
		f := *f
		f.base = base
		return f.all(t, query.ListRequest{Filters: map[string]string{"status": "open"}, Limit: 2})
	}()
	checkSameOrder(t, idsOf(items), f.ids(t, "seq = 7 AND status = 'open'", "created_at DESC, id DESC"))
}

func TestGet(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.ids(t, "", "id")[0]
	get := func(id string) (item, error) {
		return query.Get(ctx, f.pool, f.base.Where(squirrel.Eq{"id": id}), pgx.RowToStructByName[item], "item", id)
	}
	it, err := get(id.String())
	if err != nil || it.ID != id {
		t.Fatalf("got %+v, %v", it, err)
	}
	for _, missing := range []string{uuid.NewString(), "not-a-uuid", "'; DROP TABLE items;--"} {
		_, err := get(missing)
		var nf *query.NotFoundError
		if !errors.Is(err, query.ErrNotFound) || !errors.As(err, &nf) || nf.Resource != "item" || nf.ID != missing {
			t.Errorf("%q: got %v, want NotFound", missing, err)
		}
	}
	// More than one row is the program's error.
	_, err = query.Get(ctx, f.pool, f.base.Where("seq = ?", 1), pgx.RowToStructByName[item], "item", "seq 1")
	if err == nil || errors.Is(err, query.ErrNotFound) {
		t.Errorf("two rows: got %v", err)
	}
	// So is a broken query.
	_, err = query.Get(ctx, f.pool, f.base.Where("nope = 1"), pgx.RowToStructByName[item], "item", "x")
	if err == nil || errors.Is(err, query.ErrNotFound) {
		t.Errorf("broken query: got %v", err)
	}
	f.checkIntact(t)
}

// The cursor carries values as text: a time with all its microseconds.
func TestListCursorKeepsMicroseconds(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var got []time.Time
	req := query.ListRequest{Sort: "created_at", Limit: 1, Filters: map[string]string{"seq_not": strconv.Itoa(-1)}}
	for range 40 {
		page, err := query.List(ctx, f.pool, itemsSpec, f.base.Where("seq = 0"), req, pgx.RowToStructByName[item])
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			got = append(got, it.CreatedAt)
		}
		if req.Cursor = page.NextCursor; req.Cursor == "" {
			break
		}
	}
	if len(got) != 10 || !slices.IsSortedFunc(got, time.Time.Compare) {
		t.Fatalf("got %d times: %v", len(got), got)
	}
	if !slices.ContainsFunc(got, func(t time.Time) bool { return t.Nanosecond()%1e6 != 0 }) {
		t.Errorf("no times with microseconds: %v", got)
	}
}

func TestGetPrepared(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.ids(t, "", "id")[0]
	byID := query.MustPrepare(f.base.Where("id = ?"))
	if !strings.Contains(byID.SQL(), "id = $1") {
		t.Fatalf("prepared SQL %q", byID.SQL())
	}
	it, err := query.GetPrepared(ctx, f.pool, byID, pgx.RowToStructByName[item], "item", id.String(), id)
	if err != nil || it.ID != id {
		t.Fatalf("got %+v, %v", it, err)
	}
	// The same as Get, row for row.
	want, err := query.Get(ctx, f.pool, f.base.Where(squirrel.Eq{"id": id}), pgx.RowToStructByName[item], "item", id.String())
	if err != nil || !reflect.DeepEqual(it, want) {
		t.Fatalf("Get gave %+v, %v; GetPrepared %+v", want, err, it)
	}
	for _, missing := range []string{uuid.NewString(), "not-a-uuid", "'; DROP TABLE items;--"} {
		_, err := query.GetPrepared(ctx, f.pool, byID, pgx.RowToStructByName[item], "item", missing, missing)
		var nf *query.NotFoundError
		if !errors.Is(err, query.ErrNotFound) || !errors.As(err, &nf) || nf.ID != missing {
			t.Errorf("%q: got %v, want NotFound", missing, err)
		}
	}
	// A value bound at preparation would be fixed for every call: refused.
	if _, err := query.Prepare(f.base.Where(squirrel.Eq{"id": id})); !errors.Is(err, query.ErrPreparedArgs) {
		t.Errorf("prepare with a value: got %v", err)
	}
	// So is a call with the wrong number of arguments.
	if _, err := query.GetPrepared(ctx, f.pool, byID, pgx.RowToStructByName[item], "item", "x"); !errors.Is(err, query.ErrPreparedArgs) {
		t.Errorf("no arguments: got %v", err)
	}
	// An escaped ?? is not a placeholder.
	p := query.MustPrepare(f.base.Where("id = ?").Where("'a??' <> ''"))
	if _, err := query.GetPrepared(ctx, f.pool, p, pgx.RowToStructByName[item], "item", id.String(), id); err != nil {
		t.Errorf("escaped question mark: %v (SQL %q)", err, p.SQL())
	}
	f.checkIntact(t)
}
