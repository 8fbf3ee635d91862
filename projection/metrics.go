package projection

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of RegisterMetrics. Every value is read from the database
// at each scrape (StatusAll), so it is the same whichever process is
// scraped.
const (
	// MetricStatusUp is 1 when the last scrape could read the
	// projections' status, 0 when it could not.
	MetricStatusUp = "cairn_projection_status_up"
	// MetricCheckpoint is the transaction part of each projection's
	// checkpoint position (positions are pairs; see eventstore.Position),
	// labelled projection.
	MetricCheckpoint = "cairn_projection_checkpoint_position"
	// MetricLag is each projection's lag: events of its types between its
	// checkpoint and the head of the log.
	MetricLag = "cairn_projection_lag_events"
	// MetricDeadLetters is each projection's dead-letter count.
	MetricDeadLetters = "cairn_projection_dead_letters"
	// MetricEventsApplied counts the events each projection's current
	// model has applied.
	MetricEventsApplied = "cairn_projection_events_applied_total"
	// MetricState is 1 for each projection's current state (labelled
	// projection and state: running, paused, failed, new).
	MetricState = "cairn_projection_state"
	// MetricSinceLastApplied is the time since each projection last
	// applied an event, in seconds.
	MetricSinceLastApplied = "cairn_projection_seconds_since_last_applied"
)

// MetricsScrapeTimeout bounds the database work of one scrape of the
// projection metrics.
const MetricsScrapeTimeout = 2 * time.Second

// RegisterMetrics registers the projections' metrics with reg: gauges
// read from the projections' status at each scrape. A scrape that cannot
// read it (within MetricsScrapeTimeout) reports MetricStatusUp 0 and logs
// why.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(newStatusCollector(m, MetricsScrapeTimeout, m.log))
}

// statusCollector reads the projections' status on each scrape.
type statusCollector struct {
	m       *Manager
	timeout time.Duration
	log     *slog.Logger

	up, checkpoint, lag, deadLetters, applied, state, since *prometheus.Desc
}

func newStatusCollector(m *Manager, timeout time.Duration, log *slog.Logger) *statusCollector {
	l := []string{"projection"}
	return &statusCollector{
		m: m, timeout: timeout, log: log,
		up:          prometheus.NewDesc(MetricStatusUp, "Whether the last scrape could read the projections' status.", nil, nil),
		checkpoint:  prometheus.NewDesc(MetricCheckpoint, "Transaction part of the projection's checkpoint position.", l, nil),
		lag:         prometheus.NewDesc(MetricLag, "Events of the projection's types between its checkpoint and the head of the log.", l, nil),
		deadLetters: prometheus.NewDesc(MetricDeadLetters, "Dead letters of the projection.", l, nil),
		applied:     prometheus.NewDesc(MetricEventsApplied, "Events applied by the projection's current model.", l, nil),
		state:       prometheus.NewDesc(MetricState, "1 for the projection's current state.", []string{"projection", "state"}, nil),
		since:       prometheus.NewDesc(MetricSinceLastApplied, "Seconds since the projection last applied an event.", l, nil),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.checkpoint, c.lag, c.deadLetters, c.applied, c.state, c.since} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
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
