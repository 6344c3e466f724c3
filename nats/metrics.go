package nats

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the intake's Prometheus metrics, labelled with the stream
// and the consumer.
type Metrics struct {
	messages   *prometheus.CounterVec
	redeliverd prometheus.Counter
	fetchSize  prometheus.Histogram
	paused     *prometheus.GaugeVec
	consumer   *consumerCollector
	collectors []prometheus.Collector
}

// NewMetrics makes the metrics; js, if not nil, is asked for the
// consumer's pending counts at scrape time.
func NewMetrics(cfg Config, js JetStream) *Metrics {
	cfg.defaults()
	labels := prometheus.Labels{"stream": cfg.Stream, "consumer": cfg.Consumer}
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "iu_nats_messages_total",
			Help:        "JetStream messages settled, by outcome (acked, nak_gated, requeued_gated, nak_unavailable, dead_lettered, dead_letter_failed) and dead-letter reason.",
			ConstLabels: labels,
		}, []string{"outcome", "reason"}),
		redeliverd: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "iu_nats_messages_redelivered_total",
			Help:        "JetStream messages received that had been delivered before (a worker died, a gate or the store held them back).",
			ConstLabels: labels,
		}),
		fetchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "iu_nats_fetch_batch_messages",
			Help:        "Messages committed together from one pull request.",
			Buckets:     []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
			ConstLabels: labels,
		}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "iu_nats_fetching_paused",
			Help:        "1 while the worker does not fetch, by why: gated (a gate is closed) or unavailable (the store does not answer).",
			ConstLabels: labels,
		}, []string{"why"}),
	}
	for _, o := range []string{"acked", "nak_gated", "requeued_gated", "nak_unavailable"} {
		m.messages.WithLabelValues(o, "")
	}
	for _, r := range Reasons {
		m.messages.WithLabelValues("dead_lettered", r)
	}
	m.paused.WithLabelValues("gated")
	m.paused.WithLabelValues("unavailable")
	m.collectors = []prometheus.Collector{m.messages, m.redeliverd, m.fetchSize, m.paused}
	if js != nil {
		m.consumer = &consumerCollector{js: js,
			pending:    prometheus.NewDesc("iu_nats_consumer_pending_messages", "Messages in the stream not yet delivered to the consumer.", nil, labels),
			ackPending: prometheus.NewDesc("iu_nats_consumer_ack_pending_messages", "Messages delivered to a worker and not yet acknowledged.", nil, labels),
			up:         prometheus.NewDesc("iu_nats_up", "Whether NATS answered the last scrape (1) or not (0).", nil, labels),
		}
		m.collectors = append(m.collectors, m.consumer)
	}
	return m
}

// Collectors returns what to register.
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectors }

// Count returns how many messages were settled with outcome (and reason,
// for dead letters) so far.
func (m *Metrics) Count(outcome, reason string) float64 {
	var d dto.Metric
	if err := m.messages.WithLabelValues(outcome, reason).Write(&d); err != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}

func (m *Metrics) outcome(outcome, reason string) { m.messages.WithLabelValues(outcome, reason).Inc() }
func (m *Metrics) redelivered()                   { m.redeliverd.Inc() }
func (m *Metrics) fetched(n int)                  { m.fetchSize.Observe(float64(n)) }

func (m *Metrics) setPaused(why string) {
	g, u := 0.0, 0.0
	switch {
	case why == pausedUnavailable:
		u = 1
	case strings.Contains(why, "gate"):
		g = 1
	}
	m.paused.WithLabelValues("gated").Set(g)
	m.paused.WithLabelValues("unavailable").Set(u)
}

// consumerCollector reads the consumer's state at scrape time.
type consumerCollector struct {
	js                      JetStream
	pending, ackPending, up *prometheus.Desc
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.up
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ci, err := c.js.ConsumerInfo(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending))
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(ci.NumAckPending))
}
