package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
	"github.com/cairn-es/cairn/query"
	"github.com/cairn-es/cairn/telemetry"
)

// Defaults of Config.
const (
	DefaultAddr              = "127.0.0.1:8080"
	DefaultReadTimeout       = 10 * time.Second
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultShutdownTimeout   = 20 * time.Second
	DefaultBodyLimit         = 1 << 20 // 1 MiB
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxWait           = 5 * time.Second
	DefaultRetryAfter        = time.Second
	DefaultReadyMaxLag       = 10_000
	DefaultCheckTimeout      = 2 * time.Second
	DefaultMetricsPath       = "/metrics"
	// DrainFactor times Config.BodyLimit is the most of a too-large body
	// the server reads and discards before answering; past it, the answer
	// goes out and the connection is closed.
	DrainFactor = 8
	// headerSlack is how many times Config.MaxHeaderBytes net/http reads
	// before answering 431 itself, in plain text.
	headerSlack = 4
)

// Config configures a Server. The zero value is usable: every zero field
// takes its default.
type Config struct {
	// Addr is the listen address of Run (default 127.0.0.1:8080: only this
	// machine; use ":8080" to listen on every interface).
	Addr string
	// ReadTimeout bounds reading a whole request, body included (10s);
	// ReadHeaderTimeout its headers (5s).
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the response (30s). Handlers get a context with this deadline, so
	// database work stops when its answer could no longer be sent.
	WriteTimeout time.Duration
	// IdleTimeout bounds keep-alive connections waiting for a request (60s).
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown
	// (20s); connections still busy then are closed.
	ShutdownTimeout time.Duration
	// BodyLimit bounds request bodies, in bytes (1 MiB). A larger body is
	// answered with 400 and the problem type body-too-large, after the
	// server has read and discarded it (up to DrainFactor times the limit,
	// unless the client asked for 100-continue): a client that writes its
	// whole body before reading then gets the answer instead of a reset
	// connection.
	BodyLimit int64
	// MaxHeaderBytes bounds request headers (64 KiB). Headers over it are
	// answered 431 with the problem type headers-too-large. net/http
	// itself, which answers in plain text before any handler runs, is
	// given four times this bound, so that only headers far over it (and
	// headers net/http cannot parse) get its plain-text answer.
	MaxHeaderBytes int
	// MaxWait bounds a read-your-writes wait (X-Cairn-Min-Position) on GET
	// routes (5s); WithMaxWait changes it per route. It must be shorter
	// than WriteTimeout.
	MaxWait time.Duration
	// RetryAfter is the Retry-After of 503 responses (1s, rounded to whole
	// seconds).
	RetryAfter time.Duration
	// Auth configures bearer authentication; the zero value disables it.
	Auth AuthConfig
	// MetricsPath serves the Prometheus metrics ("/metrics"); "-" serves
	// none.
	MetricsPath string
	// MetricsScope, when set, makes the metrics endpoint require a bearer
	// token with this scope (with Auth configured). Empty: no
	// authentication.
	MetricsScope string
	// ReadyMaxLag is the largest projection lag, in events, with which
	// /readyz still reports ready (10,000).
	ReadyMaxLag int64
	// CheckTimeout bounds the database work of one /readyz check (2s).
	CheckTimeout time.Duration
	// TracerProvider makes the span of every request (but the operations
	// endpoints'), a child of the trace context the client sent in the
	// W3C traceparent header; the command a route dispatches is the
	// span's child. Nil: otel.GetTracerProvider(), which makes none until
	// the application installs an SDK.
	TracerProvider trace.TracerProvider
	// Logger receives the access log (one line per request: Info, Debug for
	// the ops endpoints), the real errors behind 5xx responses (Error) and
	// the server's life cycle; slog.Default() when nil.
	Logger *slog.Logger

	// The parts below are the server's dependencies; each zero value
	// leaves that part out.

	// Dispatcher handles the commands of command routes. Nil: mounting a
	// command route fails.
	Dispatcher *command.Dispatcher
	// Admission, when set, is asked before every command route
	// dispatches a command: an error refuses it before anything is
	// appended (a *command.OverloadedError becomes a 503 with its
	// Retry-After). app passes the saga manager's Admit, which refuses
	// while the saga backlog is past its bound.
	Admission func(context.Context) error
	// QueryBus holds the handlers query routes call. Nil: mounting a
	// query route fails.
	QueryBus *query.Bus
	// Projections is the projection manager that read-your-writes waits
	// and /readyz consult. The server does not run it: the caller runs
	// Manager.Run on the same context as Run (see Run). Nil: /readyz
	// reports no projections, and a query route whose handler reads
	// projections fails to mount.
	Projections *projection.Manager
	// Health is the database /readyz checks. Zero (no pool): /readyz
	// checks no database.
	Health HealthConfig
	// Metrics is the registry served at MetricsPath, into which the
	// server registers its own HTTP metrics (MetricHTTPRequestDuration,
	// MetricHTTPInFlight, MetricReadYourWritesWait). Give it the
	// application's registry, holding the command, projection and saga
	// metrics and the runtime collectors it wants (NewRegistry). Nil: a
	// registry of the server's own, NewRegistry's.
	Metrics *prometheus.Registry
}

