package iu_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

func readTemplate(t *testing.T, path string) *iu.Template {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := iu.ParseTemplateFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// instanceOf is what the store gives back for an auto instance of tpl made
// by ev: the template's own graph.
func instanceOf(tpl *iu.Template, ev *iu.Event) *iu.Instance {
	key := iu.AutoInstanceKey("25000x-bulk", iu.IdempotencyKey(tpl.Key, ev.Source, ev.ID))
	return &iu.Instance{
		Key: key, Title: tpl.Title, Digest: tpl.Digest, TemplateKey: tpl.Key, TemplateDigest: tpl.Digest,
		Actor: "iu-core-25000x-bulk", Mode: iu.ModeAuto, Event: ev, Slots: tpl.Slots,
		CreatedAt: iu.TimeOf(time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)),
	}
}

var checklistItem = regexp.MustCompile(`^(\d+)\. \[ \] (.*?)(?: _\(after ([\d, ]+)\)_)?$`)

func TestRenderChecklist(t *testing.T) {
	tpl := readTemplate(t, "examples/templates/onboarding.yaml")
	ev := &iu.Event{ID: "25000b00-0000-0000-0000-000000000001", Source: iu.DefaultSource, Type: "bulk.scaleout", Subject: "Ada Lovelace",
		Data: json.RawMessage(`{"manager": "Charles Babbage", "team": "analytics", "start_date": "2025-04-07"}`)}
	rec := instanceOf(tpl, ev)
	r, err := iu.RenderInstance(rec, tpl.Pieces)
	if err != nil {
		t.Fatal(err)
	}
	if r.Format != "checklist" || r.InstanceKey != rec.Key || r.TemplateKey != tpl.Key {
		t.Errorf("format %q, instance %q, template %q", r.Format, r.InstanceKey, r.TemplateKey)
	}
	lines := strings.Split(r.Text, "\n")
	if lines[0] != "# Employee onboarding: Ada Lovelace" {
		t.Errorf("title line %q", lines[0])
	}
	// Number every item, and check that each comes after what it depends on.
	number := map[string]int{} // slot id -> item number, by matching bodies
	// A body of several lines continues its item on lines indented to
	// the text; join them so that the item's "after" note is on its line.
	var joined []string
	for _, l := range lines {
		if c, ok := strings.CutPrefix(l, "       "); ok && len(joined) > 0 && checklistItem.MatchString(joined[len(joined)-1]) {
			joined[len(joined)-1] += " " + c
			continue
		}
		joined = append(joined, l)
	}
	var items []string
	afters := 0
	for _, l := range joined {
		m := checklistItem.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n != len(items)+1 {
			t.Errorf("item %q is numbered %d, want %d", l, n, len(items)+1)
		}
		items = append(items, m[2])
		if m[3] != "" {
			afters++
			for _, d := range strings.Split(m[3], ", ") {
				if k, _ := strconv.Atoi(d); k < 1 || k >= n {
					t.Errorf("item %d comes after item %s, which is not before it", n, d)
				}
			}
		}
	}
	if len(items) != 8 || afters != 7 {
		t.Fatalf("%d checklist items, %d with dependencies; want 8 and 7:\n%s", len(items), afters, r.Text)
	}
	for n, i := range iu.TopoOrder(tpl.Slots) {
		number[tpl.Slots[i].ID] = n + 1
	}
	for _, s := range tpl.Slots {
		for _, a := range s.After {
			if number[a] >= number[s.ID] {
				t.Errorf("slot %s (item %d) comes after %s (item %d)", s.ID, number[s.ID], a, number[a])
			}
		}
	}
	if !strings.HasPrefix(items[0], "Confirm that Ada Lovelace has signed") || !strings.HasPrefix(items[7], "30-day check-in: Charles Babbage and Ada Lovelace") {
		t.Errorf("first and last items %q, %q", items[0], items[7])
	}
	for _, w := range []string{"Charles Babbage", "analytics", "2025-04-07"} {
		if !strings.Contains(r.Text, w) {
			t.Errorf("the checklist does not show %q from the event data", w)
		}
	}
	for _, bad := range []string{"<no value>", "{{", "}}"} {
		if strings.Contains(r.Text, bad) {
			t.Errorf("the checklist shows %q:\n%s", bad, r.Text)
		}
	}
	if !strings.HasSuffix(r.Text, "---\n_"+rec.Key+", from "+tpl.Key+" ("+tpl.Digest.String()+")_\n") {
		t.Errorf("footer missing:\n%s", r.Text)
	}
	golden(t, filepath.Join("testdata", "render", "onboarding.md"), r.Text)
}

