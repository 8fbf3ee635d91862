package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/retry"
	"github.com/cairn-es/cairn/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

const (
	readerKey = "reader-key-0123456789"
	writerKey = "writer-key-0123456789"
)

var testAuth = server.AuthConfig{
	JWTSecret: testSecret,
	APIKeys: map[string][]string{
		readerKey: {"read"},
		writerKey: {"read", "write"},
	},
}

type env struct {
	pool    *pgxpool.Pool
	store   *postgres.Store
	mgr     *projection.Manager
	d       *command.Dispatcher
	bus     *query.Bus
	metrics *prometheus.Registry
	srv     *server.Server
	ts      *httptest.Server
	model   string
	started chan struct{}
}

type envOptions struct {
	cfg server.Config
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	pool := pgtest.Pool(t, 20)
	schema := pgtest.Schema(t, pool)
	store, err := postgres.New(pool, postgres.Config{Schema: schema, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	e := &env{pool: pool, store: store, model: fmt.Sprintf("orders_%x", pgtest.Suffix()), started: make(chan struct{}, 16)}
	t.Cleanup(func() {
		for _, s := range []string{e.model, e.model + "__shadow", e.model + "__old"} {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE")
		}
	})
	e.mgr = pgtest.Manager(t, store, projection.Config{
		Logger:      quiet,
		Retry:       retry.Policy{MaxAttempts: 1, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond},
		LeaderRetry: 100 * time.Millisecond,
	})
	e.mgr.MustRegister(&ordersProjection{name: e.model})
	t.Cleanup(e.mgr.Close)

	// Metrics as app wires them: one registry, the command metrics
	// counting failures by the server's classes.
	e.metrics = server.NewRegistry()
	commandMetrics := command.NewMetrics(command.MetricsConfig{Reason: server.FailureReason})
	require.NoError(t, commandMetrics.Register(e.metrics))
	require.NoError(t, e.mgr.RegisterMetrics(e.metrics))
	e.d = command.NewDispatcher(store, command.Config{
		NoLogging: true,
		Metrics:   commandMetrics,
		Retry:     retry.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	})
	registerCommands(e.d, store)
	registerFuzzCommand(e.d)
	e.bus = query.NewBus()
	registerQueries(e.bus, pool, store, e.model, e.started)

	e.srv = e.newServer(t, o.cfg, e.metrics)
	e.ts = httptest.NewServer(e.srv)
	t.Cleanup(e.ts.Close)

	// The projection daemon runs for the whole test, as it would beside
	// the server in production.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.mgr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	eventually(t, "the read model", func() bool {
		var exists bool
		err := pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{e.model, "orders"}.Sanitize()).Scan(&exists)
		return err == nil && exists
	})
	return e
}

// withHealth makes /readyz check store's database and every migration set
// of a Cairn service.
func withHealth(store *postgres.Store) server.HealthConfig {
	return server.HealthConfig{DB: pgtest.DB(store), Migrations: app.Migrations()}
}

