package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Event and snapshot data is JSON that PostgreSQL keeps as jsonb. jsonb
// refuses some text that encoding/json accepts, and it gives back what it
// keeps in a form of its own. The functions here apply both rules in Go, so
// that every store refuses the same input with the same typed error and
// gives back the same bytes: a test written against the memory store then
// behaves the same on PostgreSQL.

// Limits of PostgreSQL's numeric type, which holds jsonb numbers.
const (
	// maxNumericIntDigits is the most digits before the decimal point.
	maxNumericIntDigits = 131072
	// maxNumericScale is the most digits after the decimal point, trailing
	// zeros and those an exponent implies included.
	maxNumericScale = 16383
	// maxNumericExponent bounds the exponent PostgreSQL parses at all
	// (INT_MAX/2), even for a zero.
	maxNumericExponent = 1<<30 - 1
)

// jsonTextProblem says why PostgreSQL's jsonb would refuse b, which must be
// valid JSON for encoding/json, or "" when it would not: text that is not
// UTF-8, a \u0000 escape, a UTF-16 surrogate escape without its pair, or a
// number outside numeric's range.
func jsonTextProblem(b []byte) string {
	if !utf8.Valid(b) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			end, reason := scanString(b, i+1, nil)
			if reason != "" {
				return reason
			}
			i = end
		case c == '-' || '0' <= c && c <= '9':
			n, end := parseNumber(b, i)
			if reason := n.problem(); reason != "" {
				return reason
			}
			i = end
		default:
			i++
		}
	}
	return ""
}

// scanString reads the JSON string whose opening quote is at i-1, appending
// its decoded content to out when out is not nil. It returns the index
// after the closing quote, or the reason jsonb refuses the string.
func scanString(b []byte, i int, out *[]byte) (int, string) {
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, ""
		case c != '\\':
			if out != nil {
				*out = append(*out, c)
			}
			i++
			continue
		}
		if i+1 >= len(b) {
			break
		}
		if b[i+1] != 'u' {
			if out != nil {
				*out = append(*out, unescape(b[i+1]))
			}
			i += 2
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok {
			return i, "has a malformed \\u escape"
		}
		i += 6
		switch {
		case r == 0:
			return i, "has a \\u0000 (NUL) escape, which PostgreSQL cannot store"
		case utf16.IsSurrogate(r):
			lo, ok := rune(0), false
			if r < 0xdc00 && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
				lo, ok = hex4(b, i+2)
				ok = ok && 0xdc00 <= lo && lo <= 0xdfff
			}
			if !ok {
				return i, fmt.Sprintf("has an unpaired UTF-16 surrogate escape \\u%04x, which PostgreSQL cannot store", r)
			}
			r = utf16.DecodeRune(r, lo)
			i += 6
		}
		if out != nil {
			*out = utf8.AppendRune(*out, r)
		}
	}
	return i, "has an unterminated string"
}

func unescape(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // " \ /
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number is a JSON number as PostgreSQL's numeric keeps it: significant
// digits (those of intPart then fracPart, after lead leading zeros), the
// decimal point after point of them (point may be negative, or past the
// last), and scale digits after the point.
type number struct {
	neg               bool
	intPart, fracPart []byte
	lead              int
	point             int
	scale             int
	overflow          bool // the exponent is beyond what PostgreSQL parses
}

// parseNumber reads the JSON number at b[i:]: its value and the index after
// it.
func parseNumber(b []byte, i int) (number, int) {
	var n number
	if b[i] == '-' {
		n.neg = true
		i++
	}
	start := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	n.intPart = b[start:i]
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		n.fracPart = b[fs:i]
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		expNeg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			expNeg = b[i] == '-'
			i++
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			if exp < maxNumericExponent {
				exp = exp*10 + int(b[i]-'0')
			}
			i++
		}
		n.overflow = exp >= maxNumericExponent
		if expNeg {
			exp = -exp
		}
	}
	for n.lead < len(n.intPart)+len(n.fracPart) && n.digitAt(n.lead) == '0' {
		n.lead++
	}
	n.point = len(n.intPart) + exp - n.lead
	n.scale = max(0, len(n.fracPart)-exp)
	if n.isZero() {
		n.neg = false // numeric has no negative zero
	}
	return n, i
}

// digitAt is the k-th digit of intPart and fracPart together.
func (n *number) digitAt(k int) byte {
	if k < len(n.intPart) {
		return n.intPart[k]
	}
	return n.fracPart[k-len(n.intPart)]
}

func (n *number) isZero() bool { return n.lead == len(n.intPart)+len(n.fracPart) }

// digit is the k-th significant digit, '0' beyond them on either side.
func (n *number) digit(k int) byte {
	if k < 0 || n.lead+k >= len(n.intPart)+len(n.fracPart) {
		return '0'
	}
	return n.digitAt(n.lead + k)
}