func TestRenderDocument(t *testing.T) {
	tpl := readTemplate(t, "examples/templates/status-report.yaml")
	ev := &iu.Event{ID: "25000b10-0000-0000-0000-000000000001", Source: iu.DefaultSource, Type: "bulk.scaleout", Subject: "Checkout revamp",
		Data: json.RawMessage(`{"project":"checkout-revamp","week":"2025-W14","owner":"Ada Lovelace","status":"green","milestone":"beta launch"}`)}
	rec := instanceOf(tpl, ev)
	r, err := iu.RenderInstance(rec, tpl.Pieces)
	if err != nil {
		t.Fatal(err)
	}
	if r.Format != "markdown" {
		t.Errorf("format %q", r.Format)
	}
	if !strings.HasPrefix(r.Text, "# Weekly status report: Checkout revamp\n\n**Project:** checkout-revamp · **Week:** 2025-W14 · **Owner:** Ada Lovelace") {
		t.Errorf("document starts:\n%s", r.Text)
	}
	var headings []string
	for _, l := range strings.Split(r.Text, "\n") {
		if h, ok := strings.CutPrefix(l, "## "); ok {
			headings = append(headings, h)
		}
		if checklistItem.MatchString(l) {
			t.Errorf("a document has a checklist item: %q", l)
		}
	}
	if want := []string{"Summary", "Highlights", "Progress against milestones", "Risks and blockers", "Asks", "Next week"}; !slices.Equal(headings, want) {
		t.Errorf("sections %q, want %q", headings, want)
	}
	// Each piece is a paragraph of its own.
	if !strings.Contains(r.Text, "\n\n## Highlights\n\n") || !strings.Contains(r.Text, "| beta launch | | green |") {
		t.Errorf("paragraphs not separated or table not filled:\n%s", r.Text)
	}
	if i, j := strings.Index(r.Text, "_Prepared by Ada Lovelace"), strings.Index(r.Text, "\n---\n"); i < 0 || j < i {
		t.Errorf("the footer piece is not last before the instance line:\n%s", r.Text)
	}
	if strings.Contains(r.Text, "<no value>") || strings.Contains(r.Text, "{{") {
		t.Errorf("unfilled placeholder:\n%s", r.Text)
	}
	golden(t, filepath.Join("testdata", "render", "status-report.md"), r.Text)
}

func TestRenderPlaceholders(t *testing.T) {
	tpl, err := iu.ParseTemplateFile("t.yaml", []byte(`key: tpl:note:vars/v1
pieces:
  - id: all
    kind: text
    body: "{{ .instance }}|{{ .template }}|{{ .actor }}|{{ .event.id }}|{{ .event.type }}|{{ .event.source }}|{{ .subject }}|{{ .data.n }}|{{ .data.list }}|{{ if .data.flag }}on{{ else }}off{{ end }}"
`))
	if err != nil {
		t.Fatal(err)
	}
	ev := &iu.Event{ID: "e1", Source: "src", Type: "typ", Subject: "Sub", Data: json.RawMessage(`{"n": 12345678901234567890, "list": ["a", "b"], "flag": false}`)}
	rec := instanceOf(tpl, ev)
	rec.Title = ""
	r, err := iu.RenderInstance(rec, tpl.Pieces)
	if err != nil {
		t.Fatal(err)
	}
	// A kind other than wf renders as a document; with no title the key
	// names it; large numbers keep their digits.
	want := "# tpl:note:vars/v1: Sub\n\n" + rec.Key + "|tpl:note:vars/v1|iu-core-25000x-bulk|e1|typ|src|Sub|12345678901234567890|[a b]|off\n\n"
	if r.Format != "markdown" || !strings.HasPrefix(r.Text, want) {
		t.Errorf("got\n%q\nwant prefix\n%q", r.Text, want)
	}

	// A manual instance has no event: the title has no subject, and the
	// event's placeholders are empty.
	rec.Event, rec.Mode = nil, iu.ModeManual
	r, err = iu.RenderInstance(rec, tpl.Pieces)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Text, "# tpl:note:vars/v1\n\n"+rec.Key+"|tpl:note:vars/v1|iu-core-25000x-bulk|") {
		t.Errorf("manual instance:\n%s", r.Text)
	}
}

