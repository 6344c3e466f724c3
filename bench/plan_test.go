package bench

import (
	"encoding/json"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu/intake"
)

// A plan's repeats name events already sent, about the share asked for;
// with no duplicates every event is new.
func TestPlan(t *testing.T) {
	t.Parallel()
	for _, dup := range []float64{0, 0.25, 0.9} {
		o := Options{Events: 20000, Duplicates: dup, Actor: "a"}
		p := newPlan(o)
		if !strings.HasPrefix(p.prefix, "a-") || p.prefix != "a-"+p.run || len(p.run) != 8 {
			t.Fatalf("run %q, prefix %q: want a-<8 hex digits>", p.run, p.prefix)
		}
		fresh, repeats := 0, 0
		for i, k := range p.ids {
			switch {
			case k == fresh:
				fresh++
			case k < fresh:
				repeats++
			default:
				t.Fatalf("dup %v: event %d is number %d, but only %d were sent before", dup, i, k, fresh)
			}
		}
		if got := float64(repeats) / float64(o.Events); got < dup-0.02 || got > dup+0.02 {
			t.Errorf("dup %v: %d repeats of %d events (%.3f)", dup, repeats, o.Events, got)
		}
	}
	if a, b := newPlan(Options{Events: 1}), newPlan(Options{Events: 1}); a.run == b.run {
		t.Errorf("two plans share the run id %s", a.run)
	}
}

// Both modes encode an event that iu's intake reads back whole: id,
// source, type, data, actor, prefix, and the template unless triggered.
func TestRequestDecodes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{Binary, Structured} {
		for _, triggered := range []bool{false, true} {
			o := Options{Events: 3, Mode: mode, Template: "tpl:wf:onboarding/v2", Triggered: triggered,
				Type: "com.example.t", Source: "iu:test", Actor: "someone"}
			p := newPlan(o)
			r := p.request(o, 2)
			h := nethttp.Header{"Content-Type": {r.contentType}}
			for _, kv := range r.headers {
				h.Set(kv[0], kv[1])
			}
			evs, got, err := intake.Decode(h, r.body)
			if err != nil || len(evs) != 1 || string(got) != mode {
				t.Fatalf("%s: decoded %d events in %s mode: %v", mode, len(evs), got, err)
			}
			ev, rt := evs[0].Event, evs[0].Routing
			if ev.ID != p.eventID(2) || ev.Source != o.Source || ev.Type != o.Type || rt.Actor != o.Actor || rt.Prefix != p.prefix {
				t.Errorf("%s: decoded %+v %+v", mode, ev, rt)
			}
			var data struct {
				Seq int    `json:"seq"`
				Run string `json:"run"`
			}
			if err := json.Unmarshal(ev.Data, &data); err != nil || data.Seq != 2 || data.Run != p.run {
				t.Errorf("%s: data %s: %v", mode, ev.Data, err)
			}
			if want := map[bool]string{false: o.Template, true: ""}[triggered]; rt.Template != want {
				t.Errorf("%s, triggered %v: template %q, want %q", mode, triggered, rt.Template, want)
			}
		}
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	if got := percentiles(nil); got != (Latency{}) {
		t.Errorf("no latencies: %+v", got)
	}
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[len(lat)-1-i] = time.Duration(i+1) * time.Millisecond // 100 ms .. 1 ms: unsorted
	}
	want := Latency{P50: 50, P95: 95, P99: 99, Max: 100, Mean: 50.5}
	if got := percentiles(lat); got != want {
		t.Errorf("1 to 100 ms: %+v, want %+v", got, want)
	}
	if lat[0] != 100*time.Millisecond {
		t.Error("percentiles sorted its argument")
	}
	if got := percentiles([]time.Duration{1234567}); got.P50 != 1.235 || got.P99 != 1.235 || got.Max != 1.235 {
		t.Errorf("one latency of 1.234567 ms: %+v, want 1.235 throughout", got)
	}
}
