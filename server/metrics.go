package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-es/cairn/command"
	"github.com/cairn-es/cairn/projection"
)

// Metric names. Every series lives in the Metrics' own registry; nothing is
// registered globally.
const (
	// MetricHTTPRequestDuration is a histogram of request durations in
	// seconds, labelled route (the route template, or "unmatched"),
	// method and status.
	MetricHTTPRequestDuration = "cairn_http_request_duration_seconds"
	// MetricHTTPInFlight is a gauge of requests being served.
	MetricHTTPInFlight = "cairn_http_requests_in_flight"
	// MetricReadYourWritesWait is a histogram of X-Cairn-Min-Position
	// waits in seconds, labelled route and outcome (reached, timeout,
	// error).
	MetricReadYourWritesWait = "cairn_http_min_position_wait_seconds"
	// MetricCommandsHandled counts dispatched commands, labelled command
	// (type name) and outcome (ok, duplicate, failed).
	MetricCommandsHandled = "cairn_commands_handled_total"
	// MetricCommandsFailed counts failed commands, labelled command and
	// reason (invalid, rejected, conflict, idempotency_key_reused,
	// not_found, unknown_command, overloaded, unavailable (the database,
	// as pgerr.Transient tells it, or a missing read model), canceled,
	// error): the same classes, in the same order, as the problem the
	// command's route answers (see errorClasses).
	MetricCommandsFailed = "cairn_commands_failed_total"
	// MetricCommandDuration is a histogram of command handling time in
	// seconds (retries included), labelled command.
	MetricCommandDuration = "cairn_command_duration_seconds"
	// MetricCommandRetries counts retries after concurrency conflicts,
	// labelled command.
	MetricCommandRetries = "cairn_command_retries_total"
	// MetricEventsAppended counts events appended by commands, labelled
	// command (replayed commands append none).
	MetricEventsAppended = "cairn_events_appended_total"
	// MetricProjectionUp is 1 when the last scrape could read the
	// projections' status, 0 when it could not.
	MetricProjectionUp = "cairn_projection_status_up"
	// MetricProjectionCheckpoint is the transaction part of each
	// projection's checkpoint position (positions are pairs; see
	// eventstore.Position), labelled projection.
	MetricProjectionCheckpoint = "cairn_projection_checkpoint_position"
	// MetricProjectionLag is each projection's lag: events of its types
	// between its checkpoint and the head of the log.
	MetricProjectionLag = "cairn_projection_lag_events"
	// MetricProjectionDeadLetters is each projection's dead-letter count.
	MetricProjectionDeadLetters = "cairn_projection_dead_letters"
	// MetricProjectionEventsApplied counts the events each projection's
	// current model has applied.
	MetricProjectionEventsApplied = "cairn_projection_events_applied_total"
	// MetricProjectionState is 1 for each projection's current state
	// (labelled projection and state: running, paused, failed, new).
	MetricProjectionState = "cairn_projection_state"
	// MetricProjectionSinceLastApplied is the time since each projection
	// last applied an event, in seconds.
	MetricProjectionSinceLastApplied = "cairn_projection_seconds_since_last_applied"
)

// Metrics are the server's Prometheus metrics, in a registry of their own
// (with the Go runtime and process collectors).
//
// Command metrics come from the dispatcher, which the application builds;
// give it the middleware and the retry hook:
//
//	metrics := server.NewMetrics()
//	d := command.NewDispatcher(store,
//		command.WithMiddleware(metrics.CommandMiddleware()),
//		command.WithRetry(metrics.RetryPolicy(command.DefaultRetryPolicy)))
//	srv, err := server.New(cfg, server.WithMetrics(metrics), server.WithDispatcher(d), ...)
type Metrics struct {
	reg *prometheus.Registry

	httpDuration    *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	waits           *prometheus.HistogramVec
	commands        *prometheus.CounterVec
	commandsFailed  *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	eventsAppended  *prometheus.CounterVec
}

// NewMetrics returns metrics in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricHTTPRequestDuration,
			Help:    "Duration of HTTP requests by route template, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricHTTPInFlight,
			Help: "HTTP requests being served.",
		}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricReadYourWritesWait,
			Help:    "Read-your-writes waits for projections (X-Cairn-Min-Position) by route and outcome.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "outcome"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCommandsHandled,
			Help: "Commands dispatched, by command type and outcome (ok, duplicate, failed).",
		}, []string{"command", "outcome"}),
		commandsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCommandsFailed,
			Help: "Commands that failed, by command type and reason.",
		}, []string{"command", "reason"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricCommandDuration,
			Help:    "Time to handle a command, retries included, by command type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"command"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCommandRetries,
			Help: "Command retries after concurrency conflicts, by command type.",
		}, []string{"command"}),
		eventsAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsAppended,
			Help: "Events appended by commands, by command type.",
		}, []string{"command"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpDuration, m.inFlight, m.waits,
		m.commands, m.commandsFailed, m.commandDuration, m.retries, m.eventsAppended,
	)
	return m
}

// Registry returns the registry the metrics live in, for collectors of the
// application's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (m *Metrics) observeHTTP(route, method string, status int, d time.Duration) {
	m.httpDuration.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
}

// routeInfo is a route template's label with its request duration
// observers by method and status, curried once: a request then observes
// without hashing labels or formatting its status.
type routeInfo struct {
	label string
	mu    sync.Mutex // serializes writers of obs
	obs   atomic.Pointer[map[methodStatus]prometheus.Observer]
}

type methodStatus struct {
	method string
	status int
}

