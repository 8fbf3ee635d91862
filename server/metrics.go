package server

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names of the server's own metrics. The command, projection and
// saga metrics are their packages' (command.Metrics,
// projection.Manager.RegisterMetrics, saga.Manager.RegisterMetrics); the
// server serves whatever Config.Metrics holds.
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
)

// httpMetrics are the server's own metrics.
type httpMetrics struct {
	httpDuration *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	waits        *prometheus.HistogramVec
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors: what a server given no Config.Metrics serves, and a start
// for an application's registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newHTTPMetrics returns the server's metrics, registered with reg.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
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
	}
	for _, c := range []prometheus.Collector{m.httpDuration, m.inFlight, m.waits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) observeHTTP(route, method string, status int, d time.Duration) {
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

func (ri *routeInfo) observe(m *httpMetrics, method string, status int, d time.Duration) {
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
func (ri *routeInfo) observer(m *httpMetrics, k methodStatus) prometheus.Observer {
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

func (m *httpMetrics) observeWait(route, outcome string, d time.Duration) {
	m.waits.WithLabelValues(route, outcome).Observe(d.Seconds())
}

// mountMetrics serves Config.Metrics, behind authentication when
// Config.MetricsScope is set.
func (s *Server) mountMetrics() {
	if s.cfg.MetricsPath == "-" {
		return
	}
	h := echo.WrapHandler(promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
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
