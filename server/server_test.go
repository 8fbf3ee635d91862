package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/server"
)

func TestBadRequestsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{Auth: testAuth}})

	seed := e.serve(newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":10}`, hdr{"Idempotency-Key": "seed-1"}))
	require.Equal(t, http.StatusAccepted, seed.status, "%s", seed.body)

	now := time.Now()
	expired := token(t, jwt.MapClaims{"sub": "a", "scope": "read write", "exp": now.Add(-time.Hour).Unix()})
	notYet := token(t, jwt.MapClaims{"sub": "a", "scope": "read write", "exp": now.Add(2 * time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()})
	noExp := token(t, jwt.MapClaims{"sub": "a", "scope": "read write"})
	readOnly := token(t, jwt.MapClaims{"sub": "a", "scope": "read", "exp": now.Add(time.Hour).Unix()})
	noScopes := token(t, jwt.MapClaims{"sub": "a", "exp": now.Add(time.Hour).Unix()})
	wrongKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "scope": "read write", "exp": now.Add(time.Hour).Unix()}).
		SignedString([]byte("another-secret-another-secret-another-secret"))
	require.NoError(t, err)
	algNone, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "a", "scope": "read write", "exp": now.Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	huge := `{"order_id":"o-2","amount":1,"note":"` + strings.Repeat("x", server.DefaultBodyLimit) + `"}`
	place := func(body string, h hdr) func() *http.Request {
		return func() *http.Request { return newRequest(t, "POST", "/orders", body, h) }
	}
	get := func(path string, h hdr) func() *http.Request {
		return func() *http.Request { return newRequest(t, "GET", path, "", h) }
	}
	const ok = `{"order_id":"o-2","amount":1}`

	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		typ    string
	}{
		{"malformed JSON", place(`{"order_id":`, nil), 400, server.ProblemMalformedJSON},
		{"not JSON at all", place(`order_id=o-2&amount=1`, nil), 400, server.ProblemMalformedJSON},
		{"bad token inside", place(`{"order_id":"o-2","amount":1,}`, nil), 400, server.ProblemMalformedJSON},
		{"unknown field", place(`{"order_id":"o-2","amount":1,"colour":"red"}`, nil), 400, server.ProblemUnknownField},
		{"string for a number", place(`{"order_id":"o-2","amount":"ten"}`, nil), 400, server.ProblemWrongType},
		{"number out of range", place(`{"order_id":"o-2","amount":1e40}`, nil), 400, server.ProblemWrongType},
		{"fraction for an integer", place(`{"order_id":"o-2","amount":1.5}`, nil), 400, server.ProblemWrongType},
		{"object for a string", place(`{"order_id":{"$ne":null},"amount":1}`, nil), 400, server.ProblemWrongType},
		{"array body", place(`[{"order_id":"o-2","amount":1}]`, nil), 400, server.ProblemWrongType},
		{"null body", place(`null`, nil), 400, server.ProblemWrongType},
		{"two objects", place(ok+`{}`, nil), 400, server.ProblemMalformedJSON},
		{"trailing garbage", place(ok+` x`, nil), 400, server.ProblemMalformedJSON},
		{"huge body", place(huge, nil), 400, server.ProblemBodyTooLarge},
		{"huge chunked body", func() *http.Request {
			r := newRequest(t, "POST", "/orders", huge, nil)
			r.ContentLength = -1
			return r
		}, 400, server.ProblemBodyTooLarge},
		{"query string on a command", func() *http.Request { return newRequest(t, "POST", "/orders?dry_run=true", ok, nil) }, 400, server.ProblemInvalidQuery},
		{"text/plain", place(ok, hdr{"Content-Type": "text/plain"}), 415, server.ProblemUnsupportedMediaType},
		{"XML", place(`<order id="o-2"/>`, hdr{"Content-Type": "application/xml"}), 415, server.ProblemUnsupportedMediaType},
		{"form", place(`order_id=o-2`, hdr{"Content-Type": "application/x-www-form-urlencoded"}), 415, server.ProblemUnsupportedMediaType},
		{"latin-1 JSON", place(ok, hdr{"Content-Type": "application/json; charset=latin1"}), 415, server.ProblemUnsupportedMediaType},
		{"no content type", place(ok, hdr{"Content-Type": ""}), 415, server.ProblemUnsupportedMediaType},
		{"broken content type", place(ok, hdr{"Content-Type": "application/json;;=="}), 415, server.ProblemUnsupportedMediaType},
		{"two content types", func() *http.Request {
			r := newRequest(t, "POST", "/orders", ok, nil)
			r.Header.Add("Content-Type", "text/plain")
			return r
		}, 415, server.ProblemUnsupportedMediaType},

		{"SQL in a command's path", func() *http.Request {
			return newRequest(t, "POST", "/orders/o-1'%20OR%201=1--/amend", `{"amount":5,"expected_version":1}`, nil)
		}, 422, server.ProblemInvalidCommand},
		{"SQL in a path bound by BindPath", func() *http.Request {
			return newRequest(t, "POST", "/orders/x';DROP%20TABLE%20orders;--/cancel", "", nil)
		}, 400, server.ProblemWrongType},
		{"SQL in a query's path", get("/orders/o-1'%20OR%20'1'='1", nil), 404, server.ProblemNotFound},
		{"SQL in a query parameter", get("/orders?min_amount=0%20OR%201=1", nil), 400, server.ProblemInvalidQuery},
		{"SQL as a query parameter name", get("/orders/o-1?1=1;DROP%20TABLE%20x", nil), 400, server.ProblemInvalidQuery},
		{"unknown query parameter", get("/orders/o-1?drop=table", nil), 400, server.ProblemInvalidQuery},
		{"unknown list parameter", get("/orders?sort=amount;DELETE", nil), 400, server.ProblemInvalidQuery},
		{"query parameter of the wrong type", get("/orders/o-1?verbose=maybe", nil), 400, server.ProblemInvalidQuery},
		{"repeated query parameter", get("/orders/o-1?verbose=true&verbose=false", nil), 400, server.ProblemInvalidQuery},
		{"malformed query string", get("/orders/o-1?verbose=%zz", nil), 400, server.ProblemInvalidQuery},
		{"query fails validation", get("/orders?limit=1000", nil), 400, server.ProblemInvalidQuery},

		{"position: word", get("/orders/o-1", hdr{server.HeaderMinPosition: "latest"}), 400, server.ProblemInvalidPosition},
		{"position: one number", get("/orders/o-1", hdr{server.HeaderMinPosition: "12"}), 400, server.ProblemInvalidPosition},
		{"position: three parts", get("/orders/o-1", hdr{server.HeaderMinPosition: "1.2.3"}), 400, server.ProblemInvalidPosition},
		{"position: negative", get("/orders/o-1", hdr{server.HeaderMinPosition: "-1.5"}), 400, server.ProblemInvalidPosition},
		{"position: overflow", get("/orders/o-1", hdr{server.HeaderMinPosition: "18446744073709551616.1"}), 400, server.ProblemInvalidPosition},
		{"position: SQL", get("/orders/o-1", hdr{server.HeaderMinPosition: "1.1; DROP TABLE events"}), 400, server.ProblemInvalidPosition},
		{"position: on a route without projections", get("/orders/o-1/events", hdr{server.HeaderMinPosition: "x"}), 400, server.ProblemInvalidPosition},
		{"position: twice", func() *http.Request {
			r := newRequest(t, "GET", "/orders/o-1", "", nil)
			r.Header.Add(server.HeaderMinPosition, "1.1")
			r.Header.Add(server.HeaderMinPosition, "1.2")
			return r
		}, 400, server.ProblemInvalidPosition},

		{"idempotency key: empty", func() *http.Request {
			r := newRequest(t, "POST", "/orders", ok, nil)
			r.Header[server.HeaderIdempotencyKey] = []string{"  "}
			return r
		}, 400, server.ProblemInvalidIdempotencyKey},
		{"idempotency key: too long", place(ok, hdr{server.HeaderIdempotencyKey: strings.Repeat("k", 201)}), 400, server.ProblemInvalidIdempotencyKey},
		{"idempotency key: control character", place(ok, hdr{server.HeaderIdempotencyKey: "key\x01"}), 400, server.ProblemInvalidIdempotencyKey},
		{"idempotency key: not ASCII", place(ok, hdr{server.HeaderIdempotencyKey: "ключ"}), 400, server.ProblemInvalidIdempotencyKey},
		{"idempotency key: twice", func() *http.Request {
			r := newRequest(t, "POST", "/orders", ok, nil)
			r.Header.Add(server.HeaderIdempotencyKey, "a")
			r.Header.Add(server.HeaderIdempotencyKey, "b")
			return r
		}, 400, server.ProblemInvalidIdempotencyKey},
		{"correlation ID: too long", place(ok, hdr{server.HeaderCorrelationID: strings.Repeat("c", 201)}), 400, server.ProblemInvalidCorrelationID},

		{"no token", place(ok, hdr{"Authorization": ""}), 401, server.ProblemUnauthorized},
		{"no token on a query", get("/orders/o-1", hdr{"Authorization": ""}), 401, server.ProblemUnauthorized},
		{"basic auth", place(ok, hdr{"Authorization": "Basic dXNlcjpwYXNz"}), 401, server.ProblemUnauthorized},
		{"bearer without token", place(ok, hdr{"Authorization": "Bearer"}), 401, server.ProblemUnauthorized},
		{"garbage token", place(ok, hdr{"Authorization": "Bearer garbage"}), 401, server.ProblemUnauthorized},
		{"garbage JWT", place(ok, hdr{"Authorization": "Bearer a.b.c"}), 401, server.ProblemUnauthorized},
		{"expired token", place(ok, hdr{"Authorization": "Bearer " + expired}), 401, server.ProblemUnauthorized},
		{"token not valid yet", place(ok, hdr{"Authorization": "Bearer " + notYet}), 401, server.ProblemUnauthorized},
		{"token without exp", place(ok, hdr{"Authorization": "Bearer " + noExp}), 401, server.ProblemUnauthorized},
		{"token of another key", place(ok, hdr{"Authorization": "Bearer " + wrongKey}), 401, server.ProblemUnauthorized},
		{"unsigned token", place(ok, hdr{"Authorization": "Bearer " + algNone}), 401, server.ProblemUnauthorized},
		{"unknown API key", place(ok, hdr{"Authorization": "Bearer writer-key-0123456788"}), 401, server.ProblemUnauthorized},
		{"read scope on a command", place(ok, hdr{"Authorization": "Bearer " + readOnly}), 403, server.ProblemInsufficientScope},
		{"read-only API key on a command", place(ok, hdr{"Authorization": "Bearer " + readerKey}), 403, server.ProblemInsufficientScope},
		{"no scopes on a query", get("/orders/o-1", hdr{"Authorization": "Bearer " + noScopes}), 403, server.ProblemInsufficientScope},

		{"unknown route", get("/nope", nil), 404, server.ProblemNotFound},
		{"unknown route without a token", get("/nope/../../etc/passwd", hdr{"Authorization": ""}), 404, server.ProblemNotFound},
		{"method not allowed", func() *http.Request { return newRequest(t, "DELETE", "/orders", "", nil) }, 405, server.ProblemMethodNotAllowed},

		{"invalid command", place(`{"order_id":"Not An ID","amount":1}`, nil), 422, server.ProblemInvalidCommand},
		{"invalid amount", place(`{"order_id":"o-2","amount":0}`, nil), 422, server.ProblemInvalidCommand},
		{"domain refusal", place(`{"order_id":"o-2","amount":20000}`, nil), 422, server.ProblemCommandRejected},
		{"order exists", place(`{"order_id":"o-1","amount":5}`, nil), 422, server.ProblemCommandRejected},
		{"cancel an order that does not exist", func() *http.Request { return newRequest(t, "POST", "/orders/nope/cancel", "", nil) }, 404, server.ProblemNotFound},
		{"stale expected version", func() *http.Request {
			return newRequest(t, "POST", "/orders/o-1/amend", `{"amount":5,"expected_version":0}`, nil)
		}, 409, server.ProblemConcurrencyConflict},
		{"idempotency key reused", place(`{"order_id":"o-3","amount":10}`, hdr{server.HeaderIdempotencyKey: "seed-1"}), 409, server.ProblemIdempotencyKeyReused},
	}

	before := e.state(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.serve(tc.req())
			p := requireProblem(t, res, tc.status, tc.typ)
			require.NotEmpty(t, p.Detail)
			switch tc.status {
			case 401:
				require.True(t, strings.HasPrefix(res.header.Get("WWW-Authenticate"), `Bearer realm="cairn"`), res.header.Get("WWW-Authenticate"))
			case 403:
				require.Contains(t, res.header.Get("WWW-Authenticate"), `error="insufficient_scope"`)
			case 405:
				require.Contains(t, res.header.Get("Allow"), "POST")
			}
		})
	}
	require.Equal(t, before, e.state(t), "bad requests must not change the database")
}

func TestCommandsAndReadYourWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{Auth: testAuth}})
	ctx := context.Background()

	// Place an order over the network.
	res := e.send(t, newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":100}`,
		hdr{server.HeaderIdempotencyKey: "place-o-1", server.HeaderCorrelationID: "corr-1"}))
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	require.Equal(t, "application/json", res.header.Get("Content-Type"))
	token := res.header.Get(server.HeaderPosition)
	pos, err := eventstore.ParsePosition(token)
	require.NoError(t, err)
	require.False(t, pos.IsZero())
	placed := decode[map[string]any](t, res.body)
	require.Equal(t, map[string]any{"order_id": "o-1", "command_id": "place-o-1", "position": token}, placed)

	// Read it back, waiting for the projection.
	got := e.send(t, newRequest(t, "GET", "/orders/o-1", "", hdr{server.HeaderMinPosition: token}))
	require.Equal(t, http.StatusOK, got.status, "%s", got.body)
	require.Equal(t, Order{OrderID: "o-1", Amount: 100, Status: "placed", Version: 1}, decode[Order](t, got.body))

	// The events carry the request's IDs.
	evs, err := e.store.ReadStream(ctx, "order-o-1", eventstore.ReadStreamOptions{})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "corr-1", evs[0].Metadata.CorrelationID)
	require.Equal(t, "place-o-1", evs[0].Metadata.CommandID)
	require.Equal(t, "alice", evs[0].Metadata.Extra["principal"])
	require.NotEmpty(t, evs[0].Metadata.Extra["request_id"])

	// A redelivery answers the original result and appends nothing.
	before := e.state(t)
	again := e.send(t, newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":100}`, hdr{server.HeaderIdempotencyKey: "place-o-1"}))
	require.Equal(t, http.StatusAccepted, again.status, "%s", again.body)
	require.Equal(t, res.body, again.body)
	require.Equal(t, token, again.header.Get(server.HeaderPosition))
	require.Equal(t, "true", again.header.Get(server.HeaderReplayed))
	require.Equal(t, before, e.state(t))

	// The same key with another payload is a conflict.
	reused := e.send(t, newRequest(t, "POST", "/orders", `{"order_id":"o-1","amount":999}`, hdr{server.HeaderIdempotencyKey: "place-o-1"}))
	requireProblem(t, reused, http.StatusConflict, server.ProblemIdempotencyKeyReused)

	// A domain refusal.
	refused := e.send(t, newRequest(t, "POST", "/orders", `{"order_id":"o-9","amount":50000}`, nil))
	p := requireProblem(t, refused, http.StatusUnprocessableEntity, server.ProblemCommandRejected)
	require.Equal(t, "amount exceeds the credit limit of 10000", p.Detail)

	// Amend with the right version: the default response body.
	amended := e.send(t, newRequest(t, "POST", "/orders/o-1/amend", `{"amount":150,"expected_version":1}`, nil))
	require.Equal(t, http.StatusAccepted, amended.status, "%s", amended.body)
	body := decode[server.CommandResponse](t, amended.body)
	require.Equal(t, "order-o-1", body.StreamID)
	require.EqualValues(t, 2, body.Version)
	require.Equal(t, amended.header.Get(server.HeaderPosition), body.Position.String())
	require.NotEmpty(t, body.CommandID)

	// A stale version conflicts on every retry: 409, nothing written.
	before = e.state(t)
	stale := e.send(t, newRequest(t, "POST", "/orders/o-1/amend", `{"amount":175,"expected_version":1}`, nil))
	requireProblem(t, stale, http.StatusConflict, server.ProblemConcurrencyConflict)
	require.Equal(t, before, e.state(t))

	// Cancel: no body, the ID from the path.
	cancelled := e.send(t, newRequest(t, "POST", "/orders/o-1/cancel", "", hdr{"Content-Type": ""}))
	require.Equal(t, http.StatusAccepted, cancelled.status, "%s", cancelled.body)
	got = e.send(t, newRequest(t, "GET", "/orders/o-1", "", hdr{server.HeaderMinPosition: cancelled.header.Get(server.HeaderPosition)}))
	require.Equal(t, http.StatusOK, got.status, "%s", got.body)
	require.Equal(t, Order{OrderID: "o-1", Amount: 150, Status: "cancelled", Version: 3}, decode[Order](t, got.body))

	// An API key with the write scope.
	byKey := e.send(t, newRequest(t, "POST", "/orders", `{"order_id":"o-2","amount":20}`, hdr{"Authorization": "Bearer " + writerKey}))
	require.Equal(t, http.StatusAccepted, byKey.status, "%s", byKey.body)

	// A list query that binds itself.
	list := e.send(t, newRequest(t, "GET", "/orders?min_amount=50&limit=10", "", hdr{server.HeaderMinPosition: byKey.header.Get(server.HeaderPosition)}))
	require.Equal(t, http.StatusOK, list.status, "%s", list.body)
	require.Equal(t, []Order{{OrderID: "o-1", Amount: 150, Status: "cancelled", Version: 3}}, decode[[]Order](t, list.body))
	all := e.send(t, newRequest(t, "GET", "/orders", "", hdr{"Authorization": "Bearer " + readerKey, server.HeaderMinPosition: byKey.header.Get(server.HeaderPosition)}))
	require.Equal(t, http.StatusOK, all.status, "%s", all.body)
	require.Len(t, decode[[]Order](t, all.body), 2)

	// A tag-bound query with an allowed parameter; an anonymous route.
	got = e.send(t, newRequest(t, "GET", "/orders/o-2?verbose=true", "", nil))
	require.Equal(t, http.StatusOK, got.status, "%s", got.body)
	got = e.send(t, newRequest(t, "GET", "/public/orders/o-2", "", hdr{"Authorization": ""}))
	require.Equal(t, http.StatusOK, got.status, "%s", got.body)

	// A route without projections ignores the position; one with them
	// times out on a position nobody will reach.
	far := eventstore.Position{Tx: pos.Tx + 1_000_000, Seq: 1}.String()
	start := time.Now()
	events := e.send(t, newRequest(t, "GET", "/orders/o-1/events", "", hdr{server.HeaderMinPosition: far}))
	require.Equal(t, http.StatusOK, events.status, "%s", events.body)
	require.Equal(t, []string{"OrderPlaced", "OrderAmended", "OrderCancelled"}, decode[[]string](t, events.body))
	require.Less(t, time.Since(start), time.Second)
	timeout := e.send(t, newRequest(t, "GET", "/slow-orders/o-1", "", hdr{server.HeaderMinPosition: far}))
	requireProblem(t, timeout, http.StatusServiceUnavailable, server.ProblemWaitTimeout)
	require.Equal(t, "1", timeout.header.Get("Retry-After"))

	// Not found, database down, internal errors.
	requireProblem(t, e.send(t, newRequest(t, "GET", "/orders/nope", "", nil)), http.StatusNotFound, server.ProblemNotFound)
	down := e.send(t, newRequest(t, "GET", "/broken", "", nil))
	requireProblem(t, down, http.StatusServiceUnavailable, server.ProblemDatabaseUnavailable)
	require.Equal(t, "1", down.header.Get("Retry-After"))
	unbuilt := e.send(t, newRequest(t, "GET", "/unbuilt", "", nil))
	requireProblem(t, unbuilt, http.StatusServiceUnavailable, server.ProblemReadModelUnavailable)
	require.Equal(t, "1", unbuilt.header.Get("Retry-After"))
	buggy := e.send(t, newRequest(t, "GET", "/buggy", "", nil))
	requireProblem(t, buggy, http.StatusInternalServerError, server.ProblemInternal)
	panicked := e.send(t, newRequest(t, "GET", "/buggy?panic=true", "", nil))
	requireProblem(t, panicked, http.StatusInternalServerError, server.ProblemInternal)
	require.NotContains(t, string(panicked.body), "boom")

	// Operations endpoints need no token.
	health := e.send(t, newRequest(t, "GET", "/healthz", "", hdr{"Authorization": ""}))
	require.Equal(t, http.StatusOK, health.status)
	require.JSONEq(t, `{"status":"ok"}`, string(health.body))
	ready := e.send(t, newRequest(t, "GET", "/readyz", "", hdr{"Authorization": ""}))
	require.Equal(t, http.StatusOK, ready.status, "%s", ready.body)

	metrics := e.send(t, newRequest(t, "GET", "/metrics", "", hdr{"Authorization": ""}))
	require.Equal(t, http.StatusOK, metrics.status)
	text := string(metrics.body)
	for _, want := range []string{
		server.MetricHTTPRequestDuration + `_bucket{method="POST",route="/orders",status="202"`,
		server.MetricHTTPRequestDuration + `_count{method="GET",route="/orders/:id",status="200"}`,
		server.MetricHTTPRequestDuration + `_count{method="GET",route="/slow-orders/:id",status="503"}`,
		server.MetricHTTPInFlight,
		server.MetricReadYourWritesWait + `_count{outcome="reached",route="/orders/:id"}`,
		server.MetricReadYourWritesWait + `_count{outcome="timeout",route="/slow-orders/:id"} 1`,
		command.MetricHandled + `{command="PlaceOrder",outcome="ok"} 2`,
		command.MetricHandled + `{command="PlaceOrder",outcome="duplicate"} 1`,
		command.MetricFailed + `{command="PlaceOrder",reason="idempotency_key_reused"} 1`,
		command.MetricFailed + `{command="PlaceOrder",reason="rejected"} 1`,
		command.MetricFailed + `{command="AmendOrder",reason="conflict"} 1`,
		command.MetricDuration + `_count{command="CancelOrder"} 1`,
		command.MetricRetries + `{command="AmendOrder"} 2`,
		command.MetricEventsAppended + `{command="PlaceOrder"} 2`,
		command.MetricEventsAppended + `{command="AmendOrder"} 1`,
		projection.MetricStatusUp + " 1",
		projection.MetricCheckpoint + `{projection="` + e.model + `"}`,
		projection.MetricLag + `{projection="` + e.model + `"}`,
		projection.MetricDeadLetters + `{projection="` + e.model + `"} 0`,
		projection.MetricEventsApplied + `{projection="` + e.model + `"}`,
		projection.MetricState + `{projection="` + e.model + `",state="running"} 1`,
		projection.MetricSinceLastApplied,
		"go_goroutines",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, `route="/nope`)
}

