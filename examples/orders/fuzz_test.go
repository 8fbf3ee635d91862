package orders_test

// FuzzHTTP sends whole requests (method, target, headers, body) to the
// sample's HTTP handler, in-process, with the system's read models and its
// PostgreSQL store live behind it, and checks what a client relies on
// whatever it sends: no 5xx but 503, a problem document on every error,
// and nothing appended by a request the server refused.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/examples/orders"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/server"
)

// The fuzzed system runs with authentication on, so that the policies
// (which load orders to decide) are on the path too; who picks the
// caller.
const (
	fuzzJWTSecret   = "the fuzzed sample's HS256 secret, long enough"
	fuzzOperatorKey = "fuzz-operator-key-0123456789"
	fuzzMetricsKey  = "fuzz-metrics-key-0123456789"
	// A fixed cursor key: the cursors in the seeds were signed by the
	// process that added them, which under -fuzz is not the worker's.
	fuzzCursorKey = "the fuzzed sample's cursor key, 32 bytes or more"
	// fuzzAnswerWithin bounds any one answer: nothing may hang.
	fuzzAnswerWithin = 10 * time.Second
)

// fuzzMethods are the methods a request may have: the routes' own and
// those a client might try on them.
var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}

// fuzzCallers are the callers a request may come from, by who.
var fuzzCallers = []string{"nobody", "alice", "bob", "operator", "metrics", "forged", "expired"}

// fuzzSystem is the sample system serving in this process. Under -fuzz,
// every worker process starts its own, on a schema of its own.
type fuzzSystem struct {
	pool    *pgxpool.Pool
	events  string // the events table, quoted
	handler http.Handler
	auth    map[string]string // caller → Authorization header
	cursor  string            // a valid cursor of alice's orders
}

func startFuzzSystem(f *testing.F) *fuzzSystem {
	f.Helper()
	pool := pgtest.Pool(f, 10)
	schema := pgtest.Schema(f, pool)
	prefix := fmt.Sprintf("f%07x_", pgtest.Suffix()&0xfffffff)
	// Cleanups run last first: the read models go once the system stopped.
	dropPrefixed(f, pool, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Config{
		Pool: pool, Schema: schema, Logger: quietLog, NoEnv: true,
		// Short waits: a min-position far ahead answers 503 at once.
		Server: server.Config{MaxWait: 200 * time.Millisecond, CheckTimeout: time.Second},
		Security: app.Security{JWTSecret: fuzzJWTSecret, CursorKey: fuzzCursorKey,
			APIKeys: fuzzOperatorKey + ":read,write,operator;" + fuzzMetricsKey + ":metrics"},
		Projection: projection.Config{LeaderRetry: 100 * time.Millisecond},
	}, orders.Modules(orders.Config{Prefix: prefix})...)
	require.NoError(f, err)
	// No sagas: they would append in the background, after a request,
	// and the event count would no longer tell what a request wrote.
	// (Admission then admits everything: the backlog is never measured.)
	stopped := make(chan error, 1)
	go func() { stopped <- a.RunWith(ctx, app.RunOptions{NoServer: true, NoSagas: true}) }()
	f.Cleanup(func() {
		cancel()
		require.NoError(f, <-stopped)
		a.Close()
	})
	s := &fuzzSystem{pool: pool, events: pgx.Identifier{schema, "events"}.Sanitize(), handler: a.Deps().Server,
		auth: map[string]string{
			"alice": "Bearer " + fuzzToken(f, "alice", time.Hour), "bob": "Bearer " + fuzzToken(f, "bob", time.Hour),
			"operator": "Bearer " + fuzzOperatorKey, "metrics": "Bearer " + fuzzMetricsKey,
			"forged":  "Bearer " + fuzzToken(f, "alice", time.Hour)[:40] + "x.y",
			"expired": "Bearer " + fuzzToken(f, "alice", -time.Hour),
		}}
	s.populate(f)
	return s
}

// fuzzToken signs a customer's token, valid for ttl (expired when
// negative).
func fuzzToken(f *testing.F, customer string, ttl time.Duration) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": customer, "scope": "read write", "exp": time.Now().Add(ttl).Unix(),
	}).SignedString([]byte(fuzzJWTSecret))
	require.NoError(f, err)
	return tok
}

