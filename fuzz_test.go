package iu_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/iu-engine/iu"
)

// Every parser of outside input has a fuzz target. Each must never panic,
// must fail only with its documented sentinel and a message naming the
// input, and on success must return a value that keeps the domain's
// invariants and that the same input always yields.
//
//	go test -run=^$ -fuzz=FuzzParseTemplateFile -fuzztime=30s .

func addFiles(f *testing.F, patterns ...string) {
	f.Helper()
	n := 0
	for _, p := range patterns {
		files, err := filepath.Glob(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files match %q", patterns)
	}
}

func FuzzParseTemplateFile(f *testing.F) {
	addFiles(f, "examples/templates/*.yaml", "testdata/templates/*.yaml")
	f.Add([]byte(goodTemplate))
	f.Add([]byte(`{"key":"tpl:file:x/v1","pieces":[{"id":"a","kind":"text","body":"{{ .subject }}","after":["b"]},{"id":"b","kind":"text","body":"b"}]}`))
	f.Add([]byte("key: tpl:wf:x/v1\npieces:\n  - &p {id: a, kind: step, body: x}\n  - *p\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tpl, err := iu.ParseTemplateFile("f.yaml", data)
		if err != nil {
			if !errors.Is(err, iu.ErrInvalidTemplate) || iu.ErrorCode(err) != iu.CodeInvalid {
				t.Fatalf("error %v (code %q) is not ErrInvalidTemplate", err, iu.ErrorCode(err))
			}
			if !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("message %q does not name the file", err)
			}
			if _, again := iu.ParseTemplateFile("f.yaml", data); again == nil || again.Error() != err.Error() {
				t.Fatalf("parsing again: %v, first %v", again, err)
			}
			checkLines(t, err, data)
			return
		}
		checkTemplate(t, tpl)
		again, err := iu.ParseTemplateFile("f.yaml", data)
		if err != nil || !again.SameContent(tpl) || again.EmitMode != tpl.EmitMode || !reflect.DeepEqual(again.Pieces, tpl.Pieces) {
			t.Fatalf("parsing again gave another template (%v)", err)
		}
		// The parsed template, written out as JSON, is the same template.
		b, err := iu.TemplateFileJSON(tpl)
		if err != nil {
			t.Fatal(err)
		}
		back, err := iu.ParseTemplateFile("f.json", b)
		if err != nil {
			t.Fatalf("the template written as JSON does not parse: %v\n%s", err, b)
		}
		if !back.SameContent(tpl) || back.EmitMode != tpl.EmitMode || back.Key != tpl.Key {
			t.Fatalf("the template written as JSON parses as another:\n%s", b)
		}
	})
}

var lineRef = regexp.MustCompile(`(?:line |p\.yaml:)(\d+)\b`)

