package integration

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of Metrics. A publisher's lag, state and dead letters are
// its projection's (cairn_projection_*, labelled projection
// "publish_<name>"); an inbox's dead letters are counted here and kept by
// the broker.
const (
	// MetricPublished counts messages the broker acknowledged, labelled
	// publisher, type and duplicate ("true" when the broker dropped the
	// message as a copy of one it had: a republish after a crash or an
	// outage).
	MetricPublished = "cairn_integration_messages_published_total"
	// MetricPublishFailures counts failed publish attempts, labelled
	// publisher and reason: unavailable (the broker: retried until it is
	// back), mapping (the event: retried, then dead-lettered) or
	// undeliverable (the broker refused the message: retried, then
	// dead-lettered).
	MetricPublishFailures = "cairn_integration_publish_failures_total"
	// MetricPublishDuration is a histogram of the time from sending a
	// message to the broker's acknowledgement, in seconds, labelled
	// publisher.
	MetricPublishDuration = "cairn_integration_publish_duration_seconds"
	// MetricInboxMessages counts received messages by what became of each
	// delivery, labelled inbox, type and outcome: handled (its command
	// committed), duplicate (its command had been handled: answered from
	// the command log), rejected (a domain rule refused the command),
	// ignored (no handler, or the handler returned no command), retried
	// (a transient failure: redelivered later) and dead_lettered.
	MetricInboxMessages = "cairn_integration_inbox_messages_total"
	// MetricInboxRedeliveries counts deliveries of a message after its
	// first, labelled inbox.
	MetricInboxRedeliveries = "cairn_integration_inbox_redeliveries_total"
	// MetricInboxLatency is a histogram of the time from the event's
	// commit in the sending service to the command's commit here, in
	// seconds (clocks of both machines included), labelled inbox.
	MetricInboxLatency = "cairn_integration_inbox_latency_seconds"
	// MetricConsumerPending is the broker's count of an inbox's messages,
	// labelled inbox and state: pending (not delivered yet) and
	// ack_pending (delivered, not acknowledged: bounded by the consumer's
	// MaxAckPending).
	MetricConsumerPending = "cairn_integration_consumer_pending"
)

// Outcome is what became of one delivery of a message to an inbox.
type Outcome string

// Outcomes. Handled, Duplicate, Rejected and Ignored are final: the broker
// is told the message is done. Retry asks for a later redelivery;
// DeadLetter sets the message aside for an operator.
const (
	Handled    Outcome = "handled"
	Duplicate  Outcome = "duplicate"
	Rejected   Outcome = "rejected"
	Ignored    Outcome = "ignored"
	Retry      Outcome = "retried"
	DeadLetter Outcome = "dead_lettered"
)

// Final tells the outcomes after which the message is acknowledged.
func (o Outcome) Final() bool {
	return o == Handled || o == Duplicate || o == Rejected || o == Ignored
}

// Metrics are the integration's Prometheus metrics, for publishers and
// inboxes. Give the same Metrics to each (PublisherConfig.Metrics, the
// broker consumer's config) and register them once where they are
// scraped:
//
//	metrics := integration.NewMetrics()
//	if err := metrics.Register(registry); err != nil { ... }
//
// A nil *Metrics records nothing.
type Metrics struct {
	published, publishFailures, inbox, redeliveries *prometheus.CounterVec
	publishDuration, latency                        *prometheus.HistogramVec
	pending                                         *prometheus.GaugeVec
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	return &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricPublished,
			Help: "Integration messages the broker acknowledged, by publisher, type and whether the broker dropped it as a duplicate.",
		}, []string{"publisher", "type", "duplicate"}),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricPublishFailures,
			Help: "Failed attempts at publishing an integration message, by publisher and reason (unavailable, mapping, undeliverable).",
		}, []string{"publisher", "reason"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricPublishDuration,
			Help:    "Time from sending an integration message to the broker's acknowledgement, by publisher.",
			Buckets: buckets,
		}, []string{"publisher"}),
		inbox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricInboxMessages,
			Help: "Deliveries of integration messages to an inbox, by inbox, type and outcome (handled, duplicate, rejected, ignored, retried, dead_lettered).",
		}, []string{"inbox", "type", "outcome"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricInboxRedeliveries,
			Help: "Deliveries of an integration message after its first, by inbox.",
		}, []string{"inbox"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricInboxLatency,
			Help:    "Time from the event's commit in the sending service to the command's commit in this one, by inbox.",
			Buckets: buckets,
		}, []string{"inbox"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricConsumerPending,
			Help: "Messages of an inbox's broker consumer, by inbox and state (pending: not delivered yet; ack_pending: delivered, not acknowledged).",
		}, []string{"inbox", "state"}),
	}
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.published, m.publishFailures, m.publishDuration, m.inbox, m.redeliveries, m.latency, m.pending} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) sent(publisher, typ string, dup bool, took time.Duration) {
	if m == nil {
		return
	}
	d := "false"
	if dup {
		d = "true"
	}
	m.published.WithLabelValues(publisher, typ, d).Inc()
	m.publishDuration.WithLabelValues(publisher).Observe(took.Seconds())
}

func (m *Metrics) publishFailed(publisher, reason string) {
	if m == nil {
		return
	}
	m.publishFailures.WithLabelValues(publisher, reason).Inc()
}

// Delivered records what became of one delivery of msg to inbox (for a
// broker's consumer): the outcome, a redelivery when attempt > 1, and for
// a message handled the time since its event occurred.
func (m *Metrics) Delivered(inbox string, msg Message, attempt int, o Outcome) {
	if m == nil {
		return
	}
	m.inbox.WithLabelValues(inbox, msg.Type, string(o)).Inc()
	if attempt > 1 {
		m.redeliveries.WithLabelValues(inbox).Inc()
	}
	if o == Handled && !msg.OccurredAt.IsZero() {
		m.latency.WithLabelValues(inbox).Observe(time.Since(msg.OccurredAt).Seconds())
	}
}

// SetPending records the broker's counts of an inbox's messages (for a
// broker's consumer).
func (m *Metrics) SetPending(inbox string, pending, ackPending uint64) {
	if m == nil {
		return
	}
	m.pending.WithLabelValues(inbox, "pending").Set(float64(pending))
	m.pending.WithLabelValues(inbox, "ack_pending").Set(float64(ackPending))
}
