package iu

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Activity is what the intakes answered over the last hour: per 10-second
// bucket, how many requests ended in each outcome and how long they took
// from Submit to answer. The Batcher feeds it, so every intake (HTTP,
// NATS) is counted once, in the same place. It keeps nothing older than
// an hour and holds a fixed amount of memory; a process that restarts
// starts from nothing (the store keeps the history that matters).
type Activity struct {
	mu      sync.Mutex
	buckets [activityBuckets]activityBucket
}

const (
	// ActivityBucket is the width of one bucket of Activity.
	ActivityBucket  = 10 * time.Second
	activityBuckets = int(time.Hour / ActivityBucket)

	// Latencies go in log-scale bins, four per power of two (a bin is at
	// most 19% wide), from 2^14 ns (16 µs) to 2^37 ns (137 s); anything
	// outside falls in the first or the last.
	latMinShift = 14
	latOctaves  = 23
	latPerOct   = 4
	latBins     = latOctaves * latPerOct
)

// Outcome kinds, in display order.
const (
	OutcomeOK       = "ok" // a new instance
	OutcomeReplayed = "replayed"
	OutcomeShadow   = "shadow"
	OutcomeGated    = "gated"
	OutcomeRefused  = "refused" // any error: invalid, unknown template, conflict, store failure
)

// OutcomeCounts counts requests by outcome.
type OutcomeCounts struct {
	OK       int64 `json:"ok"`
	Replayed int64 `json:"replayed"`
	Shadow   int64 `json:"shadow"`
	Gated    int64 `json:"gated"`
	Refused  int64 `json:"refused"`
}

// Total returns the number of requests counted.
func (c OutcomeCounts) Total() int64 { return c.OK + c.Replayed + c.Shadow + c.Gated + c.Refused }

func (c *OutcomeCounts) add(o OutcomeCounts) {
	c.OK += o.OK
	c.Replayed += o.Replayed
	c.Shadow += o.Shadow
	c.Gated += o.Gated
	c.Refused += o.Refused
}

type activityBucket struct {
	slot   int64 // which 10-second interval since the epoch this bucket holds
	counts OutcomeCounts
	lat    [latBins]uint32
}

// latBin returns the histogram bin of a latency.
func latBin(d time.Duration) int {
	ns := uint64(max(d, 1))
	oct := bits.Len64(ns) - 1 // ns is in [2^oct, 2^(oct+1))
	if oct < latMinShift {
		return 0
	}
	// The two bits below the leading one pick the quarter of the octave.
	b := (oct-latMinShift)*latPerOct + int(ns>>(oct-2)&3)
	return min(b, latBins-1)
}

// latUpper returns the upper edge of a bin: a latency estimated from the
// histogram is never below the true one.
func latUpper(b int) time.Duration {
	oct, q := b/latPerOct+latMinShift, b%latPerOct
	return time.Duration(uint64(1)<<oct + uint64(q+1)<<(oct-2))
}

// slotOf returns the 10-second interval t falls in.
func slotOf(t time.Time) int64 { return t.UnixNano() / int64(ActivityBucket) }

// bucket returns the bucket for slot, emptied first if it held an older
// interval. a.mu is held.
func (a *Activity) bucket(slot int64) *activityBucket {
	b := &a.buckets[slot%int64(activityBuckets)]
	if b.slot != slot {
		*b = activityBucket{slot: slot}
	}
	return b
}

// Record counts one request that ended at at with outcome o (one of the
// Outcome constants) after took.
func (a *Activity) Record(at time.Time, o string, took time.Duration) {
	a.mu.Lock()
	b := a.bucket(slotOf(at))
	countOutcome(&b.counts, o)
	b.lat[latBin(took)]++
	a.mu.Unlock()
}

func countOutcome(c *OutcomeCounts, o string) {
	switch o {
	case OutcomeOK:
		c.OK++
	case OutcomeReplayed:
		c.Replayed++
	case OutcomeShadow:
		c.Shadow++
	case OutcomeGated:
		c.Gated++
	default:
		c.Refused++
	}
}

// OutcomeOf classifies the answer to one request.
func OutcomeOf(o Outcome) string {
	switch {
	case o.Err != nil:
		return OutcomeRefused
	case o.Result.Replayed:
		return OutcomeReplayed
	case o.Result.Status == StatusOK:
		return OutcomeOK
	case o.Result.Status == StatusShadow:
		return OutcomeShadow
	case o.Result.Status == StatusGated:
		return OutcomeGated
	}
	return OutcomeRefused
}

