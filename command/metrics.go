package command

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-es/cairn/retry"
)

// Metric names of Metrics.
const (
	// MetricHandled counts dispatched commands, labelled command (type
	// name) and outcome (ok, duplicate, failed).
	MetricHandled = "cairn_commands_handled_total"
	// MetricFailed counts failed commands, labelled command and reason
	// (MetricsConfig.Reason).
	MetricFailed = "cairn_commands_failed_total"
	// MetricDuration is a histogram of command handling time in seconds
	// (retries included), labelled command.
	MetricDuration = "cairn_command_duration_seconds"
	// MetricRetries counts retries after concurrency conflicts, labelled
	// command.
	MetricRetries = "cairn_command_retries_total"
	// MetricEventsAppended counts events appended by commands, labelled
	// command (replayed commands append none).
	MetricEventsAppended = "cairn_events_appended_total"
)

// MetricsConfig configures Metrics. The zero value is usable.
type MetricsConfig struct {
	// Reason is the reason label of MetricFailed for a command's error.
	// Nil: the outcome word Logging logs (invalid, rejected, not_found,
	// canceled, conflict, overloaded, idempotency_key_reused,
	// unknown_command, error). A service behind the HTTP server passes
	// server.FailureReason, so that the reason is the class of the
	// problem the command's route answers (it adds unavailable, for the
	// database or a missing read model).
	Reason func(err error) string
}

// Metrics are the dispatcher's Prometheus metrics: every command's outcome,
// duration, appended events and retries. Give them to the dispatcher in
// Config.Metrics and register them where they are scraped:
//
//	metrics := command.NewMetrics(command.MetricsConfig{})
//	if err := metrics.Register(registry); err != nil { ... }
//	d := command.NewDispatcher(store, command.Config{Metrics: metrics})
//
// A dispatcher with a Config.Chain of its own uses Middleware and Retry in
// it instead.
type Metrics struct {
	reason   func(error) string
	handled  *prometheus.CounterVec
	failed   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	appended *prometheus.CounterVec
}

// NewMetrics returns unregistered command metrics.
func NewMetrics(cfg MetricsConfig) *Metrics {
	if cfg.Reason == nil {
		cfg.Reason = func(err error) string { _, o := outcomeOf(Result{}, err); return o }
	}
	return &Metrics{
		reason: cfg.Reason,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHandled,
			Help: "Commands dispatched, by command type and outcome (ok, duplicate, failed).",
		}, []string{"command", "outcome"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFailed,
			Help: "Commands that failed, by command type and reason.",
		}, []string{"command", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricDuration,
			Help:    "Time to handle a command, retries included, by command type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"command"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetries,
			Help: "Command retries after concurrency conflicts, by command type.",
		}, []string{"command"}),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsAppended,
			Help: "Events appended by commands, by command type.",
		}, []string{"command"}),
	}
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.handled, m.failed, m.duration, m.retries, m.appended} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Middleware records every command's outcome, duration and appended events.
// Outside Validation and Retry, it runs once per command.
func (m *Metrics) Middleware() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, env Envelope) (Result, error) {
			start := time.Now()
			res, err := next(ctx, env)
			name := env.Type()
			m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
			switch {
			case err != nil:
				m.handled.WithLabelValues(name, "failed").Inc()
				m.failed.WithLabelValues(name, m.reason(err)).Inc()
			case res.Duplicate:
				m.handled.WithLabelValues(name, "duplicate").Inc()
			default:
				m.handled.WithLabelValues(name, "ok").Inc()
				if res.Events > 0 {
					m.appended.WithLabelValues(name).Add(float64(res.Events))
				}
			}
			return res, err
		}
	}
}

// Retry is the Retry middleware with policy p, counting its retries in
// MetricRetries.
func (m *Metrics) Retry(p retry.Policy) Middleware {
	return retryWith(p, func(_ context.Context, env Envelope, _ int, _ error) {
		m.retries.WithLabelValues(env.Type()).Inc()
	})
}