func TestUnmatchedRoutesShareOneMetricsSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for i := range 5 {
		res := e.serve(newRequest(t, "GET", fmt.Sprintf("/random-%d", i), "", nil))
		requireProblem(t, res, http.StatusNotFound, server.ProblemNotFound)
	}
	res := e.serve(newRequest(t, "GET", "/metrics", "", nil))
	require.Contains(t, string(res.body), server.MetricHTTPRequestDuration+`_count{method="GET",route="unmatched",status="404"} 5`)
	require.NotContains(t, string(res.body), "random-")
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{ReadyMaxLag: 3}})
	ctx := context.Background()
	readyz := func() (int, server.ReadinessReport) {
		res := e.serve(newRequest(t, "GET", "/readyz", "", hdr{"Authorization": ""}))
		return res.status, decode[server.ReadinessReport](t, res.body)
	}
	item := func(r server.ReadinessReport) server.ProjectionHealth {
		require.NotNil(t, r.Projections)
		require.Len(t, r.Projections.Items, 1)
		return r.Projections.Items[0]
	}

	eventually(t, "ready", func() bool { s, _ := readyz(); return s == http.StatusOK })
	status, rep := readyz()
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ready", rep.Status)
	require.Equal(t, "ok", rep.Database.Status)
	require.Equal(t, "ok", rep.Migrations.Status)
	require.Equal(t, rep.Migrations.Latest, rep.Migrations.Current)
	require.Equal(t, server.ProjectionHealth{Name: e.model, Status: "ok", State: "running"}, item(rep))

	// Paused, the projection falls behind; past the threshold it is unready.
	require.NoError(t, e.mgr.Pause(ctx, e.model))
	for i := range 4 {
		_, err := e.store.Append(ctx, fmt.Sprintf("order-lag-%d", i), eventstore.NoStream, []eventstore.Event{encode("OrderPlaced", orderEvent{OrderID: fmt.Sprintf("lag-%d", i), Amount: 1})})
		require.NoError(t, err)
	}
	// (Lag counts what readers can see: a long transaction elsewhere in
	// the cluster may hide the new events for a moment.)
	eventually(t, "lagging", func() bool { s, _ := readyz(); return s == http.StatusServiceUnavailable })
	status, rep = readyz()
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "unready", rep.Status)
	require.Equal(t, "unhealthy", rep.Projections.Status)
	require.Equal(t, "lagging", item(rep).Status)
	require.EqualValues(t, 4, item(rep).Lag)

	// Resumed, it catches up.
	require.NoError(t, e.mgr.Resume(ctx, e.model))
	eventually(t, "ready again", func() bool { s, _ := readyz(); return s == http.StatusOK })

	// A poison event stops it: failed is unready.
	res := e.serve(newRequest(t, "POST", "/orders", `{"order_id":"poison","amount":6666}`, nil))
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	eventually(t, "failed", func() bool { s, r := readyz(); return s == http.StatusServiceUnavailable && item(r).Status == "failed" })
	_, rep = readyz()
	require.Equal(t, projection.Failed, item(rep).State)
	require.NotContains(t, fmt.Sprint(rep), "poison order", "readiness shows no error text")
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{Auth: testAuth}})
	srv := e.newServer(t, server.Config{Auth: testAuth, ShutdownTimeout: 10 * time.Second}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		r, _ := http.NewRequest("GET", "http://"+addr+"/slow?ms=700", nil)
		r.Header.Set("Authorization", "Bearer "+readerKey)
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		slow <- result{status: res.StatusCode, body: string(b)}
	}()
	select {
	case <-e.started: // the slow handler is running
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never started")
	}
	start := time.Now()
	cancel()
	require.Eventually(t, func() bool {
		return srv.Readiness(context.Background()).Status == "shutting_down"
	}, 5*time.Second, 10*time.Millisecond)

	select {
	case err := <-served:
		require.NoError(t, err, "Serve returns nil after a clean shutdown")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	require.Greater(t, time.Since(start), 300*time.Millisecond, "shutdown waited for the request")
	r := <-slow
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, `"done"`, r.body)

	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "the listener is closed")
}

func TestRunListensOnConfiguredAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	srv := e.newServer(t, server.Config{Addr: addr}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
