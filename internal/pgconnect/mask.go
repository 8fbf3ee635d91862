package pgconnect

import (
	"net/url"
	"regexp"
	"strings"
)

const (
	masked   = "xxxxx"
	minScrub = 4
)

var (
	// keyword/value strings: password=secret or password='a secret'
	kvPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	// URLs net/url cannot parse (a bad port, say): scheme://user:secret@
	urlPassword = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
)

// Mask hides the passwords a connection string carries (PostgreSQL's, or
// any URL's, KurrentDB's included): the userinfo's and those of password=
// and sslpassword= settings.
func Mask(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
		q, changed := u.Query(), false
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, masked)
				changed = true
			}
		}
		if changed { // Encode sorts the settings: only when it must
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	s = urlPassword.ReplaceAllString(s, "${1}"+masked+"@")
	return kvPassword.ReplaceAllString(s, "${1}"+masked)
}

// secrets are the passwords in a connection string, as they may appear in
// a driver's error text (raw or percent-decoded).
func secrets(s string) []string {
	var out []string
	add := func(v string) {
		if v != "" && v != masked {
			out = append(out, v)
			if d, err := url.PathUnescape(v); err == nil && d != v {
				out = append(out, d)
			}
		}
	}
	if m := urlPassword.FindStringSubmatch(s); m != nil {
		add(strings.TrimSuffix(strings.TrimPrefix(m[0], m[1]), "@"))
	}
	for _, m := range kvPassword.FindAllStringSubmatch(s, -1) {
		add(strings.Trim(m[2], "'"))
	}
	if u, err := url.Parse(s); err == nil {
		for _, k := range []string{"password", "sslpassword"} {
			add(u.Query().Get(k))
		}
	}
	return out
}

// scrub replaces every password of url that appears in text: the last
// guard, for a driver message that quotes the URL as it was given. Passwords
// shorter than minScrub are left alone: replacing every "a" of a message
// would ruin it, and the URL line is masked anyway.
func scrub(text, url string) string {
	for _, s := range secrets(url) {
		if len(s) >= minScrub {
			text = strings.ReplaceAll(text, s, masked)
		}
	}
	return text
}