// newServer builds a server on the env's dependencies with the test routes;
// a nil metrics registry leaves the server its own.
func (e *env) newServer(t testing.TB, cfg server.Config, metrics *prometheus.Registry) *server.Server {
	t.Helper()
	cfg.Logger = quiet
	if cfg.MaxWait == 0 {
		// Generous: the shared test cluster's horizon can be held back by
		// other tests' transactions.
		cfg.MaxWait = 20 * time.Second
	}
	cfg.Dispatcher, cfg.QueryBus, cfg.Projections = e.d, e.bus, e.mgr
	cfg.Health, cfg.Metrics = withHealth(e.store), metrics
	srv, err := server.New(cfg)
	require.NoError(t, err)
	server.MustCommandWithResponse(srv, "/orders", func(c PlaceOrder, r command.Result) map[string]any {
		return map[string]any{"order_id": c.OrderID, "command_id": r.CommandID, "position": r.Position}
	})
	server.MustCommand[AmendOrder](srv, "/orders/:id/amend")
	server.MustCommand[CancelOrder](srv, "/orders/:id/cancel")
	server.MustCommand[FuzzCommand](srv, "/fuzz/:id")
	server.MustQuery[GetOrder, Order](srv, "/orders/:id")
	server.MustQuery[ListOrders, []Order](srv, "/orders")
	server.MustQuery[OrderEvents, []string](srv, "/orders/:id/events")
	server.MustQuery[GetOrder, Order](srv, "/slow-orders/:id", server.WithMaxWait(300*time.Millisecond))
	server.MustQuery[GetOrder, Order](srv, "/public/orders/:id", server.Anonymous())
	server.MustQuery[Broken, string](srv, "/broken")
	server.MustQuery[Unbuilt, string](srv, "/unbuilt")
	server.MustQuery[Buggy, string](srv, "/buggy")
	server.MustQuery[Slow, string](srv, "/slow")
	return srv
}

// token signs an HS256 JWT with the test secret.
func token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	require.NoError(t, err)
	return s
}

func writerToken(t testing.TB) string {
	return token(t, jwt.MapClaims{"sub": "alice", "scope": "read write", "exp": time.Now().Add(time.Hour).Unix()})
}

// req builds a request. Headers default to a writer's bearer token and, for
// a body, Content-Type application/json; a header given as "" is removed.
type hdr map[string]string

func newRequest(t testing.TB, method, path, body string, h hdr) *http.Request {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+writerToken(t))
	for k, v := range h {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	return r
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// serve runs a request through the server in-process.
func (e *env) serve(r *http.Request) response {
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, r)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// send runs a request over the network through the httptest server.
func (e *env) send(t testing.TB, r *http.Request) response {
	t.Helper()
	r.RequestURI = ""
	u := *r.URL
	u.Scheme, u.Host = "http", strings.TrimPrefix(e.ts.URL, "http://")
	r.URL = &u
	res, err := e.ts.Client().Do(r)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// requireProblem checks an RFC 9457 response of the given status and type,
// and that it leaks nothing internal.
func requireProblem(t testing.TB, r response, status int, typ string) server.Problem {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, server.ProblemContentType, r.header.Get("Content-Type"))
	var p server.Problem
	require.NoError(t, json.Unmarshal(r.body, &p), "body: %s", r.body)
	require.Equal(t, typ, p.Type, "body: %s", r.body)
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.RequestID)
	require.Equal(t, r.header.Get(server.RequestIDHeader), p.RequestID)
	requireNoLeak(t, r.body)
	return p
}

func requireNoLeak(t testing.TB, body []byte) {
	t.Helper()
	for _, s := range []string{"goroutine ", ".go:", "SELECT", "SQLSTATE", "panic", "secret", "pgx", "runtime."} {
		require.NotContains(t, string(body), s)
	}
}

type dbState struct {
	events, commands int64
	head             eventstore.Position
}

func (e *env) state(t testing.TB) dbState {
	t.Helper()
	ctx := context.Background()
	var s dbState
	require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM "+e.store.Schema()+".events").Scan(&s.events))
	require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM "+e.store.Schema()+".commands").Scan(&s.commands))
	// The last committed event, read from the table: store.Head stops at
	// the readers' horizon, which other tests' transactions on the shared
	// cluster can hold back.
	var tx string
	var seq int64
	err := e.pool.QueryRow(ctx, "SELECT tx::text, seq FROM "+e.store.Schema()+".events ORDER BY tx DESC, seq DESC LIMIT 1").Scan(&tx, &seq)
	if err != pgx.ErrNoRows {
		require.NoError(t, err)
		s.head, err = eventstore.ParsePosition(tx + "." + strconv.FormatInt(seq, 10))
		require.NoError(t, err)
	}
	return s
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), "body: %s", b)
	return v
}

// eventually polls fn until it returns true.
func eventually(t testing.TB, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