// problem says why PostgreSQL's numeric cannot hold n, or "".
func (n number) problem() string {
	switch {
	case n.overflow:
		return "has a number whose exponent PostgreSQL cannot store"
	case n.scale > maxNumericScale:
		return fmt.Sprintf("has a number with more than %d digits after the decimal point, which PostgreSQL cannot store", maxNumericScale)
	case !n.isZero() && n.point > maxNumericIntDigits:
		return fmt.Sprintf("has a number with more than %d digits before the decimal point, which PostgreSQL cannot store", maxNumericIntDigits)
	}
	return ""
}

// appendText appends n as PostgreSQL prints a numeric: plain decimal
// notation, scale digits after the point.
func (n number) appendText(out []byte) []byte {
	if n.neg {
		out = append(out, '-')
	}
	if n.point <= 0 || n.isZero() {
		out = append(out, '0')
	} else {
		for k := range n.point {
			out = append(out, n.digit(k))
		}
	}
	if n.scale > 0 {
		out = append(out, '.')
		for k := n.point; k < n.point+n.scale; k++ {
			out = append(out, n.digit(k))
		}
	}
	return out
}

// errNotJSONB reports data that is not JSON PostgreSQL can keep.
var errNotJSONB = errors.New("eventstore: not JSON that PostgreSQL can store")

// AppendJSONB appends data to dst in the form PostgreSQL's jsonb gives it
// back: object keys ordered by length and then bytewise, the last of
// repeated keys kept, numbers in plain decimal notation with their scale
// (1e2 is 100, 1.50 stays 1.50), strings with escapes only where JSON
// needs them, ", " between items and ": " after keys, no other white
// space. data must be valid JSON; an error means jsonb would refuse it
// (see ValidateSnapshot and PrepareAppend, which say why). The memory store
// keeps its data in this form, so that it gives back what PostgreSQL does.
func AppendJSONB(dst, data []byte) ([]byte, error) {
	if reason := jsonTextProblem(data); reason != "" {
		return dst, fmt.Errorf("%w: data %s", errNotJSONB, reason)
	}
	w := jsonbWriter{b: data}
	out, err := w.value(dst)
	if err != nil {
		return dst, err
	}
	if w.skipSpace(); w.i != len(data) {
		return dst, fmt.Errorf("%w: data after the JSON value", errNotJSONB)
	}
	return out, nil
}

// jsonbWriter rewrites JSON text into jsonb's form.
type jsonbWriter struct {
	b []byte
	i int
}

func (w *jsonbWriter) skipSpace() {
	for w.i < len(w.b) && strings.IndexByte(" \t\r\n", w.b[w.i]) >= 0 {
		w.i++
	}
}

func (w *jsonbWriter) malformed() error {
	return fmt.Errorf("%w: malformed JSON at byte %d", errNotJSONB, w.i)
}

func (w *jsonbWriter) value(out []byte) ([]byte, error) {
	w.skipSpace()
	if w.i >= len(w.b) {
		return out, w.malformed()
	}
	switch c := w.b[w.i]; {
	case c == '{':
		return w.object(out)
	case c == '[':
		return w.array(out)
	case c == '"':
		s, err := w.str()
		if err != nil {
			return out, err
		}
		return appendJSONBString(out, s), nil
	case c == '-' || '0' <= c && c <= '9':
		n, end := parseNumber(w.b, w.i)
		w.i = end
		return n.appendText(out), nil
	}
	for _, lit := range []string{"true", "false", "null"} {
		if strings.HasPrefix(string(w.b[w.i:min(len(w.b), w.i+5)]), lit) {
			w.i += len(lit)
			return append(out, lit...), nil
		}
	}
	return out, w.malformed()
}

// str reads a string, returning its decoded content.
func (w *jsonbWriter) str() ([]byte, error) {
	var s []byte
	end, reason := scanString(w.b, w.i+1, &s)
	if reason != "" {
		return nil, fmt.Errorf("%w: data %s", errNotJSONB, reason)
	}
	w.i = end
	return s, nil
}

// next skips white space and reports whether c is next, consuming it.
func (w *jsonbWriter) next(c byte) bool {
	w.skipSpace()
	if w.i < len(w.b) && w.b[w.i] == c {
		w.i++
		return true
	}
	return false
}

func (w *jsonbWriter) array(out []byte) ([]byte, error) {
	w.i++ // [
	out = append(out, '[')
	if w.next(']') {
		return append(out, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			out = append(out, ", "...)
		}
		var err error
		if out, err = w.value(out); err != nil {
			return out, err
		}
		if w.next(']') {
			return append(out, ']'), nil
		}
		if !w.next(',') {
			return out, w.malformed()
		}
	}
}

