package query

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
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

var cursorKey atomic.Pointer[[]byte]

func init() {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	cursorKey.Store(&k)
}

// SetCursorKey sets the key that signs the cursors of listings without
// their own ListSpec.CursorKey; it panics if key is shorter than 16 bytes.
// Until it is called the key is random, made at start-up: cursors then stop
// working when the process restarts, and servers behind one load balancer
// reject each other's cursors. Give every instance the same secret.
func SetCursorKey(key []byte) {
	if len(key) < minKeyLen {
		panic(fmt.Sprintf("query: cursor key of %d bytes, want at least %d", len(key), minKeyLen))
	}
	k := bytes.Clone(key)
	cursorKey.Store(&k)
}

func (s *ListSpec) cursorKey() []byte {
	if s.CursorKey != nil {
		return s.CursorKey
	}
	return *cursorKey.Load()
}

func cursorMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cairn query cursor\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)[:macLen]
}

func encodeCursor(key []byte, c cursor) (string, error) {
	c.Version = cursorVersion
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("query: encoding cursor: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(cursorMAC(key, payload)), nil
}

// decodeCursor verifies and decodes a client's cursor; every error is a
// *CursorError.
func decodeCursor(key []byte, s string) (cursor, error) {
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
	if !hmac.Equal(mac, cursorMAC(key, payload)) {
		return cursor{}, &CursorError{Reason: "not signed by this server"}
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
