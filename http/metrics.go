package http

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/iu-engine/iu"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (several servers may live in one test process).
type metrics struct {
	reg            *prometheus.Registry
	events         *prometheus.CounterVec
	instantiations *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	batchSize      prometheus.Histogram
	batchDuration  prometheus.Histogram
	batchErrors    prometheus.Counter
	refusals       *prometheus.CounterVec

	typesMu sync.Mutex
	types   map[string]bool

	templatesMu sync.Mutex
	templates   map[string]bool // templates seen to be published

	// The counters of events by type and outcome, found without hashing
	// the labels again: the path of every event.
	eventCounters sync.Map // type + "\x00" + outcome -> prometheus.Counter
	cached        atomic.Int64
	observers     sync.Map // routeStatus -> the latency histogram's observer
}

type routeStatus struct {
	rt     *route
	status int
}

// maxCachedCounters bounds eventCounters (types are the producers' choice).
const maxCachedCounters = 4 * maxTypeLabels

// maxTypeLabels bounds the event types that get a label of their own: the
// type is chosen by producers, and a label per value must not grow without
// end. Later types are counted as "other".
const maxTypeLabels = 500

func newMetrics(e *iu.Engine) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iu_events_total",
			Help: "CloudEvents received, by event type and outcome (created, replayed_or_shadow, unavailable, invalid, unknown_template, conflict, unmatched, too_large, unsupported_media_type, error).",
		}, []string{"type", "outcome"}),
		instantiations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iu_instantiations_total",
			Help: "Per-template answers to events, by template and status (created, replayed, shadow, gated, or an error code).",
		}, []string{"template", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iu_http_request_duration_seconds",
			Help:    "HTTP request latency, by route, method and status.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "iu_batch_size_events",
			Help:    "Emit requests per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "iu_batch_duration_seconds",
			Help:    "Time to apply and commit one group-commit transaction.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		batchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iu_batch_errors_total",
			Help: "Group-commit transactions that failed as a whole.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iu_auth_refusals_total",
			Help: "Requests refused for want of a valid token (unauthorized) or scope (forbidden).",
		}, []string{"reason"}),
		types:     make(map[string]bool),
		templates: make(map[string]bool),
	}
	reg.MustRegister(m.events, m.instantiations, m.latency, m.batchSize, m.batchDuration, m.batchErrors, m.refusals,
		&storeCollector{e: e},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// watch reports b's pending requests.
func (m *metrics) watch(b *iu.Batcher) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "iu_batch_pending_events",
		Help: "Emit requests waiting for a group-commit transaction.",
	}, func() float64 { return float64(b.Pending()) }))
}

func (m *metrics) event(typ, outcome string) {
	key := typ + "\x00" + outcome
	if c, ok := m.eventCounters.Load(key); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.events.WithLabelValues(m.typeLabel(typ), outcome)
	if m.cached.Add(1) < maxCachedCounters {
		m.eventCounters.Store(key, c)
	}
	c.Inc()
}

func (m *metrics) typeLabel(typ string) string {
	if typ == "" {
		return "(unparsed)"
	}
	m.typesMu.Lock()
	defer m.typesMu.Unlock()
	if m.types[typ] {
		return typ
	}
	if len(m.types) >= maxTypeLabels {
		return "other"
	}
	m.types[typ] = true
	return typ
}

// maxTemplateLabels bounds the templates that get a label of their own
// (a safeguard: they are published by operators, not chosen by producers).
const maxTemplateLabels = 1000

// instantiation counts one template's answer to an event. The template is
// named by the producer (iutemplate), so its key is a label only once an
// answer has shown that it is published: a result, or a conflict with a
// stored entry. Any other key, an unknown template or garbage, counts as
// "unknown", so that producers cannot make a series each.
func (m *metrics) instantiation(template string, published bool, status string) {
	m.instantiations.WithLabelValues(m.templateLabel(template, published), status).Inc()
}

func (m *metrics) templateLabel(template string, published bool) string {
	m.templatesMu.Lock()
	defer m.templatesMu.Unlock()
	switch {
	case m.templates[template]:
		return template
	case !published:
		return "unknown"
	case len(m.templates) >= maxTemplateLabels:
		return "other"
	}
	m.templates[template] = true
	return template
}

func (m *metrics) request(rt *route, status int, took time.Duration) {
	key := routeStatus{rt, status}
	if o, ok := m.observers.Load(key); ok {
		o.(prometheus.Observer).Observe(took.Seconds())
		return
	}
	o := m.latency.WithLabelValues(rt.pattern, rt.method, strconv.Itoa(status))
	m.observers.Store(key, o)
	o.Observe(took.Seconds())
}

func (m *metrics) batch(n int, took time.Duration, err error) {
	m.batchSize.Observe(float64(n))
	m.batchDuration.Observe(took.Seconds())
	if err != nil {
		m.batchErrors.Inc()
	}
}

// storeCollector reads the gates and the pool statistics at scrape time.
type storeCollector struct{ e *iu.Engine }

var (
	descGate = prometheus.NewDesc("iu_gate_enabled", "Whether a gate is on (1) or off (0), as committed.", []string{"gate"}, nil)
	descUp   = prometheus.NewDesc("iu_store_up", "Whether the store answered the last scrape (1) or not (0).", nil, nil)
	descPool = prometheus.NewDesc("iu_store_pool_connections", "Store connections, by state (max, open, in_use, idle).", []string{"state"}, nil)
	descWait = prometheus.NewDesc("iu_store_pool_waits_total", "Times a caller waited for a store connection.", nil, nil)
	descWDur = prometheus.NewDesc("iu_store_pool_wait_seconds_total", "Time callers spent waiting for a store connection.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGate, descUp, descPool, descWait, descWDur} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, err := c.e.Gates(ctx)
	up := 1.0
	if err != nil {
		up = 0
	} else {
		for _, name := range iu.GateNames {
			v := 0.0
			if g.Get(name) {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descGate, prometheus.GaugeValue, v, name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	st := c.e.Store().PoolStats()
	for state, v := range map[string]int{"max": st.MaxOpen, "open": st.Open, "in_use": st.InUse, "idle": st.Idle} {
		ch <- prometheus.MustNewConstMetric(descPool, prometheus.GaugeValue, float64(v), state)
	}
	ch <- prometheus.MustNewConstMetric(descWait, prometheus.CounterValue, float64(st.WaitCount))
	ch <- prometheus.MustNewConstMetric(descWDur, prometheus.CounterValue, st.WaitDuration.Seconds())
}
