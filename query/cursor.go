package query

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// A cursor is base64url(JSON) "." base64url(MAC), the MAC an HMAC-SHA256
// (truncated to 128 bits) of the encoded JSON under the listing's key.
const (
	cursorVersion = 1
	macLen        = 16
	minKeyLen     = 16
	// maxCursorLen bounds the work spent on a client's cursor.
	maxCursorLen = 4096
)

// cursorEncoding encodes both parts of a cursor. Strict returns a new
// Encoding on every call, so it is made once.
var cursorEncoding = base64.RawURLEncoding.Strict()

// cursor is the position after the last row of a page, with what it was
// made for: the listing, sort and filters.
type cursor struct {
	Version int    `json:"v"`
	Listing string `json:"l"`
	Sort    string `json:"s"`
	Desc    bool   `json:"d,omitempty"`
	Filters string `json:"f,omitempty"`
	Key     string `json:"k"` // the row's sort value, as PostgreSQL text
	Tie     string `json:"t"` // the row's tie-breaker value, as PostgreSQL text
}

// CursorKeys sign and verify the page cursors of listings: the current
// key signs, and it and the previous keys verify, so that cursors handed
// out before a key rotation keep working until the previous key is
// dropped. Every instance of a service must hold the same keys, or one
// refuses the others' cursors (and a restarted one its own): app keeps
// them with the service (configured, or stored in its database). A
// CursorKeys is immutable and safe for concurrent use.
type CursorKeys struct {
	keys [][]byte // keys[0] signs
}

// ErrCursorKey matches the errors of NewCursorKeys.
var ErrCursorKey = errors.New("query: invalid cursor key")

// NewCursorKeys returns keys that sign with current and also accept
// cursors signed with any of previous. Each key must be at least 16 bytes
// (32 random bytes are best); the slices are copied.
func NewCursorKeys(current []byte, previous ...[]byte) (*CursorKeys, error) {
	k := &CursorKeys{}
	for i, key := range append([][]byte{current}, previous...) {
		if len(key) < minKeyLen {
			what := "current key"
			if i > 0 {
				what = fmt.Sprintf("previous key %d", i)
			}
			return nil, fmt.Errorf("%w: the %s has %d bytes, want at least %d", ErrCursorKey, what, len(key), minKeyLen)
		}
		k.keys = append(k.keys, bytes.Clone(key))
	}
	return k, nil
}

// RandomCursorKeys returns a new random key: its cursors work only in this
// process, until it ends. For tests and single-process tools.
func RandomCursorKeys() *CursorKeys {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return &CursorKeys{keys: [][]byte{key}}
}

func (k *CursorKeys) signing() []byte { return k.keys[0] }

// processKeys sign the cursors of listings without CursorKeys. They are
// made once and cannot be changed: a service sets its keys on its specs.
var processKeys = sync.OnceValue(RandomCursorKeys)

// keys are the keys that sign and verify the listing's cursors.
func (s *ListSpec) keys() *CursorKeys {
	if s.CursorKeys != nil {
		return s.CursorKeys
	}
	return processKeys()
}

const macDomain = "cairn query cursor\x00"

// macState is an HMAC keyed once and reset between cursors, which spares
// the key schedule and the allocations of hmac.New on every request.
type macState struct {
	key []byte
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

var macStates sync.Pool

// appendMAC appends the cursor MAC of payload under key to dst.
func appendMAC[P string | []byte](dst, key []byte, payload P) []byte {
	m, _ := macStates.Get().(*macState)
	if m == nil || !bytes.Equal(m.key, key) {
		k := bytes.Clone(key)
		m = &macState{key: k, h: hmac.New(sha256.New, k)}
	} else {
		m.h.Reset()
	}
	m.buf = append(append(m.buf[:0], macDomain...), payload...)
	m.h.Write(m.buf)
	dst = append(dst, m.h.Sum(m.sum[:0])[:macLen]...)
	if cap(m.buf) <= 2*maxCursorLen {
		macStates.Put(m)
	}
	return dst
}

func cursorMAC(key []byte, payload string) []byte {
	return appendMAC(nil, key, payload)
}

// encodeCursor signs c. The JSON is written by hand, byte for byte what
// json.Marshal makes of a cursor (TestCursorJSONMatchesEncodingJSON), in
// one buffer with the encodings and the MAC.
func encodeCursor(key []byte, c cursor) (string, error) {
	c.Version = cursorVersion
	var scratch [256]byte
	js := appendCursorJSON(scratch[:0], &c)
	n := cursorEncoding.EncodedLen(len(js))
	out := make([]byte, n+1+cursorEncoding.EncodedLen(macLen), n+1+cursorEncoding.EncodedLen(macLen)+macLen)
	cursorEncoding.Encode(out, js)
	out[n] = '.'
	mac := appendMAC(out[len(out):], key, out[:n])
	cursorEncoding.Encode(out[n+1:], mac)
	return string(out), nil
}

// appendCursorJSON appends json.Marshal(c) to dst.
func appendCursorJSON(dst []byte, c *cursor) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(c.Version), 10)
	dst = append(dst, `,"l":`...)
	dst = appendJSONString(dst, c.Listing)
	dst = append(dst, `,"s":`...)
	dst = appendJSONString(dst, c.Sort)
	if c.Desc {
		dst = append(dst, `,"d":true`...)
	}
	if c.Filters != "" {
		dst = append(dst, `,"f":`...)
		dst = appendJSONString(dst, c.Filters)
	}
	dst = append(dst, `,"k":`...)
	dst = appendJSONString(dst, c.Key)
	dst = append(dst, `,"t":`...)
	dst = appendJSONString(dst, c.Tie)
	return append(dst, '}')
}