type member struct {
	key, value []byte
	order      int
}

func (w *jsonbWriter) object(out []byte) ([]byte, error) {
	w.i++ // {
	var members []member
	if !w.next('}') {
		for {
			w.skipSpace()
			if w.i >= len(w.b) || w.b[w.i] != '"' {
				return out, w.malformed()
			}
			key, err := w.str()
			if err != nil {
				return out, err
			}
			if !w.next(':') {
				return out, w.malformed()
			}
			value, err := w.value(nil)
			if err != nil {
				return out, err
			}
			members = append(members, member{key: key, value: value, order: len(members)})
			if w.next('}') {
				break
			}
			if !w.next(',') {
				return out, w.malformed()
			}
		}
	}
	// jsonb's order: shorter keys first, then bytewise; of repeated keys
	// the last one stays.
	slices.SortStableFunc(members, func(a, b member) int {
		if len(a.key) != len(b.key) {
			return len(a.key) - len(b.key)
		}
		return strings.Compare(string(a.key), string(b.key))
	})
	out = append(out, '{')
	written := 0
	for k, m := range members {
		if k+1 < len(members) && string(members[k+1].key) == string(m.key) {
			continue // a later value of the same key wins
		}
		if written > 0 {
			out = append(out, ", "...)
		}
		out = appendJSONBString(out, m.key)
		out = append(out, ": "...)
		out = append(out, m.value...)
		written++
	}
	return append(out, '}'), nil
}

// appendJSONBString quotes s as PostgreSQL prints a jsonb string.
func appendJSONBString(out, s []byte) []byte {
	out = append(out, '"')
	for _, c := range s {
		switch c {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			if c < 0x20 {
				out = fmt.Appendf(out, `\u%04x`, c)
			} else {
				out = append(out, c)
			}
		}
	}
	return append(out, '"')
}

// ValidateSnapshot checks a snapshot the way every store does before saving
// it: a valid stream ID, and data that is JSON PostgreSQL can keep. Empty
// data is refused: a loader would restore it as a zero state and skip the
// events before its version.
func ValidateSnapshot(s Snapshot) error {
	if err := ValidateStreamID(s.StreamID); err != nil {
		return err
	}
	bad := func(reason string) error {
		return &ValidationError{Err: ErrInvalidEvent, StreamID: s.StreamID, Index: -1, Reason: reason}
	}
	if len(s.Data) == 0 {
		return bad("snapshot data is empty")
	}
	if !json.Valid(s.Data) {
		return bad("snapshot data is not valid JSON")
	}
	if reason := jsonTextProblem(s.Data); reason != "" {
		return bad("snapshot data " + reason)
	}
	return nil
}

// metadataProblem says why PostgreSQL could not keep m as given (text
// columns and jsonb hold neither NUL characters nor invalid UTF-8, which
// encoding/json would silently replace), naming the field, or "".
func metadataProblem(m Metadata) string {
	check := func(field, v string) string {
		switch {
		case !utf8.ValidString(v):
			return field + " is not valid UTF-8"
		case strings.IndexByte(v, 0) >= 0:
			return field + " contains a NUL character, which PostgreSQL cannot store"
		}
		return ""
	}
	if r := check("metadata correlation_id", m.CorrelationID); r != "" {
		return r
	}
	if r := check("metadata causation_id", m.CausationID); r != "" {
		return r
	}
	if r := check("metadata command_id", m.CommandID); r != "" {
		return r
	}
	for k, v := range m.Extra {
		if r := check("metadata extra key", k); r != "" {
			return r
		}
		if r := check(fmt.Sprintf("metadata extra %q", k), v); r != "" {
			return r
		}
	}
	for k, v := range m.Values {
		if r := check("metadata values key", k); r != "" {
			return r
		}
		field := fmt.Sprintf("metadata values %q", k)
		if len(v) == 0 || !json.Valid(v) {
			return field + " is not valid JSON"
		}
		if r := jsonTextProblem(v); r != "" {
			return field + " " + r
		}
	}
	return ""
}

// jsonbValues returns values in jsonb's form (see AppendJSONB), in a map
// and buffers of its own: what every store keeps, so that it gives back what
// PostgreSQL does and the caller's map stays the caller's. The values must
// have passed metadataProblem.
func jsonbValues(values map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	if len(values) == 0 {
		return nil, nil // as an empty object reads back from PostgreSQL
	}
	out := make(map[string]json.RawMessage, len(values))
	for k, v := range values {
		b, err := AppendJSONB(nil, v)
		if err != nil {
			return nil, fmt.Errorf("eventstore: metadata values %q: %w", k, err)
		}
		out[k] = b
	}
	return out, nil
}
