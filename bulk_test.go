package iu_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

func TestParseBulkPlanSeed(t *testing.T) {
	const name = "examples/bulk/seed-25000x.yaml"
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := iu.ParseBulkPlan(name, data)
	if err != nil {
		t.Fatal(err)
	}
	if p.Actor != "iu-core-25000x-bulk" || p.InstancePrefix != "25000x-bulk" || p.EventsFile != "" {
		t.Errorf("actor %q, prefix %q, events_file %q", p.Actor, p.InstancePrefix, p.EventsFile)
	}
	if len(p.Gates) != 2 || !p.Gates[iu.GateComposer] || !p.Gates[iu.GateAutoInstantiate] {
		t.Errorf("gates %v", p.Gates)
	}
	if len(p.Events) != 12 {
		t.Fatalf("%d events, want 12", len(p.Events))
	}
	lines := strings.Split(string(data), "\n")
	for i, e := range p.Events {
		want := "tpl:wf:onboarding/v2"
		id := fmt.Sprintf("25000b00-0000-0000-0000-%012d", i+1)
		if i >= 8 {
			want, id = "tpl:file:status-report/v2", fmt.Sprintf("25000b10-0000-0000-0000-%012d", i-7)
		}
		if e.Template != want || e.Event.ID != id || e.Event.Type != "bulk.scaleout" || e.Event.Source != iu.DefaultSource {
			t.Errorf("event %d: %s %+v", i+1, e.Template, e.Event)
		}
		// Where names the line the event starts on.
		var line int
		if _, err := fmt.Sscanf(e.Where, name+":%d", &line); err != nil || line < 1 || line > len(lines) ||
			!strings.Contains(lines[line-1], "template: "+want) {
			t.Errorf("event %d: where %q does not point at its template line", i+1, e.Where)
		}
		if err := e.Event.Validate(); err != nil {
			t.Errorf("event %d: %v", i+1, err)
		}
	}
	var d map[string]string
	if err := json.Unmarshal(p.Events[0].Event.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d["manager"] != "Charles Babbage" || d["team"] != "analytics" || d["start_date"] != "2025-04-07" {
		t.Errorf("first event's data %s", p.Events[0].Event.Data)
	}
}

func TestParseBulkPlan(t *testing.T) {
	p, err := iu.ParseBulkPlan("p.yaml", []byte(`
actor: ops@example.com
gates: {composer_enabled: true, iu_core.auto_instantiate_enabled: false}
events:
  - template: tpl:wf:onboarding/v2
    id: e-1
    type: hr.hired
    source: hr:workday
    subject: Ada Lovelace
    time: 2025-04-01T09:30:00Z
    data:
      manager: Charles
      skills: [math, poetry]
      level: 3
      remote: true
      notes: null
  - {template: "tpl:file:status-report/v2", id: "2", type: t}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Prefix() != "ops@example.com" {
		t.Errorf("instance prefix %q, want the actor by default", p.Prefix())
	}
	if fmt.Sprint(p.Gates) != fmt.Sprint(iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: false}) {
		t.Errorf("gates %v, want full names", p.Gates)
	}
	e := p.Events[0]
	if e.Event.Source != "hr:workday" || e.Event.Subject != "Ada Lovelace" || !e.Event.Time.Equal(time.Date(2025, 4, 1, 9, 30, 0, 0, time.UTC)) {
		t.Errorf("first event %+v", e.Event)
	}
	if got, want := string(e.Event.Data), `{"level":3,"manager":"Charles","notes":null,"remote":true,"skills":["math","poetry"]}`; got != want {
		t.Errorf("data %s, want %s", got, want)
	}
	if e.Where != "p.yaml:5" || p.Events[1].Where != "p.yaml:17" {
		t.Errorf("where %q and %q", e.Where, p.Events[1].Where)
	}
	if p.Events[1].Event.Source != iu.DefaultSource || p.Events[1].Event.Data != nil {
		t.Errorf("second event %+v: want the default source and no data", p.Events[1].Event)
	}

	// JSON is YAML too.
	j, err := iu.ParseBulkPlan("p.json", []byte(`{"actor": "a", "instance_prefix": "b", "events_file": "events.ndjson"}`))
	if err != nil || j.EventsFile != "events.ndjson" || j.InstancePrefix != "b" || len(j.Gates) != 0 {
		t.Errorf("JSON plan: %+v, %v", j, err)
	}
}

func TestParseBulkPlanErrors(t *testing.T) {
	const ev = "\n  - {template: 'tpl:wf:x/v1', id: '1', type: t}\n"
	for _, tc := range []struct {
		name, plan string
		sentinel   error
		want       []string
	}{
		{"empty", "  \n", iu.ErrInvalidInput, []string{"empty plan"}},
		{"unknown field", "actor: a\nactorr: b\nevents:" + ev, iu.ErrInvalidInput, []string{"line 2: unknown field actorr"}},
		{"both events and file", "actor: a\nevents_file: e.ndjson\nevents:" + ev, iu.ErrInvalidInput, []string{"either events", "not both"}},
		{"neither", "actor: a\n", iu.ErrInvalidInput, []string{"either events", "not neither"}},
		{"empty list", "actor: a\nevents: []\n", iu.ErrInvalidInput, []string{"either events"}},
		{"bad gate", "actor: a\ngates: {composer: true}\nevents:" + ev, iu.ErrInvalidInput, []string{`gates: unknown gate "composer"`, "iu_core.composer_enabled"}},
		{"gate not a bool", "actor: a\ngates: {composer_enabled: maybe}\nevents:" + ev, iu.ErrInvalidInput, []string{"line 2: ", "maybe"}},
		{"gates not a mapping", "actor: a\ngates: [composer_enabled]\nevents:" + ev, iu.ErrInvalidInput, []string{"line 2: "}},
		{"missing actor", "events:" + ev, iu.ErrInvalidInput, []string{"actor is required"}},
		{"actor with a space", "actor: a b\nevents:" + ev, iu.ErrInvalidInput, []string{`actor "a b"`, "no spaces"}},
		{"bad prefix", "actor: a\ninstance_prefix: \"x\\ty\"\nevents:" + ev, iu.ErrInvalidInput, []string{"instance prefix"}},
		{"event without id", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', type: t}\n", iu.ErrInvalidEvent, []string{"p.yaml:3: ", "id is required"}},
		{"event without type", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1'}\n", iu.ErrInvalidEvent, []string{"p.yaml:3: ", "type is required"}},
		{"event without template", "actor: a\nevents:\n  - {id: '1', type: t}\n", iu.ErrInvalidEvent, []string{"p.yaml:3: ", "template is required"}},
		{"event with a bad template", "actor: a\nevents:\n  - {template: 'wf:x', id: '1', type: t}\n", iu.ErrInvalidEvent, []string{"p.yaml:3: ", `malformed template key "wf:x"`}},
		{"unknown event field", "actor: a\nevents:\n  - {tempalte: 'tpl:wf:x/v1', id: '1', type: t}\n", iu.ErrInvalidInput, []string{"line 3: event 1: ", `unknown field "tempalte"`}},
		{"event not a mapping", "actor: a\nevents:\n  - e1\n", iu.ErrInvalidInput, []string{"line 3: event 1: ", "want a mapping"}},
		{"bad time", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, time: yesterday}\n", iu.ErrInvalidInput, []string{"line 3: event 1: time"}},
		{"id not a string", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: [1], type: t}\n", iu.ErrInvalidInput, []string{"line 3: event 1: id"}},
		{"data not JSON", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, data: {n: .inf}}\n", iu.ErrInvalidInput, []string{"line 3: event 1: data"}},
		{"second event bad", "actor: a\nevents:" + ev + "  - {template: 'tpl:wf:x/v1', id: '', type: t}\n", iu.ErrInvalidEvent, []string{"p.yaml:4: ", "id is required"}},
		{"control character in subject", "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, subject: \"a\\u0007\"}\n", iu.ErrInvalidEvent, []string{"p.yaml:3: ", "subject contains a control character"}},
		{"not YAML", "actor: [\n", iu.ErrInvalidInput, []string{"line "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := iu.ParseBulkPlan("p.yaml", []byte(tc.plan))
			if err == nil {
				t.Fatalf("parsed %+v, want an error", p)
			}
			if !errors.Is(err, tc.sentinel) || iu.ErrorCode(err) != iu.CodeInvalid {
				t.Errorf("error %v: want %v (code invalid), got code %q", err, tc.sentinel, iu.ErrorCode(err))
			}
			if !strings.HasPrefix(err.Error(), "p.yaml") {
				t.Errorf("message %q does not start with the file name", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestParseBulkPlanRefusesAmbiguousPlans holds defects found while writing
// these tests, fixed since: each must stay fixed.
func TestParseBulkPlanRefusesAmbiguousPlans(t *testing.T) {
	t.Run("one gate given twice", func(t *testing.T) {
		// Both spellings name iu_core.composer_enabled; which value wins
		// depends on Go's map order, so a run may open or close the gate.
		plan := "actor: a\ngates: {composer_enabled: true, iu_core.composer_enabled: false}\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t}\n"
		_, err := iu.ParseBulkPlan("p.yaml", []byte(plan))
		if !errors.Is(err, iu.ErrInvalidInput) || !strings.Contains(err.Error(), "iu_core.composer_enabled") {
			t.Errorf("error %v: want ErrInvalidInput naming the gate", err)
		}
	})
	t.Run("an event field given twice", func(t *testing.T) {
		plan := "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', id: '2', type: t}\n"
		_, err := iu.ParseBulkPlan("p.yaml", []byte(plan))
		if !errors.Is(err, iu.ErrInvalidInput) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("error %v: want ErrInvalidInput at line 3", err)
		}
	})
	t.Run("a second document", func(t *testing.T) {
		plan := "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t}\n---\nactor: b\nevents:\n  - {template: 'tpl:wf:x/v1', id: '2', type: t}\n"
		_, err := iu.ParseBulkPlan("p.yaml", []byte(plan))
		if !errors.Is(err, iu.ErrInvalidInput) {
			t.Errorf("error %v: want ErrInvalidInput", err)
		}
	})
	t.Run("a plan holding only a comment", func(t *testing.T) {
		_, err := iu.ParseBulkPlan("p.yaml", []byte("# nothing yet\n"))
		if !errors.Is(err, iu.ErrInvalidInput) || !strings.Contains(err.Error(), "empty plan") {
			t.Errorf("error %v: want ErrInvalidInput saying the plan is empty", err)
		}
	})
	t.Run("a date in data", func(t *testing.T) {
		// The same event as an NDJSON line keeps "2025-04-07"; from YAML it
		// becomes "2025-04-07T00:00:00Z" and renders so in a checklist.
		plan := "actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, data: {start_date: 2025-04-07}}\n"
		p, err := iu.ParseBulkPlan("p.yaml", []byte(plan))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(p.Events[0].Event.Data); got != `{"start_date":"2025-04-07"}` {
			t.Errorf("data %s", got)
		}
	})
}

func TestParseEventLine(t *testing.T) {
	be, err := iu.ParseEventLine("e.ndjson:3", []byte(`{"template":"tpl:wf:onboarding/v2","id":"hire-1","type":"hr.hired","subject":"Ada","time":"2025-05-06T09:03:00+02:00","data":{"b":1, "a":[true]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if be.Template != "tpl:wf:onboarding/v2" || be.Where != "e.ndjson:3" || be.Event.ID != "hire-1" || be.Event.Type != "hr.hired" ||
		be.Event.Subject != "Ada" || be.Event.Source != iu.DefaultSource || !be.Event.Time.Equal(time.Date(2025, 5, 6, 7, 3, 0, 0, time.UTC)) {
		t.Errorf("event %+v", be)
	}
	if string(be.Event.Data) != `{"b":1, "a":[true]}` {
		t.Errorf("data %s: want it as written (the payload digest canonicalises it)", be.Event.Data)
	}
	for _, tc := range []struct{ name, line, want string }{
		{"not JSON", `{"template":`, "unexpected end of JSON"},
		{"syntax", `{"template" "x"}`, "invalid JSON at byte"},
		{"unknown field", `{"template":"tpl:wf:x/v1","id":"1","type":"t","extra":1}`, `unknown field "extra"`},
		{"two values", `{"template":"tpl:wf:x/v1","id":"1","type":"t"} {}`, "more than one JSON value"},
		{"id a number", `{"template":"tpl:wf:x/v1","id":1,"type":"t"}`, "id: want string, got JSON number"},
		{"no template", `{"id":"1","type":"t"}`, "template is required"},
		{"bad template", `{"template":"tpl:wf:X/v1","id":"1","type":"t"}`, "malformed template key"},
		{"no id", `{"template":"tpl:wf:x/v1","type":"t"}`, "id is required"},
		{"no type", `{"template":"tpl:wf:x/v1","id":"1"}`, "type is required"},
		{"bad time", `{"template":"tpl:wf:x/v1","id":"1","type":"t","time":"today"}`, "e.ndjson:3: "},
		{"an array", `[1]`, "got JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := iu.ParseEventLine("e.ndjson:3", []byte(tc.line))
			if !errors.Is(err, iu.ErrInvalidEvent) || iu.ErrorCode(err) != iu.CodeInvalid {
				t.Fatalf("ParseEventLine = %+v, %v; want ErrInvalidEvent", be, err)
			}
			if !strings.HasPrefix(err.Error(), "e.ndjson:3: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("message %q: want e.ndjson:3 and %q", err, tc.want)
			}
		})
	}
}

func TestReadNDJSON(t *testing.T) {
	input := "\n" +
		`{"template":"tpl:wf:x/v1","id":"1","type":"t"}` + "\r\n" +
		"   \n" +
		`  {"template":"tpl:wf:x/v1","id":"2","type":"t","source":"s"}  ` + "\n" +
		`{"template":"tpl:wf:x/v1","id":"3","type":"t"}` // no final newline
	var got []string
	for be, err := range iu.ReadNDJSON("e.ndjson", strings.NewReader(input)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, be.Where+" "+be.Event.ID+" "+be.Event.Source)
	}
	if want := "e.ndjson:2 1 iu:cli|e.ndjson:4 2 s|e.ndjson:5 3 iu:cli"; strings.Join(got, "|") != want {
		t.Errorf("events %q, want %q", strings.Join(got, "|"), want)
	}

	// An error names the file and line, counting blank lines, and ends the
	// stream.
	bad := "\n\n" + `{"template":"tpl:wf:x/v1","id":"1","type":"t"}` + "\n" + `{"template":"tpl:wf:x/v1","type":"t"}` + "\n" + `{"template":"tpl:wf:x/v1","id":"3","type":"t"}` + "\n"
	var ids []string
	var errs []error
	for be, err := range iu.ReadNDJSON("e.ndjson", strings.NewReader(bad)) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, be.Event.ID)
	}
	if len(ids) != 1 || len(errs) != 1 || !errors.Is(errs[0], iu.ErrInvalidEvent) || !strings.HasPrefix(errs[0].Error(), "e.ndjson:4: ") {
		t.Errorf("events %q, errors %v; want one event, then one error at e.ndjson:4 and nothing after", ids, errs)
	}

	// The consumer may stop early.
	n := 0
	for range iu.ReadNDJSON("e.ndjson", strings.NewReader(input)) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("%d iterations after break", n)
	}

	// A read error is not an invalid event, and it is reported once.
	var failures []error
	for _, err := range iu.ReadNDJSON("e.ndjson", io.MultiReader(strings.NewReader(`{"template":"tpl:wf:x/v1","id":"1","type":"t"}`+"\n"), errReader{})) {
		if err != nil {
			failures = append(failures, err)
		}
	}
	if len(failures) != 1 {
		t.Fatalf("read errors: %v, want one", failures)
	}
	if err := failures[0]; errors.Is(err, iu.ErrInvalidEvent) || !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "read e.ndjson") {
		t.Errorf("read error: %v", err)
	}
}