// checkLines checks that every line an error names is in the input. YAML
// breaks lines at CR, LF and CR LF, and at NEL, LS and PS.
func checkLines(t *testing.T, err error, data []byte) {
	t.Helper()
	s := string(data)
	if be, le := bytes.HasPrefix(data, []byte("\xfe\xff")), bytes.HasPrefix(data, []byte("\xff\xfe")); be || le {
		// yaml.v3 reads UTF-16 when the input starts with its BOM.
		u := make([]uint16, 0, len(data)/2)
		for i := 2; i+1 < len(data); i += 2 {
			if be {
				u = append(u, uint16(data[i])<<8|uint16(data[i+1]))
			} else {
				u = append(u, uint16(data[i+1])<<8|uint16(data[i]))
			}
		}
		s = string(utf16.Decode(u))
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := 1 + strings.Count(s, "\n") + strings.Count(s, "\r") + strings.Count(s, "\u0085") + strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
	for _, m := range lineRef.FindAllStringSubmatch(err.Error(), -1) {
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > lines {
			t.Fatalf("message %q names line %d of %d", err, n, lines)
		}
	}
}

// checkTemplate checks what Build promises of a template.
func checkTemplate(t *testing.T, tpl *iu.Template) {
	t.Helper()
	if _, err := iu.ParseTemplateKey(tpl.Key); err != nil {
		t.Fatalf("key: %v", err)
	}
	if tpl.EmitMode != iu.EmitLive && tpl.EmitMode != iu.EmitShadow {
		t.Fatalf("emit mode %q", tpl.EmitMode)
	}
	if len(tpl.Slots) == 0 || len(tpl.Slots) > iu.MaxSlots || len(tpl.Title) > iu.MaxTitle {
		t.Fatalf("%d slots, title of %d bytes", len(tpl.Slots), len(tpl.Title))
	}
	if tpl.Digest != iu.GraphDigest(tpl.Slots) {
		t.Fatalf("digest %s, graph digest %s", tpl.Digest, iu.GraphDigest(tpl.Slots))
	}
	index := make(map[string]int, len(tpl.Slots))
	used := make(map[iu.Digest]bool)
	for i, s := range tpl.Slots {
		if _, dup := index[s.ID]; dup || s.ID == "" {
			t.Fatalf("slot id %q empty or given twice", s.ID)
		}
		index[s.ID] = i
		p, ok := tpl.Pieces[s.Piece]
		if !ok || iu.PieceID(p.Kind, p.Body) != s.Piece {
			t.Fatalf("slot %q: piece %s missing or not its content's id", s.ID, s.Piece)
		}
		if strings.TrimSpace(p.Body) == "" || len(p.Body) > iu.MaxBodyBytes || p.Kind == "" {
			t.Fatalf("slot %q: kind %q, body of %d bytes", s.ID, p.Kind, len(p.Body))
		}
		used[s.Piece] = true
	}
	if len(used) != len(tpl.Pieces) {
		t.Fatalf("%d pieces, %d used", len(tpl.Pieces), len(used))
	}
	pos := make(map[string]int, len(tpl.Slots))
	for n, i := range iu.TopoOrder(tpl.Slots) {
		pos[tpl.Slots[i].ID] = n
	}
	for _, s := range tpl.Slots {
		seen := make(map[string]bool)
		for _, a := range s.After {
			if _, ok := index[a]; !ok || a == s.ID || seen[a] {
				t.Fatalf("slot %q: after %q is unknown, itself or repeated", s.ID, a)
			}
			seen[a] = true
			if pos[a] >= pos[s.ID] {
				t.Fatalf("slot %q comes after %q but is ordered before it: the graph has a cycle", s.ID, a)
			}
		}
	}
}

func FuzzParseBulkPlan(f *testing.F) {
	addFiles(f, "examples/bulk/*.yaml")
	for _, s := range []string{
		"actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, data: {a: [1, {b: null}], c: 2025-04-07}}\n",
		"actor: a\ninstance_prefix: p\ngates: {composer_enabled: false}\nevents_file: e.ndjson\n",
		`{"actor": "a", "events": [{"template": "tpl:file:x/v2", "id": "1", "type": "t", "time": "2025-01-01T00:00:00Z", "subject": "s"}]}`,
		"actor: a\nevents:\n  - {template: 'tpl:wf:x/v1', id: '1', type: t, data: {1: a, true: [x]}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := iu.ParseBulkPlan("p.yaml", data)
		if err != nil {
			if !errors.Is(err, iu.ErrInvalidInput) && !errors.Is(err, iu.ErrInvalidEvent) {
				t.Fatalf("error %v is neither ErrInvalidInput nor ErrInvalidEvent", err)
			}
			if !strings.HasPrefix(err.Error(), "p.yaml") {
				t.Fatalf("message %q does not name the file", err)
			}
			checkLines(t, err, data)
			return
		}
		if err := iu.CheckActor(p.Actor); err != nil {
			t.Fatal(err)
		}
		if err := iu.CheckPrefix(p.Prefix()); err != nil {
			t.Fatal(err)
		}
		if (len(p.Events) == 0) == (p.EventsFile == "") {
			t.Fatalf("%d events and events_file %q", len(p.Events), p.EventsFile)
		}
		for name := range p.Gates {
			if full, err := iu.ParseGateName(name); err != nil || full != name {
				t.Fatalf("gate %q is not a full gate name", name)
			}
		}
		for _, e := range p.Events {
			checkBulkEvent(t, e)
			if !strings.HasPrefix(e.Where, "p.yaml:") {
				t.Fatalf("where %q", e.Where)
			}
			// Every accepted event gets a well-formed instance key.
			key := iu.AutoInstanceKey(p.InstancePrefix, iu.IdempotencyKey(e.Template, e.Event.Source, e.Event.ID))
			if prefix := iu.AutoInstancePrefix(p.InstancePrefix); len(key) != len(prefix)+12 || !strings.HasPrefix(key, prefix) {
				t.Fatalf("instance key %q", key)
			}
		}
		again, err := iu.ParseBulkPlan("p.yaml", data)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("parsing again gave another plan (%v):\n%+v\n%+v", err, again, p)
		}
	})
}

