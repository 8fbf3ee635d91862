package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/server"
)

// A key given twice in one object is refused, at any depth, whatever its
// spelling (escapes, case), and nothing is appended: encoding/json would
// silently keep the last one.
func TestDuplicateKeysAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.state(t)
	for name, tc := range map[string]struct{ path, body, key string }{
		"TopLevel":    {"/orders", `{"order_id":"dup-1","amount":5,"order_id":"dup-2"}`, "order_id"},
		"Escaped":     {"/orders", `{"order_id":"dup-1","amount":5,"order\u005fid":"dup-2"}`, "order_id"},
		"OtherCase":   {"/orders", `{"order_id":"dup-1","amount":5,"ORDER_ID":"dup-2"}`, "ORDER_ID"},
		"Nested":      {"/fuzz/x", `{"name":"n","nested":{"a":1,"a":2}}`, "a"},
		"InMap":       {"/fuzz/x", `{"name":"n","flags":{"on":true,"on":false}}`, "on"},
		"InArrayItem": {"/fuzz/x", `{"tags":["a"],"flags":{},"nested":{"a":1},"name":"n","count":1,"ratio":1,"pos":null,"at":null,"name":"m"}`, "name"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.serve(newRequest(t, http.MethodPost, tc.path, tc.body, nil))
			p := requireProblem(t, r, http.StatusBadRequest, server.ProblemDuplicateKey)
			assert.Contains(t, p.Detail, fmt.Sprintf("%q", tc.key))
		})
	}
	// Many keys: the check stays linear, and distinct keys pass.
	var b strings.Builder
	b.WriteString(`{"name":"n","flags":{`)
	for i := range 5000 {
		fmt.Fprintf(&b, `"k%d":true,`, i)
	}
	b.WriteString(`"k0":false}}`)
	p := requireProblem(t, e.serve(newRequest(t, http.MethodPost, "/fuzz/x", b.String(), nil)), http.StatusBadRequest, server.ProblemDuplicateKey)
	assert.Contains(t, p.Detail, `"k0"`)
	ok := strings.Replace(b.String(), `"k0":false`, `"k5000":false`, 1)
	assert.Equal(t, http.StatusAccepted, e.serve(newRequest(t, http.MethodPost, "/fuzz/x", ok, nil)).status)
	// The same key in two objects is not a repeat.
	r := e.serve(newRequest(t, http.MethodPost, "/fuzz/x", `{"name":"n","nested":{"a":1},"flags":{"a":true}}`, nil))
	assert.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	assert.Equal(t, before, e.state(t), "a refused command wrote something")
}

// A NUL character in a value that goes into an event is the client's
// input, refused with a typed 422, not a 500 from PostgreSQL.
func TestNULInEventDataIsUnprocessable(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.state(t)
	r := e.serve(newRequest(t, http.MethodPost, "/orders", `{"order_id":"nul-1","amount":5,"note":"a\u0000b"}`, nil))
	p := requireProblem(t, r, http.StatusUnprocessableEntity, server.ProblemInvalidCommand)
	assert.Contains(t, p.Detail, "NUL")
	assert.Equal(t, before, e.state(t))
}

// DayQuery casts its parameter to a PostgreSQL date, as the sample's sales
// report does.
type DayQuery struct {
	Day string `query:"day"`
}

// A value PostgreSQL cannot hold in a query route's parameter (year 0, a
// NUL in a text parameter) is a 400 invalid-query, not a 500; arithmetic
// errors of the query itself stay 500s.
func TestQueryDataExceptionIsBadRequest(t *testing.T) {
	e := newEnv(t, envOptions{})
	query.MustRegister(e.bus, query.HandlerFunc[DayQuery, string](func(ctx context.Context, q DayQuery) (string, error) {
		var out string
		if q.Day == "divide" {
			return out, e.pool.QueryRow(ctx, "SELECT (1 / 0)::text").Scan(&out)
		}
		err := e.pool.QueryRow(ctx, "SELECT $1::date::text", q.Day).Scan(&out)
		return out, err
	}))
	srv, err := server.New(server.Config{Logger: quiet, QueryBus: e.bus})
	require.NoError(t, err)
	server.MustQuery[DayQuery, string](srv, "/day")
	get := func(day string) response {
		r := newRequest(t, http.MethodGet, "/day?day="+day, "", nil)
		rec := &recorder{header: http.Header{}}
		srv.ServeHTTP(rec, r)
		return response{status: rec.status, header: rec.header, body: rec.body}
	}
	require.Equal(t, http.StatusOK, get("2026-01-01").status)
	for _, day := range []string{"0000-01-01", "5874898-01-01", "2026-13-01", "a%00b"} {
		requireProblem(t, get(day), http.StatusBadRequest, server.ProblemInvalidQuery)
	}
	requireProblem(t, get("divide"), http.StatusInternalServerError, server.ProblemInternal)
}

