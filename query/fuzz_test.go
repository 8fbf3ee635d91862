package query

import (
	"encoding/base64"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

var fuzzSpec = ListSpec{
	Name: "orders",
	Filters: map[string]Filter{
		"customer_id":  {Column: "customer_id", Type: "uuid"},
		"status":       {Column: "status", Op: In},
		"note":         {Column: "note"},
		"created_from": {Column: "created_at", Op: GtOrEq, Type: "timestamptz"},
		"created_to":   {Column: "created_at", Op: Lt, Type: "timestamptz"},
		"min_total":    {Column: "total", Op: GtOrEq, Type: "numeric(12,2)"},
		"max_qty":      {Column: "qty", Op: LtOrEq, Type: "int"},
		"ratio_above":  {Column: "ratio", Op: Gt, Type: "double precision"},
		"paid":         {Column: "paid", Type: "boolean"},
		"day":          {Column: "day", Op: NotEq, Type: "date"},
	},
	Sorts: map[string]Column{
		"created_at": {Name: "created_at", Type: "timestamptz"},
		"total":      {Name: "total", Type: "numeric"},
		"id":         {Name: "id", Type: "bigint"},
	},
	TieBreaker:  Column{Name: "id", Type: "bigint"},
	DefaultSort: "-created_at",
	MaxLimit:    50,
	CursorKeys:  mustKeys(fuzzKey),
}

var fuzzKey = []byte("fuzz-key-fuzz-key-fuzz-key")

func mustKeys(current []byte, previous ...[]byte) *CursorKeys {
	k, err := NewCursorKeys(current, previous...)
	if err != nil {
		panic(err)
	}
	return k
}

func fuzzCursor(t testing.TB, c cursor) string {
	s, err := encodeCursor(fuzzKey, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signPayload(key, payload []byte) string {
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(cursorMAC(key, p))
}

// FuzzParseListRequest checks that no query string panics, that every
// refusal is a client error, and that client values never reach SQL text:
// the SQL of an accepted request is the same whatever its values.
func FuzzParseListRequest(f *testing.F) {
	valid := fuzzCursor(f, cursor{Listing: "orders", Sort: "created_at", Desc: true, Key: "2024-01-01T00:00:00+00:00", Tie: "7"})
	for _, seed := range []string{
		"",
		"sort=-created_at&limit=20",
		"sort=total&limit=50&status=open,paid&customer_id=6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"created_from=2024-01-01T00:00:00Z&created_to=2024-02-01&min_total=10.50&max_qty=3&ratio_above=-1.5e3&paid=yes&day=2024-02-29",
		"cursor=" + valid,
		"cursor=" + valid + "&status=open",
		"cursor=" + valid[:len(valid)-1],
		"note=%27%3B%20DROP%20TABLE%20orders%3B--",
		"note=status)%20OR%20(1=1",
		"status)%20OR%20(1=1=x",
		"sort=id%3BDROP",
		"sort=-",
		"sort=--id",
		"sort=id&sort=total",
		"limit=0", "limit=-1", "limit=51", "limit=1e3", "limit=%2B5",
		"status=a&status=b",
		"status=,", "status=" + strings.Repeat("x,", 101),
		"customer_id=urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"created_from=0000-01-01", "created_from=2024-13-01", "max_qty=2147483648", "min_total=1e99999",
		"note=%00", "note=%ff%fe", "note=%E2%82%AC",
		"cursor=&sort=&limit=&note=",
		"%zz", "a=1;b=2", "&&&=&",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := ParseListRequest(fuzzSpec, v)
		if err != nil {
			if !errors.Is(err, ErrInvalidQuery) {
				t.Fatalf("%q: %v does not match ErrInvalidQuery", raw, err)
			}
			return
		}
		p, err := fuzzSpec.plan(req)
		if err != nil {
			t.Fatalf("%q: accepted by ParseListRequest, refused by plan: %v", raw, err)
		}
		if p.limit < 1 || p.limit > fuzzSpec.maxLimit() {
			t.Fatalf("%q: limit %d", raw, p.limit)
		}
		if _, ok := fuzzSpec.Sorts[p.sortName]; !ok {
			t.Fatalf("%q: sort %q", raw, p.sortName)
		}
		got, args, err := p.build(&fuzzSpec, SQL.Select("*").From("orders")).ToSql()
		if err != nil {
			t.Fatal(err)
		}
		// The same request with other values has the same SQL text.
		q := *p
		q.filters = append([]boundFilter(nil), p.filters...)
		for i := range q.filters {
			q.filters[i].value = "v"
		}
		if q.after != nil {
			q.after = &cursor{Key: "k", Tie: "t"}
		}
		want, _, err := q.build(&fuzzSpec, SQL.Select("*").From("orders")).ToSql()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%q: values changed the SQL:\n%s\n%s", raw, got, want)
		}
		if strings.Count(got, "$") != len(args) {
			t.Fatalf("%q: %d args for SQL %s", raw, len(args), got)
		}
		// List's cached query is the one built afresh.
		cached, cachedArgs, err := p.query(&fuzzSpec, SQL.Select("*").From("orders"))
		if err != nil || cached != got || !reflect.DeepEqual(cachedArgs, args) {
			t.Fatalf("%q: the cache gives %s %v (%v), a fresh build %s %v", raw, cached, cachedArgs, err, got, args)
		}
	})
}

// FuzzDecodeCursor checks that no cursor panics and that every refusal is
// a *CursorError; signed payloads reach the checks behind the signature.
func FuzzDecodeCursor(f *testing.F) {
	valid := fuzzCursor(f, cursor{Listing: "orders", Sort: "total", Key: "1.50", Tie: "7"})
	f.Add(valid, []byte(`{"v":1,"l":"orders","s":"total","k":"1.50","t":"7"}`))
	f.Add(valid+"=", []byte(`{"v":1,"l":"orders","s":"created_at","d":true,"k":"x","t":"y"}`))
	f.Add("", []byte(`{"v":2,"l":"orders","s":"total","k":"1","t":"1"}`))
	f.Add(".", []byte(`{"v":1,"l":"orders","s":"total","k":"1","t":"1","x":1}`))
	f.Add("abc.def", []byte(`{"v":1} {}`))
	f.Add("'; DROP TABLE orders;--", []byte(`null`))
	f.Add(strings.Repeat("A", maxCursorLen+1), []byte(`[]`))
	f.Add(strings.Replace(valid, ".", "..", 1), []byte(`{"v":1,"l":"other","s":"total","k":"1","t":"1"}`))
	f.Add("eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA", []byte("\xff"))
	f.Fuzz(func(t *testing.T, s string, payload []byte) {
		for _, c := range []string{s, signPayload(fuzzKey, payload)} {
			if _, err := decodeCursor(fuzzSpec.CursorKeys, c); err != nil {
				var ce *CursorError
				if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidCursor) || !errors.Is(err, ErrInvalidQuery) {
					t.Fatalf("%q: %v is not a *CursorError", c, err)
				}
			}
			for _, sort := range []string{"", "total", "-created_at"} {
				_, err := ParseListRequest(fuzzSpec, url.Values{"cursor": {c}, "sort": {sort}})
				if err != nil && !errors.Is(err, ErrInvalidCursor) {
					t.Fatalf("%q: %v is not ErrInvalidCursor", c, err)
				}
			}
		}
	})
}