// HealthConfig is the database /readyz checks: it pings DB and requires
// Migrations applied in DB's schema.
type HealthConfig struct {
	DB         pgdb.DB
	Migrations []migrations.Set
}

func (c *Config) defaults() error {
	setDefault(&c.Addr, DefaultAddr)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.BodyLimit, DefaultBodyLimit)
	setDefault(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&c.MaxWait, DefaultMaxWait)
	setDefault(&c.RetryAfter, DefaultRetryAfter)
	setDefault(&c.MetricsPath, DefaultMetricsPath)
	setDefault(&c.ReadyMaxLag, DefaultReadyMaxLag)
	setDefault(&c.CheckTimeout, DefaultCheckTimeout)
	setDefault(&c.Auth.ReadScope, "read")
	setDefault(&c.Auth.WriteScope, "write")
	setDefault(&c.Auth.Realm, "cairn")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewRegistry()
	}
	if c.MaxWait >= c.WriteTimeout {
		return fmt.Errorf("server: MaxWait (%s) must be shorter than WriteTimeout (%s)", c.MaxWait, c.WriteTimeout)
	}
	if c.MetricsPath != "-" && (c.MetricsPath == "" || c.MetricsPath[0] != '/') {
		return fmt.Errorf("server: MetricsPath %q must start with /", c.MetricsPath)
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Server is Cairn's HTTP side: command routes (POST, through the command
// dispatcher), query routes (GET, through the query bus, with
// read-your-writes waits), authentication, RFC 9457 errors and the
// operations endpoints /healthz, /readyz and /metrics. It is an
// http.Handler; Run serves it.
type Server struct {
	cfg        Config
	echo       *echo.Echo
	http       *http.Server
	log        *slog.Logger
	auth       *authenticator
	dispatcher *command.Dispatcher
	admit      func(context.Context) error
	bus        *query.Bus
	manager    *projection.Manager
	health     *health
	metrics    *httpMetrics
	tracer     trace.Tracer

	mu sync.Mutex // serializes writers of paths
	// paths maps the path template of every mounted route and operations
	// endpoint to its metrics; copied on write, so requests read it
	// without locking.
	paths     atomic.Pointer[map[string]*routeInfo]
	unmatched *routeInfo

	draining atomic.Bool
	serving  atomic.Bool
}

// New returns a server with the operations endpoints mounted; mount the
// application's routes with Query and Command. It fails on an invalid
// configuration (for example a JWT public key of an unsupported type).
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, unmatched: &routeInfo{label: "unmatched"},
		dispatcher: cfg.Dispatcher, admit: cfg.Admission, bus: cfg.QueryBus, manager: cfg.Projections,
		tracer: telemetry.Tracer(cfg.TracerProvider, telemetry.ScopeName+"/server"),
	}
	if cfg.Health.DB.Pool != nil {
		s.health = &health{db: cfg.Health.DB, sets: cfg.Health.Migrations}
	}
	s.paths.Store(&map[string]*routeInfo{})
	auth, err := newAuthenticator(cfg.Auth)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	if s.metrics, err = newHTTPMetrics(cfg.Metrics); err != nil {
		return nil, err
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(discard{})
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if werr := s.writeProblem(c, s.problemFor(err), requestIDOf(c)); werr != nil {
			s.log.Debug("cairn: writing a problem response failed", "error", werr)
		}
	}
	e.Use(s.traced, s.outer)
	s.echo = e

	s.http = &http.Server{
		Addr:              cfg.Addr,
		Handler:           e,
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    headerSlack * cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.mountOps()
	return s, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Echo returns the underlying echo instance, for routes and middleware of
// the application's own. Routes added there bypass the server's
// authentication unless they use it explicitly.
func (s *Server) Echo() *echo.Echo { return s.echo }

// ServeHTTP serves one request: the server is an http.Handler, for
// httptest or another server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Run listens on Config.Addr and serves until ctx ends. It then shuts down
// gracefully: it stops accepting connections, /readyz turns 503, and
// in-flight requests run to completion (for at most ShutdownTimeout, after
// which the remaining connections are closed and Run returns an error).
// After a clean shutdown Run returns nil, so that main can exit 0.
//
// Run takes none of the process's signals: the process is main's. To stop
// on SIGINT and SIGTERM, make ctx with SignalContext.
//
// Run does not run the projection manager. Run both on one context, made
// with SignalContext, so that one signal stops both, and wait for the
// manager before exiting: each projection then commits or rolls back its
// batch before the process ends.
//
//	ctx, stop := server.SignalContext(context.Background())
//	defer stop()
//	projections := make(chan error, 1)
//	go func() { projections <- manager.Run(ctx) }()
//	err := srv.Run(ctx) // returns once in-flight requests have finished
//	stop()              // stops the manager too when Run failed by itself
//	err = errors.Join(err, <-projections)
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// SignalContext returns a context that ends on SIGINT or SIGTERM, for Run
// and the projection manager to share. Only main should call it: while the
// context lives, those signals no longer end the process by themselves.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Serve is Run on a listener of the caller's (for example one on port 0).
// It closes ln. A Server serves once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		_ = ln.Close()
		return errors.New("server: Serve called twice")
	}
	s.log.Info("cairn: http server listening", "addr", ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("cairn: http server shutting down; finishing in-flight requests", "timeout", s.cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.http.Shutdown(shutdownCtx)
	<-served // http.ErrServerClosed
	if err != nil {
		_ = s.http.Close()
		return fmt.Errorf("server: shutdown: %w", err)
	}
	s.log.Info("cairn: http server stopped")
	return nil
}

// quietKey, set in echo's context, makes the access log line of a
// successful request Debug.
const quietKey = "cairn.quiet"

// RequestIDHeader carries the request ID: the client's, when it sends a
// valid one (1 to 128 of A-Z a-z 0-9 - _ . : / + =), or a new UUIDv7.
const RequestIDHeader = "X-Request-ID"

func validRequestID(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:/+=", c) >= 0) {
			return false
		}
	}
	return true
}

