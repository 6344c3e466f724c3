package examples_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
)

const (
	onboardingKey = "tpl:wf:onboarding/v2"
	statusKey     = "tpl:file:status-report/v2"
)

func templatesByKey(t *testing.T) map[string]*iu.Template {
	t.Helper()
	ts, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]*iu.Template, len(ts))
	for _, tpl := range ts {
		m[tpl.Key] = tpl
	}
	return m
}

func TestTemplates(t *testing.T) {
	ts, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tpl := range ts {
		keys = append(keys, tpl.Key)
	}
	// Sorted by file name: onboarding.yaml, status-report.yaml.
	if want := []string{onboardingKey, statusKey}; !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	for _, tc := range []struct {
		key, title string
		kinds      []string // the kinds allowed
	}{
		{onboardingKey, "Employee onboarding", []string{"step"}},
		{statusKey, "Weekly status report", []string{"section", "text", "field"}},
	} {
		tpl := templatesByKey(t)[tc.key]
		if tpl.Title != tc.title {
			t.Errorf("%s: title = %q, want %q", tc.key, tpl.Title, tc.title)
		}
		if tpl.EmitMode != iu.EmitLive {
			t.Errorf("%s: emit mode = %q, want live", tc.key, tpl.EmitMode)
		}
		if len(tpl.Slots) != 8 {
			t.Errorf("%s: %d pieces, want 8 (the seed and the benchmarks use 8-piece templates)", tc.key, len(tpl.Slots))
		}
		if tpl.Digest != iu.GraphDigest(tpl.Slots) {
			t.Errorf("%s: digest %s does not match its graph", tc.key, tpl.Digest)
		}
		edges := 0
		for _, s := range tpl.Slots {
			edges += len(s.After)
			p := tpl.Pieces[s.Piece]
			if !slices.Contains(tc.kinds, p.Kind) {
				t.Errorf("%s: slot %q has kind %q, want one of %q", tc.key, s.ID, p.Kind, tc.kinds)
			}
			if p.Kind == "section" && !strings.HasPrefix(p.Body, "## ") {
				t.Errorf("%s: section %q does not start with a ## heading: %q", tc.key, s.ID, p.Body)
			}
			if !strings.Contains(p.Body, "{{") {
				t.Errorf("%s: slot %q has no placeholder", tc.key, s.ID)
			}
		}
		if edges == 0 {
			t.Errorf("%s: no after: edges", tc.key)
		}
	}
}

func TestSeedPlan(t *testing.T) {
	p, err := examples.SeedPlan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Actor != "iu-core-25000x-bulk" || p.InstancePrefix != "25000x-bulk" {
		t.Errorf("actor, prefix = %q, %q", p.Actor, p.InstancePrefix)
	}
	if want := (iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}); fmt.Sprint(p.Gates) != fmt.Sprint(want) {
		t.Errorf("gates = %v, want %v", p.Gates, want)
	}
	if p.EventsFile != "" {
		t.Errorf("events_file = %q, want the events inline", p.EventsFile)
	}
	var got []string
	for _, e := range p.Events {
		got = append(got, e.Template+" "+e.Event.ID)
		if e.Event.Type != "bulk.scaleout" {
			t.Errorf("%s: type %q, want bulk.scaleout", e.Where, e.Event.Type)
		}
		if e.Event.Source != iu.DefaultSource {
			t.Errorf("%s: source %q, want the default %q", e.Where, e.Event.Source, iu.DefaultSource)
		}
		if e.Event.Subject == "" {
			t.Errorf("%s: no subject", e.Where)
		}
	}
	var want []string
	for i := 1; i <= 8; i++ {
		want = append(want, fmt.Sprintf("%s 25000b00-0000-0000-0000-%012d", onboardingKey, i))
	}
	for i := 1; i <= 4; i++ {
		want = append(want, fmt.Sprintf("%s 25000b10-0000-0000-0000-%012d", statusKey, i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("events =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkEventsFillTemplates(t, p.Events)
}

func TestNDJSONPlan(t *testing.T) {
	p, err := examples.NDJSONPlan()
	if err != nil {
		t.Fatal(err)
	}
	if p.EventsFile != "events.ndjson" || len(p.Events) != 0 {
		t.Fatalf("events_file = %q with %d inline events, want events.ndjson and none inline", p.EventsFile, len(p.Events))
	}
	if len(p.Gates) != 2 || !p.Gates[iu.GateComposer] || !p.Gates[iu.GateAutoInstantiate] {
		t.Errorf("gates = %v, want both full names set true", p.Gates)
	}
	f, name, err := examples.EventsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []iu.BulkEvent
	ids := make(map[string]bool)
	for e, err := range iu.ReadNDJSON(name, f) {
		if err != nil {
			t.Fatal(err)
		}
		if ids[e.Template+" "+e.Event.ID] {
			t.Errorf("%s: event %s is given twice", e.Where, e.Event.ID)
		}
		ids[e.Template+" "+e.Event.ID] = true
		if e.Event.Time.IsZero() || e.Event.Source == iu.DefaultSource {
			t.Errorf("%s: want an explicit time and source", e.Where)
		}
		events = append(events, e)
	}
	if len(events) != 20 {
		t.Errorf("%d events, want 20", len(events))
	}
	checkEventsFillTemplates(t, events)

	seed, err := examples.SeedPlan()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := examples.EventsFile(seed); err == nil {
		t.Error("EventsFile of a plan with inline events: no error")
	}
}

// checkEventsFillTemplates renders each event's instance and checks that
// every placeholder found a value: an example event that lacks a field its
// template uses would show "<no value>" to the reader.
func checkEventsFillTemplates(t *testing.T, events []iu.BulkEvent) {
	t.Helper()
	templates := templatesByKey(t)
	for _, e := range events {
		tpl, ok := templates[e.Template]
		if !ok {
			t.Errorf("%s: template %s is not an example", e.Where, e.Template)
			continue
		}
		var data map[string]any
		if err := json.Unmarshal(e.Event.Data, &data); err != nil {
			t.Errorf("%s: data is not a JSON object: %v", e.Where, err)
			continue
		}
		ev := e.Event
		rec := &iu.Instance{
			Key: "tpl-inst:auto:test-000000000000", Title: tpl.Title, Digest: tpl.Digest,
			TemplateKey: tpl.Key, TemplateDigest: tpl.Digest, Actor: "test", Mode: iu.ModeAuto,
			Event: &ev, Slots: tpl.Slots,
		}
		r, err := iu.RenderInstance(rec, tpl.Pieces)
		if err != nil {
			t.Errorf("%s: render: %v", e.Where, err)
			continue
		}
		if strings.Contains(r.Text, "<no value>") {
			t.Errorf("%s: a placeholder has no value in the event's data %s:\n%s", e.Where, e.Event.Data, r.Text)
		}
		if !strings.Contains(r.Text, ev.Subject) {
			t.Errorf("%s: subject %q does not appear in the rendering", e.Where, ev.Subject)
		}
	}
}