// populate gives the seeds something to find: stock of tea, two orders of
// alice's and one of bob's, in the read models; and a cursor.
func (s *fuzzSystem) populate(f *testing.F) {
	f.Helper()
	post := func(path, body string) {
		rec := s.serve(s.build(f, "POST", path, "operator", "application/json", "", "", []byte(body)))
		require.Equal(f, http.StatusAccepted, rec.Code, "POST %s: %s", path, rec.Body)
	}
	post("/inventory/tea/stock", `{"quantity":100}`)
	// Stock is the operators' to add: a customer's token, with the write
	// scope, is refused.
	rec := s.serve(s.build(f, "POST", "/inventory/tea/stock", "alice", "application/json", "", "", []byte(`{"quantity":1}`)))
	require.Equal(f, http.StatusForbidden, rec.Code, "a customer added stock: %s", rec.Body)
	for _, o := range [][2]string{{"o-1", "alice"}, {"o-2", "alice"}, {"b-1", "bob"}} {
		post("/orders", fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`, o[0], o[1]))
	}
	// The read models start and catch up in the background: poll the
	// listing until alice's second order shows as a next page.
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	require.Eventually(f, func() bool {
		rec := s.serve(s.build(f, "GET", "/orders?customer_id=alice&limit=1", "alice", "", "", "", nil))
		// 503 read-model-unavailable until the projection has started.
		return rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &page) == nil && page.NextCursor != ""
	}, 30*time.Second, 20*time.Millisecond, "alice's two orders never showed in the read model")
	s.cursor = page.NextCursor
}

// build writes the request as a client puts it on the wire and reads it
// back as net/http's server does; nil when the server would refuse it
// before any handler runs (a malformed request line or header), as a
// real listener's connection would.
func (s *fuzzSystem) build(tb testing.TB, method, target, who, contentType, key, minPos string, body []byte) *http.Request {
	tb.Helper()
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: orders.test\r\n", method, target)
	for _, h := range [][2]string{{"Authorization", s.auth[who]}, {"Content-Type", contentType},
		{server.HeaderIdempotencyKey, key}, {server.HeaderMinPosition, minPos}} {
		if h[1] == "" {
			continue
		}
		if !validHeaderValue(h[1]) {
			return nil
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	r, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil || !validTarget(target) {
		return nil
	}
	r.RemoteAddr = "192.0.2.1:40000"
	return r
}

// validHeaderValue is net/http's rule: no control characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget refuses what the request line cannot carry: a space or a
// control character splits or ends it.
func validTarget(t string) bool {
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// serve answers r, failing the test if it takes longer than
// fuzzAnswerWithin.
func (s *fuzzSystem) serve(r *http.Request) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(r.Context(), fuzzAnswerWithin)
	defer cancel()
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, r.WithContext(ctx))
	return rec
}

func (s *fuzzSystem) eventCount(t *testing.T) int64 {
	t.Helper()
	var n int64
	require.NoError(t, s.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+s.events).Scan(&n))
	return n
}

// check sends one request and checks its answer.
func (s *fuzzSystem) check(t *testing.T, method, target, who, contentType, key, minPos string, body []byte) {
	r := s.build(t, method, target, who, contentType, key, minPos, body)
	if r == nil {
		t.Skip("net/http's server refuses this request before any handler")
	}
	what := fmt.Sprintf("%s %q as %s, Content-Type %q, Idempotency-Key %q, %s %q, body %q",
		method, target, who, contentType, key, server.HeaderMinPosition, minPos, truncate(body, 300))
	before := s.eventCount(t)
	start := time.Now()
	rec := s.serve(r)
	elapsed := time.Since(start)
	code := rec.Code
	require.Less(t, elapsed, fuzzAnswerWithin, "%s: answered after %s", what, elapsed)
	if code >= 500 && code != http.StatusServiceUnavailable {
		t.Fatalf("%s: answered %d, a 5xx other than 503: %s", what, code, truncate(rec.Body.Bytes(), 1000))
	}
	if code >= 400 {
		requireProblem(t, what, method, rec)
	}
	if after := s.eventCount(t); code/100 != 2 || method != "POST" {
		require.Equal(t, before, after, "%s: answered %d but the log grew by %d events", what, code, after-before)
	}
}

// requireProblem checks an error's answer: a problem document whose status
// is the response's.
func requireProblem(t *testing.T, what, method string, rec *httptest.ResponseRecorder) {
	t.Helper()
	ct := rec.Header().Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/problem+json" {
		t.Fatalf("%s: answered %d with Content-Type %q, not application/problem+json: %s", what, rec.Code, ct, truncate(rec.Body.Bytes(), 1000))
	}
	if method == "HEAD" {
		return // a real server sends no body
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type == "" || p.Title == "" || p.Status != rec.Code {
		t.Fatalf("%s: answered %d with a malformed problem (%v): %s", what, rec.Code, err, truncate(rec.Body.Bytes(), 1000))
	}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…(" + strconv.Itoa(len(b)) + " bytes)"
}

func FuzzHTTP(f *testing.F) {
	s := startFuzzSystem(f)
	for _, sd := range fuzzSeeds(s.cursor) {
		f.Add(methodIndex(sd.method), callerIndex(sd.who), sd.target, sd.contentType, sd.key, sd.minPos, []byte(sd.body))
	}
	f.Fuzz(func(t *testing.T, method, who uint8, target, contentType, key, minPos string, body []byte) {
		s.check(t, fuzzMethods[int(method)%len(fuzzMethods)], target, fuzzCallers[int(who)%len(fuzzCallers)],
			contentType, key, minPos, body)
	})
}

func methodIndex(m string) uint8 {
	for i, x := range fuzzMethods {
		if x == m {
			return uint8(i)
		}
	}
	panic("no method " + m)
}

func callerIndex(who string) uint8 {
	for i, x := range fuzzCallers {
		if x == who {
			return uint8(i)
		}
	}
	panic("no caller " + who)
}

type fuzzSeed struct {
	method, who, target, contentType, key, minPos, body string
}

// fuzzSeeds are valid and hostile requests for every route. They run in
// any order (and under -fuzz on another system than the one that made
// the cursor), so none depends on another.
func fuzzSeeds(cursor string) []fuzzSeed {
	const js = "application/json"
	order := func(id, customer string) string {
		return fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"items":[{"sku":"tea","quantity":1,"unit_price_cents":450}]}`, id, customer)
	}
	seeds := []fuzzSeed{
		// POST /orders
		{"POST", "alice", "/orders", js, "k-place-1", "", order("s-1", "alice")},
		{"POST", "alice", "/orders", js, "k-place-1", "", order("s-2", "alice")}, // the key reused
		{"POST", "alice", "/orders", js, "", "", order("s-3", "bob")},            // someone else's
		{"POST", "operator", "/orders", js, "", "", `{"customer_id":"c-1","items":[{"sku":"tea","quantity":1,"unit_price_cents":1}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","customer_id":"bob","items":[{"sku":"tea","quantity":1,"unit_price_cents":1}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice\u0000","items":[{"sku":"tea","quantity":1,"unit_price_cents":1}]}`},
		{"POST", "operator", "/orders", js, "", "", `{"order_id":"x\u0000y","customer_id":"c-1","items":[{"sku":"tea\u0000","quantity":1,"unit_price_cents":1}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[{"sku":"tea","quantity":1e999,"unit_price_cents":1}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[{"sku":"tea","quantity":1,"unit_price_cents":99999999999999999999999}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[{"sku":"tea","quantity":-1,"unit_price_cents":-5}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":1,"items":"tea"}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[{"sku":"tea","quantity":1},{"sku":"tea","quantity":2}]}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[{"sku":"tea","quantity":1}],"extra":true}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice"`},
		{"POST", "alice", "/orders", js, "", "", `[]`},
		{"POST", "alice", "/orders", js, "", "", `null`},
		{"POST", "alice", "/orders", js, "", "", ``},
		{"POST", "alice", "/orders", js, "", "", "\xff\xfe{}"},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"\ud800"}`},
		{"POST", "alice", "/orders", js, "", "", `{} {}`},
		{"POST", "alice", "/orders", js, "", "", `{"customer_id":"alice","items":[` + strings.Repeat(`{"sku":"tea","quantity":1},`, 60) + `{"sku":"x","quantity":1}]}`},
		{"POST", "alice", "/orders", js, "", "", strings.Repeat(`[`, 10000)},
		{"POST", "alice", "/orders", "text/plain", "", "", order("s-4", "alice")},
		{"POST", "alice", "/orders", "", "", "", order("s-5", "alice")},
		{"POST", "alice", "/orders", "application/json; charset=latin1", "", "", order("s-6", "alice")},
		{"POST", "alice", "/orders", "application/x-www-form-urlencoded", "", "", "customer_id=alice"},
		{"POST", "alice", "/orders", "multipart/form-data; boundary=x", "", "", "--x\r\n\r\n--x--"},
		{"POST", "alice", "/orders", ";;;", "", "", order("s-7", "alice")},
		{"POST", "alice", "/orders", js, "bad key with spaces and ünicode", "", order("s-8", "alice")},
		{"POST", "alice", "/orders", js, strings.Repeat("k", 300), "", order("s-9", "alice")},
		{"POST", "alice", "/orders", js, "k-\t-tab", "", order("s-10", "alice")},
		{"POST", "alice", "/orders", js, "", "1.1", order("s-11", "alice")},
		{"POST", "nobody", "/orders", js, "", "", order("s-12", "alice")},
		{"POST", "forged", "/orders", js, "", "", order("s-13", "alice")},
		{"POST", "expired", "/orders", js, "", "", order("s-14", "alice")},
		{"POST", "metrics", "/orders", js, "", "", order("s-15", "alice")},
		// POST /orders/{id}/cancel
		{"POST", "alice", "/orders/o-1/cancel", js, "k-cancel-1", "", `{"reason":"changed my mind"}`},
		{"POST", "alice", "/orders/b-1/cancel", js, "", "", `{"reason":"mine now"}`},
		{"POST", "bob", "/orders/b-1/cancel", js, "", "", ``},
		{"POST", "alice", "/orders/nope/cancel", js, "", "", ``},
		{"POST", "operator", "/orders/o-2/cancel", js, "", "", `{"reason":"` + strings.Repeat("r", 600) + `"}`},
		{"POST", "operator", "/orders/o-2/cancel", js, "", "", `{"reason":"\u0000"}`},
		{"POST", "operator", "/orders/o-2/cancel", js, "", "", `{"reason":"a","reason":"b"}`},
		{"POST", "operator", "/orders/o-2/cancel", js, "", "", `{"order_id":"b-1","by_customer":false}`},
		{"POST", "operator", "/orders/%00/cancel", js, "", "", ``},
		{"POST", "operator", "/orders/a b/cancel", js, "", "", ``}, // not a request line
		{"POST", "operator", "/orders/..%2f..%2fetc/cancel", js, "", "", ``},
		{"POST", "operator", "/orders/" + strings.Repeat("x", 100) + "/cancel", js, "", "", ``},
		{"POST", "operator", "/orders/'%3B%20DROP%20TABLE%20events%3B--/cancel", js, "", "", ``},
		{"DELETE", "operator", "/orders/o-1/cancel", js, "", "", ``},
		// POST /inventory/{sku}/stock and GET /inventory/{sku}
		{"POST", "operator", "/inventory/tea/stock", js, "k-stock-1", "", `{"quantity":5}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"quantity":-5}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"quantity":9223372036854775807}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"quantity":9223372036854775808}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"quantity":"5"}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"quantity":5,"quantity":6}`},
		{"POST", "operator", "/inventory/tea/stock", js, "", "", `{"sku":"coffee","quantity":5}`},
		{"POST", "operator", "/inventory/t%C3%A9/stock", js, "", "", `{"quantity":5}`},
		{"POST", "alice", "/inventory/tea/stock", js, "", "", `{"quantity":5}`},
		{"GET", "alice", "/inventory/tea", "", "", "", ""},
		{"GET", "alice", "/inventory/nope", "", "", "", ""},
		{"GET", "alice", "/inventory/%ff", "", "", "", ""},
		// GET /orders/{id}
		{"GET", "alice", "/orders/o-1", "", "", "", ""},
		{"GET", "alice", "/orders/b-1", "", "", "", ""},
		{"GET", "operator", "/orders/b-1", "", "", "1.1", ""},
		{"GET", "alice", "/orders/nope", "", "", "", ""},
		{"GET", "alice", "/orders/o-1", "", "", "99999999999.1", ""},
		{"GET", "alice", "/orders/o-1", "", "", "1.2.3", ""},
		{"GET", "alice", "/orders/o-1", "", "", "-1.0", ""},
		{"GET", "alice", "/orders/o-1", "", "", "99999999999999999999999.1", ""},
		{"GET", "alice", "/orders/o-1", "", "", "abc", ""},
		{"HEAD", "alice", "/orders/o-1", "", "", "", ""},
		{"HEAD", "alice", "/orders/nope", "", "", "", ""},
		{"PUT", "alice", "/orders/o-1", js, "", "", `{}`},
		// GET /orders
		{"GET", "alice", "/orders?customer_id=alice", "", "", "", ""},
		{"GET", "alice", "/orders?customer_id=alice&limit=1&cursor=" + cursor, "", "", "", ""},
		{"GET", "alice", "/orders?customer_id=alice&cursor=" + cursor + "x", "", "", "", ""},
		{"GET", "alice", "/orders?customer_id=alice&cursor=%00", "", "", "", ""},
		{"GET", "alice", "/orders?customer_id=alice&cursor='%20OR%201=1--", "", "", "", ""},
		{"GET", "operator", "/orders?customer_id=alice&sort=created_at;DROP%20TABLE%20events", "", "", "", ""},
		{"GET", "operator", "/orders?sort=-created_at&limit=100000", "", "", "", ""},
		{"GET", "operator", "/orders?limit=-1", "", "", "", ""},
		{"GET", "operator", "/orders?limit=99999999999999999999", "", "", "", ""},
		{"GET", "operator", "/orders?status=pending,paid&customer_id=alice&customer_id=bob", "", "", "", ""},
		{"GET", "operator", "/orders?status=nope", "", "", "", ""},
		{"GET", "operator", "/orders?unknown=1", "", "", "", ""},
		{"GET", "operator", "/orders?%zz", "", "", "", ""},
		{"GET", "alice", "/orders", "", "", "", ""},
		{"GET", "nobody", "/orders?customer_id=alice", "", "", "", ""},
		// GET /stats/sales
		{"GET", "operator", "/stats/sales?from=2024-01-01&to=2024-12-31", "", "", "", ""},
		{"GET", "operator", "/stats/sales?from=0000-01-01&to=2026-01-01", "", "", "", ""},
		{"GET", "operator", "/stats/sales?from=2024-01-01&to=99999-01-01", "", "", "", ""},
		{"GET", "operator", "/stats/sales?from=2024-12-31&to=2024-01-01", "", "", "", ""},
		{"GET", "operator", "/stats/sales?from=2024-02-30&to=2024-03-01", "", "", "", ""},
		{"GET", "operator", "/stats/sales?from=yesterday", "", "", "", ""},
		{"GET", "operator", "/stats/sales", "", "", "", ""},
		{"GET", "alice", "/stats/sales?from=2024-01-01&to=2024-12-31", "", "", "", ""},
		// Operations
		{"GET", "nobody", "/healthz", "", "", "", ""},
		{"GET", "nobody", "/readyz", "", "", "", ""},
		{"POST", "nobody", "/readyz", js, "", "", `{}`},
		{"GET", "metrics", "/metrics", "", "", "", ""},
		{"GET", "operator", "/metrics", "", "", "", ""},
		{"GET", "nobody", "/metrics", "", "", "", ""},
		// Unknown paths and methods
		{"GET", "nobody", "/", "", "", "", ""},
		{"GET", "operator", "/nope", "", "", "", ""},
		{"OPTIONS", "operator", "/orders", "", "", "", ""},
		{"PATCH", "operator", "/orders/o-1/cancel", js, "", "", `{}`},
		{"GET", "operator", "/orders/o-1/cancel", "", "", "", ""},
		{"POST", "operator", "/orders/", js, "", "", `{}`},
		{"GET", "operator", "//orders", "", "", "", ""},
		{"GET", "operator", "/orders/../metrics", "", "", "", ""},
		{"GET", "operator", "*", "", "", "", ""},
		{"GET", "operator", "/" + strings.Repeat("a/", 2000), "", "", "", ""},
	}
	// A body past the server's limit (1 MiB).
	seeds = append(seeds, fuzzSeed{"POST", "alice", "/orders", js, "", "",
		`{"customer_id":"alice","items":[{"sku":"tea","quantity":1,"unit_price_cents":1}],"pad":"` + strings.Repeat("p", 1<<20+1) + `"}`})
	return seeds
}