// requestIDHeaderKey is RequestIDHeader in canonical form, for direct
// header map access (the helpers canonicalize on every call, allocating
// for a key that is not canonical already).
var requestIDHeaderKey = http.CanonicalHeaderKey(RequestIDHeader)

// newRequestID returns a new UUIDv7: request IDs sort by time.
func newRequestID() string {
	// NewV7 fails only when crypto/rand does, which since Go 1.24 never
	// returns an error (it crashes the program instead).
	return uuid.Must(uuid.NewV7()).String()
}

// rawBodyKey, set in echo's context of a request with a body, holds the
// body as net/http gave it, before the body limit: what is left of a
// too-large body is discarded from it.
const rawBodyKey = "cairn.raw_body"

// requestIDOf returns the request's ID, which outer puts in the response
// header (as echo's own RequestID middleware does): the ID the client
// reads is the one the server logs and records.
func requestIDOf(c echo.Context) string {
	if vs := c.Response().Header()[requestIDHeaderKey]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// validToken reports whether v is 1 to n printable ASCII characters.
func validToken(v string, n int) bool {
	if v == "" || len(v) > n {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// outer wraps every request: request ID, deadline, body limit, panic
// recovery, error responses, metrics and the access log.
func (s *Server) outer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		var rid string
		if vs := req.Header[requestIDHeaderKey]; len(vs) == 1 && validRequestID(vs[0]) {
			rid = vs[0]
		} else {
			rid = newRequestID()
		}
		h := c.Response().Header()
		vals := []string{rid, "nosniff"} // one allocation for both headers
		h[requestIDHeaderKey] = vals[0:1:1]
		h["X-Content-Type-Options"] = vals[1:2:2]

		ctx, cancel := context.WithTimeout(req.Context(), s.cfg.WriteTimeout)
		defer cancel()
		req = req.WithContext(ctx)
		if req.Body != nil && req.Body != http.NoBody {
			c.Set(rawBodyKey, req.Body)
			req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.BodyLimit)
		}
		c.SetRequest(req)

		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()

		var err error
		if n := headerSize(req); n > s.cfg.MaxHeaderBytes {
			err = NewProblem(http.StatusRequestHeaderFieldsTooLarge, ProblemHeadersTooLarge,
				fmt.Sprintf("the request's headers take %d bytes, over the limit of %d", n, s.cfg.MaxHeaderBytes))
		} else {
			err = s.guard(c, next)
		}
		var p *Problem
		if err != nil {
			p = s.problemFor(err)
			if werr := s.writeProblem(c, p, rid); werr != nil {
				s.log.Debug("cairn: writing a problem response failed", "request_id", rid, "error", werr)
			}
		}
		status := c.Response().Status
		if !c.Response().Committed && err == nil {
			status = http.StatusOK
		}
		route := s.routeOf(c)
		elapsed := time.Since(start)
		route.observe(s.metrics, req.Method, status, elapsed)
		s.accessLog(c, rid, route.label, status, elapsed, p)
		return nil
	}
}

