// Package pgerrtest produces real PostgreSQL connection failures for
// tests: a TCP proxy whose connections a test cuts, which the client sees
// as a dropped network or a killed server does (unexpected EOF, a reset, a
// closed connection), without touching the server. (A test that must stop
// the server itself uses a private one: internal/pgserver.)
package pgerrtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a PostgreSQL server until Cut.
type Proxy struct {
	ln     net.Listener
	target string
	url    string

	mu    sync.Mutex
	conns []*net.TCPConn
}

// NewProxy listens on a free local port and forwards to the server of
// dbURL (a postgres:// URL naming a TCP host). It stops when the test ends.
func NewProxy(t testing.TB, dbURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("pgerrtest: the proxy needs a postgres:// URL with a TCP host, not %q (%v)", dbURL, err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgerrtest: listening: %v", err)
	}
	u.Host = ln.Addr().String()
	p := &Proxy{ln: ln, target: target, url: u.String()}
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut(false)
	})
	go p.serve()
	return p
}

// URL is the server's URL with the proxy's address.
func (p *Proxy) URL() string { return p.url }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c.(*net.TCPConn), s.(*net.TCPConn))
		p.mu.Unlock()
		// Either side ending ends both, as a real connection does: a
		// client waiting for the server's close (a cancel request) sees it.
		go func() { _, _ = io.Copy(s, c); _ = s.Close(); _ = c.Close() }()
		go func() { _, _ = io.Copy(c, s); _ = c.Close(); _ = s.Close() }()
	}
}

// Cut closes every connection made so far, both ways; with reset, with an
// RST instead of a clean close. New connections are forwarded as before.
func (p *Proxy) Cut(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if reset {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
	p.conns = nil
}
