package query

import (
	"errors"
	"maps"
	"net/url"
	"strings"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	c := cursor{Listing: "orders", Sort: "created_at", Desc: true, Filters: "abc", Key: `2024-01-01T00:00:00.123456+00:00 "quoted" ünï`, Tie: "42"}
	s, err := encodeCursor(fuzzKey, c)
	if err != nil {
		t.Fatal(err)
	}
	if url.QueryEscape(s) != s {
		t.Errorf("cursor %q is not URL-safe", s)
	}
	got, err := decodeCursor(fuzzSpec.CursorKeys, s)
	c.Version = cursorVersion
	if err != nil || got != c {
		t.Fatalf("got %+v, %v; want %+v", got, err, c)
	}
	if _, err := decodeCursor(mustKeys([]byte("another key, long enough")), s); !errors.Is(err, ErrInvalidCursor) {
		t.Errorf("another key: %v", err)
	}
}

// During a rotation the previous key still verifies, the current one
// signs; a key dropped from the set verifies nothing.
func TestCursorKeysRotate(t *testing.T) {
	oldKey, newKey := []byte("the key before the rotation"), []byte("the key after the rotation!")
	c := cursor{Listing: "orders", Sort: "id", Key: "1", Tie: "1"}
	old, err := encodeCursor(oldKey, c)
	if err != nil {
		t.Fatal(err)
	}
	rotating := mustKeys(newKey, oldKey)
	if _, err := decodeCursor(rotating, old); err != nil {
		t.Fatalf("a cursor of the previous key during the rotation: %v", err)
	}
	fresh, err := encodeCursor(rotating.signing(), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeCursor(mustKeys(newKey), fresh); err != nil {
		t.Fatalf("the rotation signs with the current key: %v", err)
	}
	if _, err := decodeCursor(mustKeys(newKey), old); !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("a cursor of a dropped key: %v", err)
	}
	for _, bad := range [][][]byte{{[]byte("short")}, {newKey, []byte("short")}, {nil}} {
		if _, err := NewCursorKeys(bad[0], bad[1:]...); !errors.Is(err, ErrCursorKey) {
			t.Errorf("NewCursorKeys(%q): %v", bad, err)
		}
	}
	k1, k2 := RandomCursorKeys().signing(), RandomCursorKeys().signing()
	if len(k1) != 32 || string(k1) == string(k2) {
		t.Error("random keys must be 32 bytes and differ")
	}
}

// A spec without keys signs with the process's own random key, which
// cannot be set from outside: a service holds its keys on its specs.
func TestSpecWithoutKeysUsesTheProcessKey(t *testing.T) {
	spec := fuzzSpec
	spec.CursorKeys = nil
	if spec.keys() != processKeys() || spec.keys() == nil {
		t.Fatal("a spec without keys must use the process key")
	}
	s, err := encodeCursor(processKeys().signing(), cursor{Listing: "orders", Sort: "id", Key: "1", Tie: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.plan(ListRequest{Cursor: s, Sort: "id"}); err != nil {
		t.Fatalf("process key: %v", err)
	}
	if _, err := fuzzSpec.plan(ListRequest{Cursor: s, Sort: "id"}); !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("a spec with its own keys accepted the process key's cursor: %v", err)
	}
}

// ParseListRequest on a spec without keys (a binder's) checks the cursor's
// form and what it was made for; List, given the service's keys, verifies
// its signature.
func TestParseWithoutKeysLeavesTheSignatureToList(t *testing.T) {
	bare := fuzzSpec
	bare.CursorKeys = nil
	good := fuzzCursor(t, cursor{Listing: "orders", Sort: "id", Key: "1", Tie: "1"})
	forged := signPayload([]byte("a forger's key of some length"), []byte(`{"v":1,"l":"orders","s":"id","k":"1","t":"1"}`))
	for name, c := range map[string]string{"good": good, "forged": forged} {
		req, err := ParseListRequest(bare, url.Values{"cursor": {c}, "sort": {"id"}})
		if err != nil {
			t.Fatalf("%s: the form is right: %v", name, err)
		}
		_, err = req.planFor(&fuzzSpec)
		if name == "good" && err != nil {
			t.Errorf("good: %v", err)
		}
		if name == "forged" && !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("forged: List must refuse it: %v", err)
		}
	}
	if _, err := ParseListRequest(bare, url.Values{"cursor": {good}, "sort": {"total"}}); !errors.Is(err, ErrInvalidCursor) {
		t.Errorf("a cursor of another sort: %v", err)
	}
	if _, err := ParseListRequest(bare, url.Values{"cursor": {"garbage"}}); !errors.Is(err, ErrInvalidCursor) {
		t.Errorf("garbage: %v", err)
	}
	// With the keys on the spec, ParseListRequest refuses the forgery at once.
	if _, err := ParseListRequest(fuzzSpec, url.Values{"cursor": {forged}, "sort": {"id"}}); !errors.Is(err, ErrInvalidCursor) {
		t.Errorf("forged, keyed spec: %v", err)
	}
}