func (ri *routeInfo) observe(m *Metrics, method string, status int, d time.Duration) {
	if !standardMethod(method) || status < 100 || status > 999 {
		// A client's own method (or an odd status): no caching, so that
		// the cache stays small; the series is what it always was.
		m.observeHTTP(ri.label, method, status, d)
		return
	}
	k := methodStatus{method, status}
	var o prometheus.Observer
	if obs := ri.obs.Load(); obs != nil {
		o = (*obs)[k]
	}
	if o == nil {
		o = ri.observer(m, k)
	}
	o.Observe(d.Seconds())
}

// observer curries the histogram for k and caches it (copy on write).
func (ri *routeInfo) observer(m *Metrics, k methodStatus) prometheus.Observer {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	var old map[methodStatus]prometheus.Observer
	if p := ri.obs.Load(); p != nil {
		old = *p
	}
	if o := old[k]; o != nil {
		return o
	}
	o := m.httpDuration.WithLabelValues(ri.label, k.method, strconv.Itoa(k.status))
	obs := make(map[methodStatus]prometheus.Observer, len(old)+1)
	for k, v := range old {
		obs[k] = v
	}
	obs[k] = o
	ri.obs.Store(&obs)
	return o
}

func standardMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func (m *Metrics) observeWait(route, outcome string, d time.Duration) {
	m.waits.WithLabelValues(route, outcome).Observe(d.Seconds())
}

// CommandMiddleware records every command's outcome, duration and appended
// events. Add it to the dispatcher with command.WithMiddleware: it then
// runs once per command, outside validation and retries.
func (m *Metrics) CommandMiddleware() command.Middleware {
	return func(next command.Handler) command.Handler {
		return func(ctx context.Context, env command.Envelope) (command.Result, error) {
			start := time.Now()
			res, err := next(ctx, env)
			name := env.Type()
			m.commandDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
			switch {
			case err != nil:
				m.commands.WithLabelValues(name, "failed").Inc()
				m.commandsFailed.WithLabelValues(name, failureReason(err)).Inc()
			case res.Duplicate:
				m.commands.WithLabelValues(name, "duplicate").Inc()
			default:
				m.commands.WithLabelValues(name, "ok").Inc()
				if res.Events > 0 {
					m.eventsAppended.WithLabelValues(name).Add(float64(res.Events))
				}
			}
			return res, err
		}
	}
}

// OnCommandRetry counts a retry; it is a command.RetryPolicy OnRetry hook.
func (m *Metrics) OnCommandRetry(_ context.Context, env command.Envelope, _ int, _ error) {
	m.retries.WithLabelValues(env.Type()).Inc()
}

// RetryPolicy returns p with OnCommandRetry added to its OnRetry hook.
func (m *Metrics) RetryPolicy(p command.RetryPolicy) command.RetryPolicy {
	prev := p.OnRetry
	p.OnRetry = func(ctx context.Context, env command.Envelope, attempt int, err error) {
		m.OnCommandRetry(ctx, env, attempt, err)
		if prev != nil {
			prev(ctx, env, attempt, err)
		}
	}
	return p
}

// projectionCollector reads the projections' status on each scrape.
type projectionCollector struct {
	m       *projection.Manager
	timeout time.Duration
	log     *slog.Logger

	up, checkpoint, lag, deadLetters, applied, state, since *prometheus.Desc
}

func newProjectionCollector(m *projection.Manager, timeout time.Duration, log *slog.Logger) *projectionCollector {
	l := []string{"projection"}
	return &projectionCollector{
		m: m, timeout: timeout, log: log,
		up:          prometheus.NewDesc(MetricProjectionUp, "Whether the last scrape could read the projections' status.", nil, nil),
		checkpoint:  prometheus.NewDesc(MetricProjectionCheckpoint, "Transaction part of the projection's checkpoint position.", l, nil),
		lag:         prometheus.NewDesc(MetricProjectionLag, "Events of the projection's types between its checkpoint and the head of the log.", l, nil),
		deadLetters: prometheus.NewDesc(MetricProjectionDeadLetters, "Dead letters of the projection.", l, nil),
		applied:     prometheus.NewDesc(MetricProjectionEventsApplied, "Events applied by the projection's current model.", l, nil),
		state:       prometheus.NewDesc(MetricProjectionState, "1 for the projection's current state.", []string{"projection", "state"}, nil),
		since:       prometheus.NewDesc(MetricProjectionSinceLastApplied, "Seconds since the projection last applied an event.", l, nil),
	}
}

func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.checkpoint, c.lag, c.deadLetters, c.applied, c.state, c.since} {
		ch <- d
	}
}

func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	all, err := c.m.StatusAll(ctx)
	if err != nil {
		c.log.Warn("cairn: reading projection status for metrics failed", "error", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, st := range all {
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(st.Checkpoint.Tx), st.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(st.Lag), st.Name)
		ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(st.DeadLetters), st.Name)
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.CounterValue, float64(st.EventsApplied), st.Name)
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1, st.Name, string(st.State))
		ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, st.SinceLastApplied, st.Name)
	}
}

// metricsHandler serves the registry, behind authentication when
// Config.MetricsScope is set.
func (s *Server) mountMetrics() {
	if s.cfg.MetricsPath == "-" {
		return
	}
	h := echo.WrapHandler(s.metrics.Handler())
	var mw []echo.MiddlewareFunc
	if s.cfg.MetricsScope != "" {
		mw = append(mw, s.requireScopes([]string{s.cfg.MetricsScope}))
	}
	s.echo.GET(s.cfg.MetricsPath, func(c echo.Context) error {
		c.Set(quietKey, true)
		return h(c)
	}, mw...)
	s.addPath(s.cfg.MetricsPath)
}
