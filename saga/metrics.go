package saga

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names.
const (
	MetricCommands       = "cairn_saga_commands_total"
	MetricTimeouts       = "cairn_saga_timeouts_fired_total"
	MetricInstances      = "cairn_saga_instances"
	MetricOutbox         = "cairn_saga_outbox_commands"
	MetricOldestPending  = "cairn_saga_outbox_oldest_pending_seconds"
	MetricTimeoutsQueued = "cairn_saga_timeouts_pending"
	// The backlog as this process's relay last measured it, and the
	// commands Admit refused because of it.
	MetricBacklogCommands = "cairn_saga_backlog_commands"
	MetricBacklogAge      = "cairn_saga_backlog_seconds"
	MetricRefused         = "cairn_saga_admissions_refused_total"
	MetricEventLag        = "cairn_saga_event_lag_seconds"
)

type metrics struct {
	commands        *prometheus.CounterVec
	timeouts        *prometheus.CounterVec
	refused         prometheus.Counter
	backlogCommands prometheus.Gauge
	backlogAge      prometheus.Gauge
	eventLag        prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCommands,
			Help: "Sends of saga commands by this process, by saga and outcome (sent, rejected, retried, dead).",
		}, []string{"saga", "outcome"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTimeouts,
			Help: "Saga timeouts fired by this process, by saga.",
		}, []string{"saga"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricRefused,
			Help: "New commands refused (503 with Retry-After) because the saga backlog was past its bound.",
		}),
		backlogCommands: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricBacklogCommands,
			Help: "Saga commands waiting to be sent now, as last measured for backpressure.",
		}),
		backlogAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricBacklogAge,
			Help: "How long the oldest saga command waiting to be sent has waited, as last measured for backpressure.",
		}),
		eventLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricEventLag,
			Help: "Age of the oldest event a saga has not handled yet (the most behind saga), as last measured for backpressure.",
		}),
	}
}

// RegisterMetrics registers the manager's metrics with reg: counters of
// this process's sends and fired timeouts, and gauges read from the
// database at each scrape (instances by status, queued and dead commands,
// the age of the oldest queued command, pending timeouts), which are the
// same whichever process is scraped.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.metrics.commands, m.metrics.timeouts,
		m.metrics.refused, m.metrics.backlogCommands, m.metrics.backlogAge, m.metrics.eventLag, &gaugeCollector{m: m}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	descInstances = prometheus.NewDesc(MetricInstances, "Saga instances by saga and status.", []string{"saga", "status"}, nil)
	descOutbox    = prometheus.NewDesc(MetricOutbox, "Saga commands in the outbox by saga and status (pending, sent, rejected, dead).", []string{"saga", "status"}, nil)
	descOldest    = prometheus.NewDesc(MetricOldestPending, "Age of the oldest command waiting to be sent, by saga: the relay's lag.", []string{"saga"}, nil)
	descTimeouts  = prometheus.NewDesc(MetricTimeoutsQueued, "Scheduled saga timeouts, by saga.", []string{"saga"}, nil)
)

type gaugeCollector struct{ m *Manager }

func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInstances
	ch <- descOutbox
	ch <- descOldest
	ch <- descTimeouts
}

func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	names := g.m.registered()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := g.m.inspector().Stats(ctx, names...)
	if err != nil {
		g.m.log.Warn("cairn: reading saga metrics failed", "error", err)
		return
	}
	for _, s := range stats {
		for status, n := range s.Instances {
			ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(n), s.Saga, status)
		}
		for status, n := range s.Commands {
			ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(n), s.Saga, status)
		}
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, s.OldestPendingSeconds, s.Saga)
		ch <- prometheus.MustNewConstMetric(descTimeouts, prometheus.GaugeValue, float64(s.Timeouts), s.Saga)
	}
}

func sortStats(s []Stats) {
	slices.SortFunc(s, func(a, b Stats) int { return strings.Compare(a.Saga, b.Saga) })
}