func TestParseListRequest(t *testing.T) {
	req, err := ParseListRequest(fuzzSpec, url.Values{
		"status": {"open,paid"}, "sort": {"total"}, "limit": {"50"}, "note": {""},
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Sort != "total" || req.Limit != 50 || len(req.Filters) != 2 || req.Filters["status"] != "open,paid" || req.Cursor != "" {
		t.Errorf("got %+v", req)
	}
	for raw, want := range map[string]error{
		"unknown=1":                              ErrInvalidFilter,
		"status=a&status=b":                      ErrInvalidFilter,
		"status=a,,b":                            ErrInvalidFilter,
		"customer_id=123":                        ErrInvalidFilter,
		"max_qty=1.5":                            ErrInvalidFilter,
		"paid=perhaps":                           ErrInvalidFilter,
		"created_from=2024-01-01%2000:00":        ErrInvalidFilter,
		"ratio_above=1e999":                      ErrInvalidFilter,
		"ratio_above=0x10":                       ErrInvalidFilter,
		"min_total=NaN":                          ErrInvalidFilter,
		"note=a%00b":                             ErrInvalidFilter,
		"note=%ff":                               ErrInvalidFilter,
		"sort=nope":                              ErrInvalidSort,
		"sort=-":                                 ErrInvalidSort,
		"sort=id&sort=total":                     ErrInvalidSort,
		"limit=51":                               ErrInvalidQuery,
		"limit=1&limit=2":                        ErrInvalidQuery,
		"cursor=x":                               ErrInvalidCursor,
		"cursor=a&cursor=b":                      ErrInvalidCursor,
		"created_to=2024-01-01T00:00:00%2B20:00": nil,
	} {
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseListRequest(fuzzSpec, v)
		if want == nil {
			if err != nil {
				t.Errorf("%s: %v", raw, err)
			}
			continue
		}
		if !errors.Is(err, want) || !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%s: got %v, want %v", raw, err, want)
		}
	}
	var fe *FilterError
	_, err = ParseListRequest(fuzzSpec, url.Values{"customer_id": {"nope"}})
	if !errors.As(err, &fe) || fe.Name != "customer_id" || !strings.Contains(err.Error(), `"customer_id"`) {
		t.Errorf("got %v", err)
	}
}

func TestCheckTyped(t *testing.T) {
	for _, c := range []struct {
		typ string
		ok  []string
		bad []string
	}{
		{"uuid", []string{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"},
			[]string{"6ba7b8109dad11d180b400c04fd430c8x", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}"}},
		{"smallint", []string{"32767", "-32768", "+1"}, []string{"32768", "1.0", "", " 1"}},
		{"INTEGER", []string{"2147483647"}, []string{"2147483648"}},
		{"bigint", []string{"9223372036854775807"}, []string{"9223372036854775808", "1_000"}},
		{"numeric(10, 2)", []string{"1", "-1.5", ".5", "5.", "1e10", "1E-3"}, []string{"NaN", "Infinity", "1e1000", "0x10", "1.2.3", "-"}},
		{"real", []string{"3.4e38", "-1"}, []string{"3.5e38", "inf", "1e"}},
		{"double precision", []string{"1e308", "0.1"}, []string{"1e309", "NaN"}},
		{"boolean", []string{"true", "FALSE", "t", "No", "on", "0"}, []string{"tru", "2", "ja"}},
		{"date", []string{"2024-02-29", "0001-01-01"}, []string{"2023-02-29", "0000-01-01", "2024-1-1", "today"}},
		{"timestamp(3) with time zone", []string{"2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789+05:30", "2024-01-01"},
			[]string{"2024-01-01 00:00:00", "2024-01-01T00:00:00", "now", "0000-01-01T00:00:00Z"}},
		{"pg_catalog.timestamp", []string{"2024-01-01T00:00:00Z"}, []string{"x"}},
		{"text", []string{"anything at all; DROP TABLE x"}, nil},
		{"my_schema.my_enum", []string{"whatever"}, nil},
	} {
		typ := baseType(c.typ)
		for _, v := range c.ok {
			if err := checkTyped(typ, v); err != nil {
				t.Errorf("%s %q: %v", c.typ, v, err)
			}
		}
		for _, v := range c.bad {
			if err := checkTyped(typ, v); err == nil {
				t.Errorf("%s %q: accepted", c.typ, v)
			}
		}
	}
}

func TestOpString(t *testing.T) {
	if Eq.String() != "=" || In.String() != "= ANY" || Op(42).String() != "Op(42)" || Op(-1).String() != "Op(-1)" {
		t.Error(Eq, In, Op(42), Op(-1))
	}
}

// List reuses ParseListRequest's checked plan (the cursor is verified once)
// only while the request still has the fields it was parsed from.
func TestParsedPlanIsReusedOnlyForTheUnchangedRequest(t *testing.T) {
	req, err := ParseListRequest(fuzzSpec, url.Values{"status": {"open"}, "sort": {"total"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := req.planFor(&fuzzSpec); p == nil {
		t.Fatal("an unchanged parsed request must carry its plan")
	}
	other := fuzzSpec
	other.Name = fuzzSpec.Name + "_other"
	if p, _ := req.planFor(&other); p != nil {
		t.Error("a plan must not be reused for another listing")
	}
	changed := []func(r *ListRequest){
		func(r *ListRequest) { r.Cursor = "forged" },
		func(r *ListRequest) { r.Sort = "-total" },
		func(r *ListRequest) { r.Limit = 7 },
		func(r *ListRequest) { r.Filters = map[string]string{"status": "paid"} },
		func(r *ListRequest) { r.Filters["status"] = "paid" },
	}
	for i, change := range changed {
		r := req
		r.Filters = maps.Clone(req.Filters)
		change(&r)
		if p, _ := r.planFor(&fuzzSpec); p != nil {
			t.Errorf("change %d: a changed request must be checked again", i)
		}
	}
	req.Filters["status"] = "paid" // in place, on the parsed request's own map
	if p, _ := req.planFor(&fuzzSpec); p != nil {
		t.Error("a filter changed in place must be checked again")
	}
}
