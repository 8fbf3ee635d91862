package query

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestCursorJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range []cursor{
		{Listing: "orders", Sort: "created_at", Key: "2024-01-01T00:00:00.123456+00:00", Tie: "42"},
		{Listing: "orders", Sort: "total", Desc: true, Filters: "abcDEF-_", Key: "1.50", Tie: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{Listing: "a<b>&c", Sort: `"quoted" \ back`, Key: "ünïcödé €", Tie: "\x00\x01\n\t\u2028\u2029"},
		{Listing: "bad utf8 \xff\xfe", Key: "", Tie: ""},
	} {
		c.Version = cursorVersion
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCursorJSON(nil, &c); string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// FuzzCursorJSON: the hand-written cursor JSON is json.Marshal's, and
// whatever the fast parser accepts, encoding/json decodes the same way.
func FuzzCursorJSON(f *testing.F) {
	f.Add("orders", "created_at", true, "digest", "2024-01-01T00:00:00+00:00", "7", []byte(`{"v":1,"l":"o","s":"s","k":"k","t":"t"}`))
	f.Add("o<>&", "s\"", false, "", "ü\xff", "\x00", []byte(`{"v":1,"l":"o","s":"s","d":true,"f":"","k":"k","t":"t"}`))
	f.Add("o", "s", false, "f", "k", "t", []byte(`{"v":1,"l":"o","s":"s","k":"k","t":"t","k":"x"}`))
	f.Add("o", "s", false, "f", "k", "t", []byte(`{"v":1,"l":"o","s":"s","d":true,"d":true,"k":"k","t":"t"}`))
	f.Fuzz(func(t *testing.T, l, s string, d bool, fs, k, tie string, payload []byte) {
		c := cursor{Version: cursorVersion, Listing: l, Sort: s, Desc: d, Filters: fs, Key: k, Tie: tie}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCursorJSON(nil, &c); string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
		for _, js := range [][]byte{want, payload} {
			got, ok := parseCursorJSON(string(js))
			if !ok {
				continue
			}
			var slow cursor
			d := json.NewDecoder(strings.NewReader(string(js)))
			d.DisallowUnknownFields()
			if err := d.Decode(&slow); err != nil || d.More() {
				t.Fatalf("%q: parsed as %+v, refused by encoding/json: %v", js, got, err)
			}
			if got != slow {
				t.Fatalf("%q: parsed as %+v, encoding/json gives %+v", js, got, slow)
			}
		}
	})
}

var sqlTypeRegexp = regexp.MustCompile(`^[A-Za-z_"][A-Za-z0-9_ ."(),\[\]]*$`)

func FuzzIsSQLType(f *testing.F) {
	for _, s := range []string{"", "text", "timestamp(3) with time zone", `"My Type"[]`, "numeric(12,2)", "1int", "int;", "ü", "a\xff", "a\n", "_x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isSQLType(s), sqlTypeRegexp.MatchString(s); got != want {
			t.Fatalf("%q: %v, the regexp says %v", s, got, want)
		}
	})
}

// BenchmarkParseListRequest: a request for the page after a cursor.
func BenchmarkParseListRequest(b *testing.B) {
	c := fuzzCursor(b, cursor{Listing: "orders", Sort: "created_at", Desc: true, Key: "2024-01-01T00:00:00.123456+00:00", Tie: "12345"})
	v := url.Values{"sort": {"-created_at"}, "limit": {"20"}, "cursor": {c}}
	for b.Loop() {
		if _, err := ParseListRequest(fuzzSpec, v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeCursor: the next page's cursor.
func BenchmarkEncodeCursor(b *testing.B) {
	c := cursor{Listing: "orders", Sort: "created_at", Desc: true, Key: "2024-01-01T00:00:00.123456+00:00", Tie: "12345"}
	for b.Loop() {
		if _, err := encodeCursor(fuzzKey, c); err != nil {
			b.Fatal(err)
		}
	}
}

// referenceDecodeCursor is decodeCursor as it was before its fast paths:
// the behaviour they must keep.
func referenceDecodeCursor(key []byte, s string) (cursor, error) {
	if len(s) > maxCursorLen {
		return cursor{}, &CursorError{Reason: "too long"}
	}
	payload, sig, ok := strings.Cut(s, ".")
	if !ok {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(mac) != macLen {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cairn query cursor\x00"))
	m.Write([]byte(payload))
	if !hmac.Equal(mac, m.Sum(nil)[:macLen]) {
		return cursor{}, &CursorError{Reason: "not signed with this service's key"}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	var c cursor
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil || d.More() {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	if c.Version != cursorVersion {
		return cursor{}, &CursorError{Reason: "from another version"}
	}
	return c, nil
}

// FuzzDecodeCursorMatchesReference: decodeCursor accepts and refuses what
// it did before its fast paths, with the same cursor or reason.
func FuzzDecodeCursorMatchesReference(f *testing.F) {
	valid := fuzzCursor(f, cursor{Listing: "orders", Sort: "total", Filters: "xyz", Key: "1.50", Tie: "7"})
	dot := strings.IndexByte(valid, '.')
	f.Add(valid, []byte(`{"v":1,"l":"orders","s":"total","k":"1.50","t":"7"}`))
	f.Add(valid[:dot+5]+"\n"+valid[dot+5:], []byte(`{"v":1,"l":"o","s":"s","d":false,"k":"k","t":"t"}`))
	f.Add(valid[:5]+"\r\n"+valid[5:], []byte(`{"v":1,"l":"o","s":"s","f":"","k":"k","t":"t"}`))
	f.Add(valid+"A", []byte(`{"v":1,"l":"o\u00e9","s":"s","k":"k","t":"t"} `))
	f.Add("", []byte(`{"v":01,"l":"o","s":"s","k":"k","t":"t"}`))
	f.Add("x.y", []byte(`{"v":1,"l":"o","s":"s","k":"\xff","t":"t"}`))
	f.Add("x.y", []byte(`{"t":"t","k":"k","s":"s","l":"o","v":1}`))
	f.Fuzz(func(t *testing.T, s string, payload []byte) {
		for _, c := range []string{s, signPayload(fuzzKey, payload)} {
			got, err := decodeCursor(fuzzSpec.CursorKeys, c)
			want, wantErr := referenceDecodeCursor(fuzzKey, c)
			if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("%q: got %+v, %v; want %+v, %v", c, got, err, want, wantErr)
			}
		}
	})
}