type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, b...)
	return len(b), nil
}

// serveReal runs srv on a loopback listener with its own http.Server
// settings (httptest's would not apply them) and returns its address.
func serveReal(t *testing.T, srv *server.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return ln.Addr().String()
}

// rawExchange writes req whole on a new connection, with a small send
// buffer so that the kernel cannot hide an unread body, and then reads the
// response.
func rawExchange(t *testing.T, addr string, head string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetWriteBuffer(32<<10))
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(conn, head)
	require.NoError(t, err, "writing the headers")
	_, err = io.Copy(conn, body)
	require.NoError(t, err, "writing the whole body: the server must read it before answering")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "reading the answer")
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

func asResponse(res *http.Response, b []byte) response {
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// A client that writes a too-large body whole before reading gets the
// 400, not a reset connection: the server reads and discards the body (up
// to DrainFactor times the limit) before answering.
func TestTooLargeBodyIsAnsweredToAClientThatWritesItAll(t *testing.T) {
	e := newEnv(t, envOptions{})
	addr := serveReal(t, e.newServer(t, server.Config{}, nil))
	before := e.state(t)
	size := int64(5 << 20)
	body := func() io.Reader {
		return io.MultiReader(strings.NewReader(`{"order_id":"big-1","amount":5,"note":"`), io.LimitReader(repeatReader('x'), size))
	}
	auth := "Authorization: Bearer " + writerToken(t) + "\r\n"

	t.Run("ContentLength", func(t *testing.T) {
		head := fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n", auth, size+int64(len(`{"order_id":"big-1","amount":5,"note":"`)))
		res, b := rawExchange(t, addr, head, body())
		requireProblem(t, asResponse(res, b), http.StatusBadRequest, server.ProblemBodyTooLarge)
	})
	t.Run("Chunked", func(t *testing.T) {
		head := "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n"
		res, b := rawExchange(t, addr, head, chunked(body()))
		requireProblem(t, asResponse(res, b), http.StatusBadRequest, server.ProblemBodyTooLarge)
	})
	assert.Equal(t, before, e.state(t))
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// chunked encodes r in HTTP/1.1 chunks of 32 KiB.
func chunked(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				fmt.Fprintf(pw, "%x\r\n", n)
				_, _ = pw.Write(buf[:n])
				_, _ = io.WriteString(pw, "\r\n")
			}
			if errors.Is(err, io.EOF) {
				_, _ = io.WriteString(pw, "0\r\n\r\n")
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// Headers over Config.MaxHeaderBytes are a 431 problem like every other
// error; net/http answers only those far over it itself.
func TestOversizedHeadersAreProblems(t *testing.T) {
	e := newEnv(t, envOptions{})
	addr := serveReal(t, e.newServer(t, server.Config{MaxHeaderBytes: 16 << 10}, nil))
	auth := "Authorization: Bearer " + writerToken(t) + "\r\n"
	for _, size := range []int{20 << 10, 40 << 10} {
		head := "GET /orders/o-1 HTTP/1.1\r\nHost: x\r\n" + auth + "X-Padding: " + strings.Repeat("p", size) + "\r\n\r\n"
		res, b := rawExchange(t, addr, head, strings.NewReader(""))
		p := requireProblem(t, asResponse(res, b), http.StatusRequestHeaderFieldsTooLarge, server.ProblemHeadersTooLarge)
		assert.Contains(t, p.Detail, "16384")
	}
	// Just under the limit passes through to the route.
	head := "GET /orders/o-1 HTTP/1.1\r\nHost: x\r\n" + auth + "X-Padding: " + strings.Repeat("p", 15<<10) + "\r\n\r\n"
	res, b := rawExchange(t, addr, head, strings.NewReader(""))
	requireProblem(t, asResponse(res, b), http.StatusNotFound, server.ProblemNotFound)
}

// A bad Idempotency-Key that net/http lets through is the server's to
// answer, as a problem. One with a control character net/http refuses
// itself, in plain text, before any handler runs: http.Server has no hook
// for that answer (nor for a malformed request line or header).
func TestBadIdempotencyKeyIsAProblem(t *testing.T) {
	e := newEnv(t, envOptions{})
	addr := serveReal(t, e.newServer(t, server.Config{}, nil))
	auth := "Authorization: Bearer " + writerToken(t) + "\r\n"
	body := `{"order_id":"k-1","amount":5}`
	send := func(key string) (*http.Response, []byte) {
		head := fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n", auth, key, len(body))
		return rawExchange(t, addr, head, strings.NewReader(body))
	}
	for _, key := range []string{strings.Repeat("k", 201), "caf\xc3\xa9", "\xff"} {
		res, b := send(key)
		requireProblem(t, asResponse(res, b), http.StatusBadRequest, server.ProblemInvalidIdempotencyKey)
	}
	res, _ := send("a\x7fb")
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"), "net/http now lets the server answer: make it a problem")
}