var errDisk = errors.New("disk on fire")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errDisk }

// TestReadNDJSONStreams hands the reader one line at a time and expects each
// event before the next line is written: the file is never read whole.
func TestReadNDJSONStreams(t *testing.T) {
	pr, pw := io.Pipe()
	got := make(chan string)
	go func() {
		defer pw.Close()
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(pw, `{"template":"tpl:wf:x/v1","id":"%d","type":"t"}`+"\n", i)
			select {
			case id := <-got:
				if id != fmt.Sprint(i) {
					pw.CloseWithError(fmt.Errorf("got event %s after line %d", id, i))
					return
				}
			case <-time.After(5 * time.Second):
				pw.CloseWithError(fmt.Errorf("event %d did not arrive before the next line", i))
				return
			}
		}
	}()
	n := 0
	for be, err := range iu.ReadNDJSON("pipe", pr) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		got <- be.Event.ID
	}
	if n != 3 {
		t.Errorf("%d events, want 3", n)
	}
}

func TestReadNDJSONLineLimit(t *testing.T) {
	// The largest data allowed fits on a line, with its attributes.
	data := `"` + strings.Repeat("x", iu.MaxDataBytes-2) + `"`
	line := `{"template":"tpl:wf:x/v1","id":"1","type":"t","subject":"` + strings.Repeat("s", iu.MaxAttrBytes) + `","data":` + data + "}\n"
	n := 0
	for be, err := range iu.ReadNDJSON("big.ndjson", strings.NewReader("\n"+line)) {
		if err != nil {
			t.Fatal(err)
		}
		if len(be.Event.Data) != iu.MaxDataBytes {
			t.Errorf("data of %d bytes", len(be.Event.Data))
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d events", n)
	}

	// A longer line is refused by number, without reading it whole.
	long := `{"template":"tpl:wf:x/v1","id":"1","type":"t","data":"` + strings.Repeat("x", iu.MaxNDJSONLine) + `"}` + "\n"
	var errs []error
	events := 0
	for _, err := range iu.ReadNDJSON("big.ndjson", strings.NewReader(line+"\n"+long+line)) {
		if err != nil {
			errs = append(errs, err)
		} else {
			events++
		}
	}
	if events != 1 || len(errs) != 1 {
		t.Fatalf("%d events and errors %v; want 1 event, then one error", events, errs)
	}
	if !errors.Is(errs[0], iu.ErrInvalidEvent) || !strings.HasPrefix(errs[0].Error(), "big.ndjson:3: line is longer than") {
		t.Errorf("error %v: want ErrInvalidEvent at big.ndjson:3", errs[0])
	}
}

func TestBulkCounts(t *testing.T) {
	c := iu.BulkCounts{OK: 8, Replayed: 2, Shadow: 1, Gated: 3}
	if c.Total() != 14 {
		t.Errorf("Total = %d", c.Total())
	}
	b, err := json.Marshal(c)
	if err != nil || string(b) != `{"ok":8,"replayed":2,"shadow":1,"gated":3}` {
		t.Errorf("JSON %s, %v", b, err)
	}
}