func TestRenderErrors(t *testing.T) {
	tpl := readTemplate(t, "examples/templates/onboarding.yaml")
	ev := &iu.Event{ID: "1", Source: "s", Type: "t", Subject: "Ada", Data: json.RawMessage(`{}`)}

	// A piece missing from the store is named, with what to run.
	pieces := make(map[iu.Digest]iu.Piece)
	for id, p := range tpl.Pieces {
		pieces[id] = p
	}
	delete(pieces, tpl.Slots[4].Piece)
	_, err := iu.RenderInstance(instanceOf(tpl, ev), pieces)
	if !errors.Is(err, iu.ErrNotFound) || !strings.Contains(err.Error(), `slot "`+tpl.Slots[4].ID+`"`) || !strings.Contains(err.Error(), "iu verify") {
		t.Errorf("missing piece: %v", err)
	}

	// A body that parses but cannot be filled names its slot.
	bad, err := iu.ParseTemplateFile("t.yaml", []byte("key: tpl:wf:x/v1\npieces:\n  - {id: a, kind: step, body: '{{ index .subject 99 }}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iu.RenderInstance(instanceOf(bad, ev), bad.Pieces); !errors.Is(err, iu.ErrInvalidInput) || !strings.Contains(err.Error(), `slot "a"`) {
		t.Errorf("unfillable body: %v", err)
	}
}

// TestRenderNullData: "data": null is how many producers say "no data"; it
// should render like an event without data.
func TestRenderNullData(t *testing.T) {
	tpl := readTemplate(t, "examples/templates/onboarding.yaml")
	ev := &iu.Event{ID: "1", Source: "s", Type: "t", Subject: "Ada", Data: json.RawMessage(`null`)}
	r, err := iu.RenderInstance(instanceOf(tpl, ev), tpl.Pieces)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Text, "Confirm that Ada has signed") {
		t.Errorf("rendering:\n%s", r.Text)
	}
}

// TestRenderIsBounded: a template's text runs over data that producers
// send, so what one rendering may do is bounded. Constructs with no bound
// are refused when the template is published; loops and output are
// bounded when it renders.
func TestRenderIsBounded(t *testing.T) {
	piece := func(body string) []byte {
		return []byte("key: tpl:wf:x/v1\npieces:\n  - id: a\n    kind: step\n    body: '" + body + "'\n")
	}
	for body, want := range map[string]string{
		`{{ printf "%999999999d" 1 }}`:                      "uses printf",
		`{{ println .subject }}`:                            "uses println",
		`{{ define "x" }}y{{ end }}z`:                       "defines a template",
		`{{ block "x" . }}y{{ end }}`:                       "defines a template",
		`{{ template "x" }}`:                                `calls template "x"`,
		`{{ if .data.a }}{{ print 1 }}{{ end }}`:            "uses print",
		`{{ range .data.a }}{{ (printf "%d" 1) }}{{ end }}`: "uses printf",
	} {
		_, err := iu.ParseTemplateFile("t.yaml", piece(body))
		if !errors.Is(err, iu.ErrInvalidTemplate) || !strings.Contains(err.Error(), want) {
			t.Errorf("publishing %s: %v, want ErrInvalidTemplate saying %q", body, err, want)
		}
	}

	xs := make([]string, 2000)
	for i := range xs {
		xs[i] = strconv.Itoa(i)
	}
	data := json.RawMessage(`{"x":[` + strings.Join(xs, ",") + `]}`)
	ev := &iu.Event{ID: "1", Source: "s", Type: "t", Data: data}
	for body, want := range map[string]string{
		// 2000^3 iterations that write nothing: the loop bound stops it.
		`{{ range .data.x }}{{ range $.data.x }}{{ range $.data.x }}{{ end }}{{ end }}{{ end }}`: "loop iterations",
		// 2000^2 writes of 2000 bytes: the output bound stops it first.
		`{{ range .data.x }}{{ range $.data.x }}{{ $.data.x }}{{ end }}{{ end }}`: "bytes of text",
	} {
		tpl, err := iu.ParseTemplateFile("t.yaml", piece(body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = iu.RenderInstance(instanceOf(tpl, ev), tpl.Pieces)
		if !errors.Is(err, iu.ErrInvalidInput) || !strings.Contains(err.Error(), want) {
			t.Errorf("rendering %s: %v, want ErrInvalidInput saying %q", body, err, want)
		}
	}
	// Within the bounds, loops render as they always did.
	tpl, err := iu.ParseTemplateFile("t.yaml", piece(`{{ range $i, $v := .data.x }}{{ if eq $i 1999 }}last {{ $v }}{{ end }}{{ end }}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := iu.RenderInstance(instanceOf(tpl, ev), tpl.Pieces)
	if err != nil || !strings.Contains(r.Text, "last 1999") {
		t.Fatalf("a loop within bounds: %v\n%v", err, r)
	}
}
