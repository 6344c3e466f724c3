package iu

import (
	"testing"
	"time"
)

// Every latency lands in a bin whose upper edge is at or above it and
// within a quarter octave of it (the estimate's resolution), and bins
// grow with the latency.
func TestLatencyBins(t *testing.T) {
	prev := 0
	for d := 20 * time.Microsecond; d < 100*time.Second; d = d*9/8 + 1 {
		b := latBin(d)
		if b < prev {
			t.Fatalf("latency %v: bin %d below the bin of a shorter latency (%d)", d, b, prev)
		}
		prev = b
		up := latUpper(b)
		if up < d || float64(up) > float64(d)*1.26 {
			t.Errorf("latency %v: bin %d's upper edge %v is not within [d, 1.25 d]", d, b, up)
		}
	}
	if latBin(0) != 0 || latBin(time.Nanosecond) != 0 || latBin(time.Hour) != latBins-1 {
		t.Errorf("out-of-range latencies: bins %d %d %d", latBin(0), latBin(time.Nanosecond), latBin(time.Hour))
	}
}

func TestActivitySnapshot(t *testing.T) {
	var a Activity
	t0 := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	// An hour ago and a bit: must have been forgotten by the end.
	a.Record(t0.Add(-61*time.Minute), OutcomeOK, time.Millisecond)
	// 100 requests in the last minute: 97 fast, 2 ok but slow, 1 refused.
	for i := range 100 {
		at := t0.Add(-time.Duration(i) * 500 * time.Millisecond)
		o, took := OutcomeOK, time.Millisecond
		switch {
		case i < 2:
			took = 80 * time.Millisecond
		case i == 2:
			o = OutcomeRefused
		case i < 10:
			o = OutcomeReplayed
		case i < 13:
			o = OutcomeShadow
		case i < 15:
			o = OutcomeGated
		}
		a.Record(at, o, took)
	}
	s := a.Snapshot(t0)
	if len(s.Points) != 360 {
		t.Fatalf("%d points, want 360 (an hour of 10 s buckets)", len(s.Points))
	}
	if !s.Points[359].Start.Equal(t0) || !s.Points[0].Start.Equal(t0.Add(-359*ActivityBucket)) {
		t.Errorf("points span %v .. %v", s.Points[0].Start, s.Points[359].Start)
	}
	want := OutcomeCounts{OK: 87, Replayed: 7, Shadow: 3, Gated: 2, Refused: 1}
	if s.LastHour != want {
		t.Errorf("last hour %+v, want %+v (the request of 61 minutes ago forgotten)", s.LastHour, want)
	}
	counts, rate, p99 := s.Summary(time.Minute)
	if counts != want {
		t.Errorf("last minute %+v, want %+v", counts, want)
	}
	// The newest bucket, [t0, t0+10s), has just begun: the window covers
	// the 50 s of the 5 buckets before it.
	if rate != 2.0 {
		t.Errorf("rate %.2f/s, want 100 requests over 50 s", rate)
	}
	// 5 s later, nothing more: 100 requests over 55 s.
	if _, rate, _ := a.Snapshot(t0.Add(5 * time.Second)).Summary(time.Minute); rate < 1.81 || rate > 1.82 {
		t.Errorf("5 s later: rate %.3f/s, want 100/55", rate)
	}
	if p99 < time.Millisecond || p99 > 80*time.Millisecond*5/4 {
		t.Errorf("p99 %v: want between 1 ms and the slow requests' 80 ms", p99)
	}
	// Two slow requests in a hundred: the 99th percentile is a slow one.
	if p99 < 80*time.Millisecond {
		t.Errorf("p99 %v below the slow requests' 80 ms", p99)
	}
	// Buckets 359 and 358 each hold a slow request; 357 only fast ones.
	if s.Points[359].P99 < 80*time.Millisecond || s.Points[357].P99 > 2*time.Millisecond || s.Points[300].P99 != 0 {
		t.Errorf("per-bucket p99: %v (a slow one), %v (fast ones), %v (empty)", s.Points[359].P99, s.Points[357].P99, s.Points[300].P99)
	}

	// An hour later everything is forgotten, and the ring is reused.
	later := t0.Add(time.Hour)
	a.Record(later, OutcomeGated, time.Millisecond)
	s = a.Snapshot(later)
	if s.LastHour != (OutcomeCounts{Gated: 1}) {
		t.Errorf("an hour later: %+v, want only the new gated request", s.LastHour)
	}
	if got := len(s.Recent(15 * time.Minute)); got != 90 {
		t.Errorf("Recent(15m) has %d points, want 90", got)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct {
		o    Outcome
		want string
	}{
		{Outcome{Result: Result{Status: StatusOK}}, OutcomeOK},
		{Outcome{Result: Result{Status: StatusOK, Replayed: true}}, OutcomeReplayed},
		{Outcome{Result: Result{Status: StatusShadow, Replayed: true}}, OutcomeReplayed},
		{Outcome{Result: Result{Status: StatusShadow}}, OutcomeShadow},
		{Outcome{Result: Result{Status: StatusGated}}, OutcomeGated},
		{Outcome{Err: Errorf(ErrInvalidEvent, "no id")}, OutcomeRefused},
	} {
		if got := OutcomeOf(c.o); got != c.want {
			t.Errorf("%+v: %s, want %s", c.o, got, c.want)
		}
	}
}

// Recording is on the answer path of every event: it must stay cheap.
func BenchmarkActivityRecord(b *testing.B) {
	var a Activity
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		a.Record(now, OutcomeOK, time.Duration(i)*time.Microsecond)
	}
}