// checkBulkEvent checks what a parsed event promises: it would pass the
// engine's own validation.
func checkBulkEvent(t *testing.T, e iu.BulkEvent) {
	t.Helper()
	if _, err := iu.ParseTemplateKey(e.Template); err != nil {
		t.Fatalf("template: %v", err)
	}
	if err := e.Event.Validate(); err != nil {
		t.Fatalf("a parsed event is invalid: %v", err)
	}
	if e.Event.Source == "" {
		t.Fatal("no source")
	}
	if len(e.Event.Data) > 0 && !json.Valid(e.Event.Data) {
		t.Fatalf("data %q is not JSON", e.Event.Data)
	}
}

func FuzzParseEventLine(f *testing.F) {
	events, err := os.ReadFile("examples/bulk/events.ndjson")
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range bytes.Split(events, []byte("\n")) {
		f.Add(l)
	}
	for _, s := range []string{
		`{"template":"tpl:wf:x/v1","id":"1","type":"t","data":null}`,
		`{"template":"tpl:wf:x/v1","id":"1","type":"t","time":"2025-05-06T09:03:00.123456789+02:00","data":[1,"2",{"3":4.50}]}`,
		`{"template":"tpl:wf:x/v1","id":"1","type":"t"} {}`,
		`{"template":"tpl:wf:x/v1","id":"1","type":"t","extra":1}`,
		`{"template":"tpl:wf:x/v1","id":1,"type":"t"}`,
		`{"TEMPLATE":"tpl:wf:x/v1","Id":"1","type":"t"}`,
		`[]`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		be, err := iu.ParseEventLine("x:1", line)
		if err != nil {
			if !errors.Is(err, iu.ErrInvalidEvent) || !strings.HasPrefix(err.Error(), "x:1: ") {
				t.Fatalf("error %v: want ErrInvalidEvent naming x:1", err)
			}
			return
		}
		checkBulkEvent(t, be)
		if be.Where != "x:1" {
			t.Fatalf("where %q", be.Where)
		}
		// Written out again, the event reads back the same.
		out := map[string]any{"template": be.Template, "id": be.Event.ID, "type": be.Event.Type, "source": be.Event.Source, "subject": be.Event.Subject}
		if !be.Event.Time.IsZero() {
			out["time"] = be.Event.Time
		}
		if len(be.Event.Data) > 0 {
			out["data"] = be.Event.Data
		}
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		back, err := iu.ParseEventLine("x:1", b)
		if err != nil {
			t.Fatalf("the event written out does not parse: %v\n%s", err, b)
		}
		if back.Template != be.Template || back.Event.ID != be.Event.ID || back.Event.Source != be.Event.Source ||
			back.Event.Type != be.Event.Type || back.Event.Subject != be.Event.Subject || !back.Event.Time.Equal(be.Event.Time) ||
			back.Event.PayloadDigest() != be.Event.PayloadDigest() {
			t.Fatalf("the event written out reads back as another:\n%+v\n%+v", be, back)
		}
		// The stream reader agrees with the line parser.
		if !bytes.ContainsAny(line, "\n") {
			n := 0
			for got, err := range iu.ReadNDJSON("x", bytes.NewReader(line)) {
				n++
				if err != nil || got.Template != be.Template || got.Event.ID != be.Event.ID || got.Event.PayloadDigest() != be.Event.PayloadDigest() {
					t.Fatalf("ReadNDJSON: %+v, %v; ParseEventLine: %+v", got, err, be)
				}
			}
			if n != 1 {
				t.Fatalf("ReadNDJSON yielded %d events", n)
			}
		}
	})
}
