package bench

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Report is what Run measured; iu bench --json prints it as is, and the
// scripts in bench/ read its fields by their JSON names.
type Report struct {
	Target         string         `json:"target"`
	Mode           string         `json:"mode"` // binary, structured or direct
	Events         int            `json:"events"`
	Connections    int            `json:"connections"`
	DuplicateRatio float64        `json:"duplicate_ratio"`
	Seconds        float64        `json:"seconds"`
	EventsPerSec   float64        `json:"events_per_second"`
	LatencyMS      Latency        `json:"latency_ms"`
	Statuses       map[string]int `json:"statuses"` // answers by HTTP status: 201 made an instance, 200 replayed
	Errors         int            `json:"errors"`
	FirstError     string         `json:"first_error,omitempty"`
	Actor          string         `json:"actor"`
	InstancePrefix string         `json:"instance_prefix"`
}

// Latency holds the percentiles of the events' latencies, in milliseconds
// to the microsecond.
type Latency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// NATSReport is what RunNATS measured; iu bench --nats --json prints it as
// is.
type NATSReport struct {
	Target          string  `json:"target"`
	Stream          string  `json:"stream"`
	Subject         string  `json:"subject"`
	Mode            string  `json:"mode"`
	Events          int     `json:"events"`
	Distinct        int     `json:"distinct_events"` // valid events that are no repeat
	Invalid         int     `json:"invalid_events"`
	DuplicateRatio  float64 `json:"duplicate_ratio"`
	PublishSeconds  float64 `json:"publish_seconds"`
	PublishPerSec   float64 `json:"publish_events_per_second"`
	Waited          bool    `json:"waited"`
	EndToEndSeconds float64 `json:"end_to_end_seconds,omitempty"` // with Wait
	EventsPerSec    float64 `json:"events_per_second,omitempty"`  // with Wait
	Errors          int     `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
	Actor           string  `json:"actor"`
	InstancePrefix  string  `json:"instance_prefix"`
}

// results collects the answers of a run, from many goroutines.
type results struct {
	lat      []time.Duration // by the event's place in the run
	mu       sync.Mutex
	statuses map[string]int
	errors   int
	first    string
}

func newResults(n int) *results {
	return &results{lat: make([]time.Duration, n), statuses: map[string]int{}}
}

// record notes the i-th event's answer: a status, or an error.
func (r *results) record(i int, took time.Duration, status string, err error) {
	r.lat[i] = took
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.first == "" {
			r.first = err.Error()
		}
		return
	}
	r.statuses[status]++
}

// percentiles summarises lat; the q-th percentile is the smallest latency
// that at least a share q of the events did not exceed.
func percentiles(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
