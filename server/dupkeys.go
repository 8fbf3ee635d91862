package server

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// Duplicate keys in a command body are refused: encoding/json keeps the
// last of them, so {"customer_id":"c-1","customer_id":"c-2"} would act for
// c-2 while a proxy, a log or a signature check that reads the first saw
// c-1. Keys that differ only in case count as the same key, because the
// decoder matches field names without regard to case.

// linearKeys is the object size up to which keys are compared pairwise;
// larger objects use a map, so a hostile body of many keys costs linear
// time.
const linearKeys = 16

// duplicateKey returns the first key of body (valid JSON) that repeats
// within one object, at any depth, and whether there is one.
func duplicateKey(body []byte) (string, bool) {
	d := dupScanner{b: body}
	key, found := d.value()
	return string(key), found
}

type dupScanner struct {
	b    []byte
	i    int
	keys [][]byte // folded keys of the objects being scanned, innermost last
}

func (d *dupScanner) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

// value scans one value, reporting the first repeated key in it.
func (d *dupScanner) value() ([]byte, bool) {
	d.skipSpace()
	if d.i >= len(d.b) {
		return nil, false
	}
	switch d.b[d.i] {
	case '{':
		return d.object()
	case '[':
		d.i++
		for {
			d.skipSpace()
			if d.i >= len(d.b) || d.b[d.i] == ']' {
				d.i++
				return nil, false
			}
			if d.b[d.i] == ',' {
				d.i++
				continue
			}
			if key, found := d.value(); found {
				return key, true
			}
		}
	case '"':
		d.str()
		return nil, false
	}
	for d.i < len(d.b) && !endsScalar(d.b[d.i]) {
		d.i++ // a number or a literal
	}
	return nil, false
}

func endsScalar(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

func (d *dupScanner) object() ([]byte, bool) {
	d.i++ // {
	start := len(d.keys)
	defer func() { d.keys = d.keys[:start] }()
	var set map[string]struct{}
	for {
		d.skipSpace()
		if d.i >= len(d.b) || d.b[d.i] == '}' {
			d.i++
			return nil, false
		}
		if d.b[d.i] == ',' {
			d.i++
			continue
		}
		raw := d.str()
		key := foldKey(raw)
		if set != nil {
			if _, dup := set[string(key)]; dup {
				return unquote(raw), true
			}
			set[string(key)] = struct{}{}
		} else {
			for _, k := range d.keys[start:] {
				if bytes.Equal(k, key) {
					return unquote(raw), true
				}
			}
			d.keys = append(d.keys, key)
			if len(d.keys)-start > linearKeys {
				set = make(map[string]struct{}, 2*linearKeys)
				for _, k := range d.keys[start:] {
					set[string(k)] = struct{}{}
				}
			}
		}
		d.skipSpace()
		d.i++ // :
		if key, found := d.value(); found {
			return key, true
		}
	}
}

// str scans the string at d.i and returns it as written, quotes excluded.
func (d *dupScanner) str() []byte {
	d.i++ // "
	start := d.i
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '\\':
			d.i += 2
			continue
		case '"':
			s := d.b[start:d.i]
			d.i++
			return s
		}
		d.i++
	}
	return d.b[start:]
}

// unquote decodes a key as written for the problem's detail.
func unquote(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return raw
	}
	return []byte(s)
}

// foldKey returns a form of the key, as written, that is equal for two
// keys exactly when encoding/json would take them for the same field name:
// the escapes decoded and every rune replaced by the name of its case
// folding orbit (see minFold). It returns raw itself, allocating nothing,
// for the usual key of lower-case ASCII without escapes.
func foldKey(raw []byte) []byte {
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			plain = false
			break
		}
	}
	if plain {
		return raw
	}
	decoded := unquote(raw)
	out := make([]byte, 0, len(decoded))
	for _, r := range string(decoded) {
		out = utf8.AppendRune(out, minFold(r))
	}
	return out
}

// minFold names r's case folding orbit by one of its runes: the ASCII
// lower-case letter when the orbit has one (so that the usual key is its
// own folded form), else the smallest rune.
func minFold(r rune) rune {
	if 'a' <= r && r <= 'z' {
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if 'a' <= f && f <= 'z' {
			return f
		}
		m = min(m, f)
	}
	return m
}