// recordUnits counts the answers of units that ended at at, under one lock:
// the batcher calls it once per transaction, not once per request. A unit
// failed as a whole (err) counts every request refused.
func (a *Activity) recordUnits(at time.Time, units []*unit, err error) {
	a.mu.Lock()
	b := a.bucket(slotOf(at))
	for _, u := range units {
		bin := latBin(at.Sub(u.at))
		for _, o := range u.outs {
			if err != nil {
				b.counts.Refused++
			} else {
				countOutcome(&b.counts, OutcomeOf(o))
			}
			b.lat[bin]++
		}
	}
	a.mu.Unlock()
}

// ActivityPoint is one bucket of a snapshot.
type ActivityPoint struct {
	Start  time.Time     `json:"start"`
	Counts OutcomeCounts `json:"counts"`
	// P99 is the 99th percentile of the bucket's latencies (the upper edge
	// of its histogram bin), 0 when the bucket is empty.
	P99 time.Duration `json:"p99"`
}

// ActivitySnapshot is Activity at one moment: the last hour, oldest bucket
// first, the newest being the one in progress.
type ActivitySnapshot struct {
	At       time.Time       `json:"at"`
	Points   []ActivityPoint `json:"points"`
	LastHour OutcomeCounts   `json:"last_hour"`
	lat      [][latBins]uint32
}

// Snapshot returns the last hour as of now. Buckets nobody recorded in
// are there with zero counts, so that a chart's time axis is regular.
func (a *Activity) Snapshot(now time.Time) ActivitySnapshot {
	s := ActivitySnapshot{At: now, Points: make([]ActivityPoint, activityBuckets), lat: make([][latBins]uint32, activityBuckets)}
	last := slotOf(now)
	a.mu.Lock()
	for i := range activityBuckets {
		slot := last - int64(activityBuckets-1-i)
		s.Points[i].Start = time.Unix(0, slot*int64(ActivityBucket)).UTC()
		if b := &a.buckets[slot%int64(activityBuckets)]; b.slot == slot {
			s.Points[i].Counts = b.counts
			s.lat[i] = b.lat
		}
	}
	a.mu.Unlock()
	for i := range s.Points {
		s.LastHour.add(s.Points[i].Counts)
		s.Points[i].P99 = quantile(&s.lat[i], 0.99)
	}
	return s
}

// Recent returns the points of the last d (at least one bucket).
func (s ActivitySnapshot) Recent(d time.Duration) []ActivityPoint {
	n := min(max(int(d/ActivityBucket), 1), len(s.Points))
	return s.Points[len(s.Points)-n:]
}

// Summary sums the last d: the counts, the requests per second over the
// time the window covers (the newest bucket only as far as it has
// filled), and the 99th percentile latency of all requests in the window.
func (s ActivitySnapshot) Summary(d time.Duration) (counts OutcomeCounts, perSecond float64, p99 time.Duration) {
	n := min(max(int(d/ActivityBucket), 1), len(s.Points))
	var h [latBins]uint32
	for i := len(s.Points) - n; i < len(s.Points); i++ {
		counts.add(s.Points[i].Counts)
		for j := range h {
			h[j] += s.lat[i][j]
		}
	}
	if n > 0 {
		filling := min(max(s.At.Sub(s.Points[len(s.Points)-1].Start), 0), ActivityBucket)
		if span := time.Duration(n-1)*ActivityBucket + filling; span > 0 {
			perSecond = float64(counts.Total()) / span.Seconds()
		}
	}
	return counts, perSecond, quantile(&h, 0.99)
}

// quantile returns the upper edge of the bin that holds quantile q of h,
// or 0 for an empty histogram.
func quantile(h *[latBins]uint32, q float64) time.Duration {
	var total uint64
	for _, c := range h {
		total += uint64(c)
	}
	if total == 0 {
		return 0
	}
	rank := min(max(uint64(math.Ceil(q*float64(total))), 1), total)
	var seen uint64
	for b, c := range h {
		seen += uint64(c)
		if seen >= rank {
			return latUpper(b)
		}
	}
	return latUpper(latBins - 1)
}