// headerSize counts the bytes of the request line and headers as the
// client sent them (near enough: net/http has folded their spelling).
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// discardBody reads and drops what is left of a too-large body, up to
// DrainFactor times the limit, so that a client still writing it sees the
// answer rather than a reset connection. A client that asked for
// 100-continue has sent nothing yet and is answered at once, as is one
// that declared a body longer than the bound.
func (s *Server) discardBody(c echo.Context) {
	r := c.Request()
	raw, ok := c.Get(rawBodyKey).(io.ReadCloser)
	if !ok || strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	bound := DrainFactor * s.cfg.BodyLimit
	if r.ContentLength > bound {
		return
	}
	_, _ = io.CopyN(io.Discard, raw, bound)
}

// guard runs next, turning a panic into an error.
func (s *Server) guard(c echo.Context, next echo.HandlerFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return next(c)
}

// panicError is a recovered panic: a 500, logged with its stack.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("server: handler panicked: %v", p.value) }

// routeOf is the route template for metrics and logs: the matched route
// (also when it does not accept the method: a 405), or "unmatched" so that
// random paths do not make new series.
func (s *Server) routeOf(c echo.Context) *routeInfo {
	if path := c.Path(); path != "" {
		if ri := (*s.paths.Load())[path]; ri != nil {
			return ri
		}
	}
	return s.unmatched
}

func (s *Server) accessLog(c echo.Context, rid, route string, status int, elapsed time.Duration, p *Problem) {
	level := slog.LevelInfo
	if quiet, _ := c.Get(quietKey).(bool); quiet && status < 500 {
		level = slog.LevelDebug
	}
	if p != nil {
		switch {
		case status == http.StatusServiceUnavailable:
			level = slog.LevelWarn // the database, a deadline or a lagging read model: operational
		case status >= 500:
			level = slog.LevelError
		}
	}
	ctx := c.Request().Context()
	if !s.log.Enabled(ctx, level) {
		return // build no attributes for a record nobody keeps: this is the hot path
	}
	attrs := []slog.Attr{
		slog.String("request_id", rid),
		slog.String("method", c.Request().Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", elapsed),
	}
	if p != nil {
		attrs = append(attrs, slog.String("problem", p.Type))
		if p.Err != nil {
			attrs = append(attrs, slog.Any("error", p.Err))
			var pe *panicError
			if errors.As(p.Err, &pe) {
				attrs = append(attrs, slog.String("stack", string(pe.stack)))
			}
		}
	}
	if pr, ok := PrincipalFrom(ctx); ok {
		attrs = append(attrs, slog.String("principal", pr.Subject))
	}
	s.log.LogAttrs(ctx, level, "cairn: http request", attrs...)
}

// addPath records the path of a mounted route or operations endpoint for
// metrics labels.
func (s *Server) addPath(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.paths.Load()
	if old[path] != nil {
		return
	}
	paths := make(map[string]*routeInfo, len(old)+1)
	for k, v := range old {
		paths[k] = v
	}
	paths[path] = &routeInfo{label: path}
	s.paths.Store(&paths)
}