// plainJSON reports whether json.Marshal writes s between quotes as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= utf8.RuneSelf, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func appendJSONString(dst []byte, s string) []byte {
	if plainJSON(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s) // a string always encodes
	return append(dst, b...)
}

// decodeCursor verifies and decodes a client's cursor; every error is a
// *CursorError. With keys nil it checks the cursor's form but not its
// signature, which the caller then still has to verify (see verifyCursor).
func decodeCursor(keys *CursorKeys, s string) (cursor, error) {
	if len(s) > maxCursorLen {
		return cursor{}, &CursorError{Reason: "too long"}
	}
	payload, sig, ok := strings.Cut(s, ".")
	if !ok {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	var macs [2 * macLen]byte
	mac := macs[:macLen]
	if cursorEncoding.DecodedLen(len(sig)) == macLen {
		if n, err := cursorEncoding.Decode(mac, []byte(sig)); err != nil || n != macLen {
			return cursor{}, &CursorError{Reason: "malformed"}
		}
	} else {
		// Only newlines, which the decoder skips, can make another
		// length decode to a MAC.
		var err error
		if mac, err = cursorEncoding.DecodeString(sig); err != nil || len(mac) != macLen {
			return cursor{}, &CursorError{Reason: "malformed"}
		}
	}
	if keys != nil && !keys.verify(mac, payload, macs[macLen:macLen]) {
		return cursor{}, &CursorError{Reason: "not signed with this service's key"}
	}
	var scratch [512]byte
	b := scratch[:]
	if n := cursorEncoding.DecodedLen(len(payload)); n > len(b) {
		b = make([]byte, n)
	}
	n, err := cursorEncoding.Decode(b, []byte(payload))
	if err != nil {
		return cursor{}, &CursorError{Reason: "malformed"}
	}
	js := string(b[:n])
	c, ok := parseCursorJSON(js)
	if !ok {
		// Not the form encodeCursor writes: decode it in full.
		slow := new(cursor)
		d := json.NewDecoder(strings.NewReader(js))
		d.DisallowUnknownFields()
		if err := d.Decode(slow); err != nil || d.More() {
			return cursor{}, &CursorError{Reason: "malformed"}
		}
		c = *slow
	}
	if c.Version != cursorVersion {
		return cursor{}, &CursorError{Reason: "from another version"}
	}
	return c, nil
}

// verify reports whether mac is payload's MAC under one of the keys;
// scratch has room for a MAC. Every key is tried, so that the time taken
// does not say which one matched.
func (k *CursorKeys) verify(mac []byte, payload string, scratch []byte) bool {
	ok := false
	for _, key := range k.keys {
		if hmac.Equal(mac, appendMAC(scratch[:0], key, payload)) {
			ok = true
		}
	}
	return ok
}

// verifyCursor checks the signature of a cursor decodeCursor already read
// without keys.
func verifyCursor(keys *CursorKeys, s string) error {
	_, err := decodeCursor(keys, s)
	return err
}

// parseCursorJSON reads the JSON of a cursor in exactly the form
// appendCursorJSON writes for the current version, with strings that need
// no unescaping; it reports false for anything else, which the caller then
// hands to encoding/json. Whatever it accepts, encoding/json decodes to the
// same cursor (FuzzParseCursorJSON). The strings share js's memory.
func parseCursorJSON(js string) (cursor, bool) {
	c := cursor{Version: cursorVersion}
	rest, ok := strings.CutPrefix(js, `{"v":1,"l":`)
	if !ok {
		return cursor{}, false
	}
	if c.Listing, rest, ok = cutJSONString(rest); !ok {
		return cursor{}, false
	}
	if rest, ok = strings.CutPrefix(rest, `,"s":`); !ok {
		return cursor{}, false
	}
	if c.Sort, rest, ok = cutJSONString(rest); !ok {
		return cursor{}, false
	}
	rest, c.Desc = strings.CutPrefix(rest, `,"d":true`)
	if r, found := strings.CutPrefix(rest, `,"f":`); found {
		if c.Filters, rest, ok = cutJSONString(r); !ok || c.Filters == "" {
			return cursor{}, false
		}
	}
	if rest, ok = strings.CutPrefix(rest, `,"k":`); !ok {
		return cursor{}, false
	}
	if c.Key, rest, ok = cutJSONString(rest); !ok {
		return cursor{}, false
	}
	if rest, ok = strings.CutPrefix(rest, `,"t":`); !ok {
		return cursor{}, false
	}
	if c.Tie, rest, ok = cutJSONString(rest); !ok || rest != "}" {
		return cursor{}, false
	}
	return c, true
}

// cutJSONString cuts a JSON string without escapes or control characters,
// and in valid UTF-8, from the start of s.
func cutJSONString(s string) (value, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			value = s[1:i]
			if !utf8.ValidString(value) {
				return "", "", false
			}
			return value, s[i+1:], true
		case c == '\\', c < 0x20:
			return "", "", false
		}
	}
	return "", "", false
}
