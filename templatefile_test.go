package iu_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/iu-engine/iu"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// badTemplates lists every file in testdata/templates with what its error
// must say. The full message is kept in <case>.err next to the file
// (go test -run TestParseTemplateFileErrors -update rewrites them); the
// substrings here are the part a change must not lose: the problem, and the
// line where the parser can know it.
var badTemplates = []struct {
	name string
	want []string
}{
	{name: "bad-key", want: []string{`malformed template key "tpl:WF:Onboarding/v2"`, "tpl:<kind>:<name>/v<N>"}},
	{name: "bad-key-version", want: []string{`malformed template key "tpl:wf:onboarding/v0"`, "N a positive integer"}},
	{name: "missing-key", want: []string{"missing key"}},
	{name: "no-pieces", want: []string{"line 3: ", "no pieces"}},
	{name: "missing-pieces", want: []string{"no pieces"}},
	{name: "duplicate-slot", want: []string{"line 10: ", `piece "laptop"`, "duplicate slot id", "piece 1"}},
	{name: "unknown-after", want: []string{"line 7: ", `piece "laptop"`, `unknown slot "accounts"`}},
	{name: "self-after", want: []string{"line 4: ", `piece "welcome"`, "cannot come after itself"}},
	{name: "duplicate-after", want: []string{"line 7: ", `"welcome" listed twice`}},
	{name: "cycle", want: []string{"line 7: ", "cycle: accounts -> access -> laptop -> accounts"}},
	{name: "empty-body", want: []string{"line 7: ", `piece "blank"`, "empty body"}},
	{name: "unknown-field", want: []string{"line 10: ", "unknown field afer"}},
	{name: "unknown-top-field", want: []string{"line 2: ", "unknown field titel"}},
	{name: "json-unknown-field", want: []string{"line 2: ", "unknown field afterr"}},
	{name: "parse-error", want: []string{"line 3: ", "did not find expected '-' indicator"}},
	{name: "duplicate-key", want: []string{"line 3: ", `"title" already defined at line 2`}},
	{name: "bad-emit-mode", want: []string{`emit_mode: unknown emit mode "loud"`, "want live or shadow"}},
	{name: "bad-placeholder", want: []string{"line 7: ", `piece "greet"`, "body placeholder", `unexpected "}"`}},
	{name: "missing-kind", want: []string{"line 4: ", "missing kind"}},
	{name: "bad-kind", want: []string{"line 4: ", `malformed kind "Step"`}},
	{name: "missing-id", want: []string{"line 7: ", "piece 2: missing id"}},
	{name: "bad-slot-id", want: []string{"line 4: ", `piece "order laptop": malformed id`}},
	{name: "pieces-not-a-list", want: []string{"line 3: ", "into a list of pieces"}},
	{name: "two-documents", want: []string{"more than one YAML document"}},
	{name: "empty", want: []string{"empty file"}},
	{name: "comment-only", want: []string{"empty file"}},
}

func TestParseTemplateFileErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/templates/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, tc := range badTemplates {
		listed = append(listed, filepath.Join("testdata", "templates", tc.name+".yaml"))
	}
	slices.Sort(listed)
	if !slices.Equal(files, listed) {
		t.Errorf("the fixtures in testdata/templates and the table differ:\nfiles %q\ntable %q", files, listed)
	}
	lineRE := regexp.MustCompile(`line (\d+): `)
	for _, tc := range badTemplates {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "templates", tc.name+".yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tpl, err := iu.ParseTemplateFile(path, data)
			if err == nil {
				t.Fatalf("parsed as %s, want an error", tpl.Key)
			}
			msg := err.Error()
			if !errors.Is(err, iu.ErrInvalidTemplate) || iu.ErrorCode(err) != iu.CodeInvalid {
				t.Errorf("error %v is not ErrInvalidTemplate (code %q)", err, iu.ErrorCode(err))
			}
			var e *iu.Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *iu.Error", err)
			}
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("message %q does not start with the file name", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			// A line number must point into the file.
			if m := lineRE.FindStringSubmatch(msg); m != nil {
				n := 0
				for _, c := range m[1] {
					n = 10*n + int(c-'0')
				}
				if lines := strings.Count(string(data), "\n"); n < 1 || n > lines {
					t.Errorf("message names line %d of a %d-line file", n, lines)
				}
			}
			golden(t, filepath.Join("testdata", "templates", tc.name+".err"), msg+"\n")
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, w := range subs {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// golden compares got with the file at path, or writes it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

const goodTemplate = `key: tpl:wf:onboarding/v2
title: Employee onboarding
pieces:
  - id: welcome
    kind: step
    body: "Send the welcome pack to {{ .subject }}"
  - id: laptop
    kind: step
    body: Provision a laptop
    after: [welcome]
  - id: accounts
    kind: step
    body: Provision a laptop
    after: [welcome]
  - id: first-day
    kind: step
    body: "First day with {{ .data.manager }}"
    after: [accounts, laptop]
`

func TestParseTemplateFile(t *testing.T) {
	tpl, err := iu.ParseTemplateFile("good.yaml", []byte(goodTemplate))
	if err != nil {
		t.Fatal(err)
	}
	if tpl.Key != "tpl:wf:onboarding/v2" || tpl.Title != "Employee onboarding" || tpl.Kind() != "wf" {
		t.Errorf("key %q, title %q, kind %q", tpl.Key, tpl.Title, tpl.Kind())
	}
	if tpl.EmitMode != iu.EmitLive {
		t.Errorf("emit mode %q, want live by default", tpl.EmitMode)
	}
	var ids []string
	for _, s := range tpl.Slots {
		ids = append(ids, s.ID)
	}
	if want := []string{"welcome", "laptop", "accounts", "first-day"}; !slices.Equal(ids, want) {
		t.Errorf("slots %q, want the declaration order %q", ids, want)
	}
	if got := tpl.Slots[3].After; !slices.Equal(got, []string{"accounts", "laptop"}) {
		t.Errorf("first-day after %q", got)
	}
	// Equal content is one piece: laptop and accounts share a body.
	if tpl.Slots[1].Piece != tpl.Slots[2].Piece || len(tpl.Pieces) != 3 {
		t.Errorf("laptop and accounts have pieces %s and %s; %d pieces in all, want 3", tpl.Slots[1].Piece, tpl.Slots[2].Piece, len(tpl.Pieces))
	}
	for _, s := range tpl.Slots {
		p, ok := tpl.Pieces[s.Piece]
		if !ok || p.ID() != s.Piece || p.Kind != "step" {
			t.Errorf("slot %s: piece %s is %+v (present %v)", s.ID, s.Piece, p, ok)
		}
	}
	if tpl.Pieces[tpl.Slots[0].Piece].Body != "Send the welcome pack to {{ .subject }}" {
		t.Errorf("welcome body %q", tpl.Pieces[tpl.Slots[0].Piece].Body)
	}
	if tpl.Digest != iu.GraphDigest(tpl.Slots) || tpl.Digest.IsZero() {
		t.Errorf("digest %s, graph digest %s", tpl.Digest, iu.GraphDigest(tpl.Slots))
	}

	// The same template as JSON (YAML reads JSON), with its pieces in
	// another order and shadow mode: the same graph, so the same digest.
	js := `{"key": "tpl:wf:onboarding/v2", "title": "Employee onboarding", "emit_mode": "shadow", "pieces": [
		{"id": "first-day", "kind": "step", "body": "First day with {{ .data.manager }}", "after": ["laptop", "accounts"]},
		{"id": "accounts", "kind": "step", "body": "Provision a laptop", "after": ["welcome"]},
		{"id": "laptop", "kind": "step", "body": "Provision a laptop", "after": ["welcome"]},
		{"id": "welcome", "kind": "step", "body": "Send the welcome pack to {{ .subject }}"}]}`
	j, err := iu.ParseTemplateFile("good.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if j.Digest != tpl.Digest || j.EmitMode != iu.EmitShadow {
		t.Errorf("JSON form: digest %s (want %s), mode %q", j.Digest, tpl.Digest, j.EmitMode)
	}
	// Same graph, other declaration order: not the same publication.
	if j.SameContent(tpl) {
		t.Error("SameContent holds across declaration orders")
	}
	again, err := iu.ParseTemplateFile("good.yaml", []byte(goodTemplate))
	if err != nil || !again.SameContent(tpl) {
		t.Errorf("re-parse: SameContent false (%v)", err)
	}
	// A changed body is a changed digest.
	changed, err := iu.ParseTemplateFile("changed.yaml", []byte(strings.Replace(goodTemplate, "Provision a laptop\n    after: [welcome]\n  - id: accounts", "Provision a laptop.\n    after: [welcome]\n  - id: accounts", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if changed.Digest == tpl.Digest || changed.SameContent(tpl) {
		t.Error("a changed body left the digest unchanged")
	}
}

func TestParseTemplateSpecLines(t *testing.T) {
	spec, err := iu.ParseTemplateSpec([]byte(goodTemplate))
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, p := range spec.Pieces {
		lines = append(lines, p.Line)
	}
	if spec.Line != 3 || !slices.Equal(lines, []int{4, 7, 11, 15}) {
		t.Errorf("pieces at line %d, each at %v; want 3 and [4 7 11 15]", spec.Line, lines)
	}
}

func TestParseTemplateKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want iu.TemplateKey
	}{
		{"tpl:wf:onboarding/v2", iu.TemplateKey{Kind: "wf", Name: "onboarding", Version: 2}},
		{"tpl:file:status-report/v2", iu.TemplateKey{Kind: "file", Name: "status-report", Version: 2}},
		{"tpl:runbook-2:team/ops.db_restore/v10", iu.TemplateKey{Kind: "runbook-2", Name: "team/ops.db_restore", Version: 10}},
	} {
		k, err := iu.ParseTemplateKey(tc.key)
		if err != nil || k != tc.want || k.String() != tc.key {
			t.Errorf("ParseTemplateKey(%q) = %+v, %v", tc.key, k, err)
		}
	}
	for _, bad := range []string{
		"", "tpl:wf:onboarding", "tpl:wf:onboarding/v0", "tpl:wf:onboarding/v01", "tpl:wf:onboarding/v-1",
		"tpl:WF:onboarding/v1", "tpl:wf:Onboarding/v1", "tpl:2wf:x/v1", "tpl::x/v1", "tpl:wf:/v1",
		"tpl:wf:a//b/v1", "tpl:wf:x/v1 ", " tpl:wf:x/v1", "tpl-inst:wf:x/v1", "tpl:wf:x/v99999999999999999999",
		"tpl:wf:-x/v1", "tpl:wf:x/y/", "tpl:wf:x\n/v1",
	} {
		if k, err := iu.ParseTemplateKey(bad); !errors.Is(err, iu.ErrInvalidTemplate) {
			t.Errorf("ParseTemplateKey(%q) = %+v, %v; want ErrInvalidTemplate", bad, k, err)
		}
	}
}

// The grammar of template keys, as the regular expression that
// ParseTemplateKey is written by hand from.
var templateKeyGrammar = regexp.MustCompile(`^tpl:([a-z][a-z0-9-]*):([a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*)/v([1-9][0-9]*)$`)

// ParseTemplateKey takes exactly the keys of the grammar, split as the
// grammar splits them.
func TestParseTemplateKeyFollowsTheGrammar(t *testing.T) {
	// Keys built part by part, each part mostly right, so that many are
	// keys and the others near misses.
	mostly := func(right, any string) *rapid.Generator[string] {
		return rapid.OneOf(rapid.StringMatching(right), rapid.StringMatching(right), rapid.StringMatching(any))
	}
	prefix := rapid.SampledFrom([]string{"tpl:", "tpl:", "tpl:", "tpl", "tpl-inst:", "TPL:", ""})
	// Each part also draws from near misses written out: a kind that
	// starts wrong, a name segment that looks like a version.
	kind := rapid.OneOf(mostly(`[a-z][a-z0-9-]{0,3}`, `[a-zA-Z0-9:_-]{0,3}`), rapid.SampledFrom([]string{"1a", "-a", "_a", "A"}))
	sep := rapid.SampledFrom([]string{":", ":", ":", "", "::"})
	segment := rapid.OneOf(mostly(`[a-z0-9][a-z0-9._-]{0,3}`, `[a-zA-Z0-9._:/ é-]{0,3}`), rapid.SampledFrom([]string{"v1", "v", "v10", "v01", "-a", ".a"}))
	vsep := rapid.SampledFrom([]string{"/v", "/v", "/v", "v", "/V", "/v/v", ""})
	version := mostly(`[1-9][0-9]{0,2}`, `0[0-9]{0,2}|[0-9a]{0,3}`)
	prop := func(t *rapid.T) {
		name := strings.Join(rapid.SliceOfN(segment, 1, 3).Draw(t, "name"), "/")
		s := prefix.Draw(t, "prefix") + kind.Draw(t, "kind") + sep.Draw(t, "sep") + name + vsep.Draw(t, "vsep") + version.Draw(t, "version")
		k, err := iu.ParseTemplateKey(s)
		m := templateKeyGrammar.FindStringSubmatch(s)
		if m == nil {
			if err == nil {
				t.Fatalf("ParseTemplateKey(%q) = %+v, want an error: the grammar refuses it", s, k)
			}
			return
		}
		if err != nil {
			if v, _ := strconv.Atoi(m[3]); v > 0 {
				t.Fatalf("ParseTemplateKey(%q): %v, but the grammar takes it", s, err)
			}
			return // a version out of int's range
		}
		if k.Kind != m[1] || k.Name != m[2] || strconv.Itoa(k.Version) != m[3] {
			t.Fatalf("ParseTemplateKey(%q) = %+v, the grammar splits it as %q %q %q", s, k, m[1], m[2], m[3])
		}
	}
	// Many more cases than rapid's default 100: each is a microsecond, and
	// a near miss that the parser gets wrong is one key among thousands.
	for range 50 {
		rapid.Check(t, prop)
	}
}

// TestTemplateLimits builds specs at and over each limit.
func TestTemplateLimits(t *testing.T) {
	piece := func(id, body string) iu.SlotSpec { return iu.SlotSpec{ID: id, Kind: "text", Body: body} }
	spec := func(title string, pieces ...iu.SlotSpec) *iu.TemplateSpec {
		return &iu.TemplateSpec{Key: "tpl:file:limits/v1", Title: title, Pieces: pieces}
	}
	many := func(n int) []iu.SlotSpec {
		ps := make([]iu.SlotSpec, n)
		for i := range ps {
			ps[i] = piece("s"+strconv.Itoa(i), "x")
		}
		return ps
	}
	for _, tc := range []struct {
		name string
		spec *iu.TemplateSpec
		want string // "" for valid
	}{
		{"title at the limit", spec(strings.Repeat("t", iu.MaxTitle), piece("a", "x")), ""},
		{"title over", spec(strings.Repeat("t", iu.MaxTitle+1), piece("a", "x")), "title is longer than 512 bytes"},
		{"body at the limit", spec("", piece("a", strings.Repeat("b", iu.MaxBodyBytes))), ""},
		{"body over", spec("", piece("a", strings.Repeat("b", iu.MaxBodyBytes+1))), `piece "a": body is longer than 65536 bytes`},
		{"slots at the limit", spec("", many(iu.MaxSlots)...), ""},
		{"slots over", spec("", many(iu.MaxSlots+1)...), "4097 pieces: at most 4096"},
		{"slot id at the limit", spec("", piece(strings.Repeat("i", 128), "x")), ""},
		{"slot id over", spec("", piece(strings.Repeat("i", 129), "x")), "malformed id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := tc.spec.Build()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tc.want == "":
				if tpl.Digest != iu.GraphDigest(tpl.Slots) {
					t.Error("digest does not match the graph")
				}
			case !errors.Is(err, iu.ErrInvalidTemplate) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Build = %v, want ErrInvalidTemplate saying %q", err, tc.want)
			}
		})
	}
	big := strings.Repeat("#", iu.MaxTemplateFileBytes+1)
	if _, err := iu.ParseTemplateFile("big.yaml", []byte(big)); !errors.Is(err, iu.ErrInvalidTemplate) || !strings.Contains(err.Error(), "big.yaml: file is larger than") {
		t.Errorf("an oversized file: %v", err)
	}
}

func TestTopoOrder(t *testing.T) {
	slot := func(id string, after ...string) iu.Slot { return iu.Slot{ID: id, After: after} }
	ids := func(slots []iu.Slot, order []int) []string {
		var out []string
		for _, i := range order {
			out = append(out, slots[i].ID)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		slots []iu.Slot
		want  []string
	}{
		{"declaration order when free", []iu.Slot{slot("c"), slot("a"), slot("b")}, []string{"c", "a", "b"}},
		{"edges first", []iu.Slot{slot("c", "b"), slot("a"), slot("b", "a")}, []string{"a", "b", "c"}},
		{"earliest ready", []iu.Slot{slot("x", "z"), slot("y"), slot("z")}, []string{"y", "z", "x"}},
		{"diamond", []iu.Slot{slot("end", "l", "r"), slot("r", "start"), slot("l", "start"), slot("start")}, []string{"start", "r", "l", "end"}},
		{"dangling edge ignored", []iu.Slot{slot("a", "gone"), slot("b")}, []string{"a", "b"}},
		{"cycle comes last, as declared", []iu.Slot{slot("a", "b"), slot("b", "a"), slot("c")}, []string{"c", "a", "b"}},
		{"empty", nil, nil},
	} {
		if got := ids(tc.slots, iu.TopoOrder(tc.slots)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
