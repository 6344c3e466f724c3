package iu_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"pgregory.net/rapid"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestIdempotencyKeyIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k, s, id := rapid.String().Draw(t, "template"), rapid.String().Draw(t, "source"), rapid.String().Draw(t, "id")
		a, b := iu.IdempotencyKey(k, s, id), iu.IdempotencyKey(k, s, id)
		if a != b {
			t.Fatalf("two calls gave %s and %s", a, b)
		}
		if !hex64.MatchString(a) {
			t.Fatalf("key %q is not 64 lowercase hex digits", a)
		}
	})
}

// TestIdempotencyKeyChangesWithEachPart changes one of template key, source
// and id and expects a different key: one event instantiates each template
// once, and two sources may reuse an id (CloudEvents identifies an event by
// source and id).
func TestIdempotencyKeyChangesWithEachPart(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		part := []string{rapid.String().Draw(t, "template"), rapid.String().Draw(t, "source"), rapid.String().Draw(t, "id")}
		i := rapid.IntRange(0, 2).Draw(t, "part")
		changed := slices.Clone(part)
		changed[i] = rapid.String().Filter(func(s string) bool { return s != part[i] }).Draw(t, "new value")
		if iu.IdempotencyKey(part[0], part[1], part[2]) == iu.IdempotencyKey(changed[0], changed[1], changed[2]) {
			t.Fatalf("%q and %q have the same key", part, changed)
		}
	})
}

// TestIdempotencyKeySeparatesParts checks that the NUL separators keep the
// parts apart over the inputs that reach IdempotencyKey: template keys and
// event attributes, neither of which may hold a NUL (see
// TestIdempotencyKeyInputsHoldNoNUL). Small alphabets make shifted
// boundaries such as ("ab", "c") and ("a", "bc") frequent.
func TestIdempotencyKeySeparatesParts(t *testing.T) {
	seen := map[bool]int{}
	rapid.Check(t, func(t *rapid.T) {
		gen := rapid.StringMatching(`[ab:/]{0,3}`)
		a := [3]string{gen.Draw(t, "t1"), gen.Draw(t, "s1"), gen.Draw(t, "i1")}
		b := [3]string{gen.Draw(t, "t2"), gen.Draw(t, "s2"), gen.Draw(t, "i2")}
		if rapid.Bool().Draw(t, "concatenation of a") {
			// The same bytes, cut at other places.
			all := a[0] + a[1] + a[2]
			x := rapid.IntRange(0, len(all)).Draw(t, "cut1")
			y := rapid.IntRange(x, len(all)).Draw(t, "cut2")
			b = [3]string{all[:x], all[x:y], all[y:]}
		}
		same := a == b
		seen[same]++
		if (iu.IdempotencyKey(a[0], a[1], a[2]) == iu.IdempotencyKey(b[0], b[1], b[2])) != same {
			t.Fatalf("%q and %q: keys equal %v, want %v", a, b, !same, same)
		}
	})
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("pairs drawn: %d equal, %d different; want both", seen[true], seen[false])
	}
	for _, p := range [][2][3]string{
		{{"a", "b", "c"}, {"ab", "", "c"}},
		{{"a", "b", "c"}, {"a", "", "bc"}},
		{{"tpl:wf:x/v1", "iu:cli", "1"}, {"tpl:wf:x/v1", "iu:cli1", ""}},
	} {
		if iu.IdempotencyKey(p[0][0], p[0][1], p[0][2]) == iu.IdempotencyKey(p[1][0], p[1][1], p[1][2]) {
			t.Errorf("%q and %q have the same key", p[0], p[1])
		}
	}
}

// TestIdempotencyKeyInputsHoldNoNUL: NUL-separation is unambiguous only
// because no part can contain a NUL. IdempotencyKey("a", "b\x00c", id) and
// IdempotencyKey("a\x00b", "c", id) hash the same bytes, so the validators
// in front of it must refuse such parts.
func TestIdempotencyKeyInputsHoldNoNUL(t *testing.T) {
	if _, err := iu.ParseTemplateKey("tpl:wf:a\x00b/v1"); err == nil {
		t.Error("a template key with a NUL was accepted")
	}
	for _, ev := range []iu.Event{
		{ID: "b\x00c", Source: "s", Type: "t"},
		{ID: "1", Source: "b\x00c", Type: "t"},
	} {
		if err := ev.Validate(); !errors.Is(err, iu.ErrInvalidEvent) {
			t.Errorf("event %+v: Validate = %v, want ErrInvalidEvent", ev, err)
		}
	}
	// The emit path validates before it derives the key.
	if _, err := iu.ParseEventLine("x:1", []byte(`{"template":"tpl:wf:x/v1","id":"a\u0000b","type":"t"}`)); !errors.Is(err, iu.ErrInvalidEvent) {
		t.Errorf("an event line with a NUL in its id: %v, want ErrInvalidEvent", err)
	}
}

func TestIdempotencyKeyKnownAnswer(t *testing.T) {
	// python3 -c "import hashlib; print(hashlib.sha256(b'tpl:wf:onboarding/v2\x00iu:cli\x0025000b00-0000-0000-0000-000000000001').hexdigest())"
	got := iu.IdempotencyKey("tpl:wf:onboarding/v2", "iu:cli", "25000b00-0000-0000-0000-000000000001")
	if want := "79c4536604c5c90f2ad754b6006d2797fad4bcc67974981360c71ffea8b7a779"; got != want {
		t.Errorf("IdempotencyKey = %s, want %s", got, want)
	}
	if k := iu.AutoInstanceKey("25000x-bulk", got); k != "tpl-inst:auto:25000x-bulk-"+got[:12] {
		t.Errorf("AutoInstanceKey = %q", k)
	}
	if !strings.HasPrefix(iu.AutoInstanceKey("p", got), iu.AutoInstancePrefix("p")) {
		t.Error("an auto instance key does not start with its prefix")
	}
}

// genJSON draws a JSON value as Go data: objects, arrays, strings, integer
// numbers (as json.Number, whose text is kept), booleans and null.
func genJSON(depth int) *rapid.Generator[any] {
	leaf := rapid.OneOf(
		rapid.Map(rapid.StringMatching(`[a-c<&é"\\ ]{0,3}`), func(s string) any { return s }),
		rapid.Map(rapid.IntRange(-3, 3), func(n int) any { return json.Number(fmt.Sprint(n)) }),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Just[any](nil),
	)
	if depth == 0 {
		return leaf
	}
	return rapid.OneOf(
		leaf,
		rapid.Map(rapid.MapOfN(rapid.StringMatching(`[a-c]{1,2}`), genJSON(depth-1), 0, 4), func(m map[string]any) any { return m }),
		rapid.Map(rapid.SliceOfN(genJSON(depth-1), 0, 3), func(s []any) any { return s }),
	)
}

// writeJSON encodes v with object keys in a random order and random
// insignificant whitespace; strings are sometimes written with \u escapes.
func writeJSON(t *rapid.T, b *strings.Builder, v any) {
	ws := func() { b.WriteString(rapid.SampledFrom([]string{"", " ", "\n", "\t", "  \r\n"}).Draw(t, "ws")) }
	ws()
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		keys = rapid.Permutation(keys).Draw(t, "key order")
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			writeJSON(t, b, k)
			b.WriteString(":")
			writeJSON(t, b, x[k])
		}
		ws()
		b.WriteString("}")
	case []any:
		b.WriteString("[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			writeJSON(t, b, e)
		}
		ws()
		b.WriteString("]")
	case string:
		if rapid.Bool().Draw(t, "escape") {
			b.WriteString(`"`)
			for _, r := range x {
				fmt.Fprintf(b, `\u%04x`, r)
			}
			b.WriteString(`"`)
		} else {
			e, _ := json.Marshal(x)
			b.Write(e)
		}
	default:
		e, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(e)
	}
	ws()
}

func spell(t *rapid.T, v any) json.RawMessage {
	var b strings.Builder
	writeJSON(t, &b, v)
	return json.RawMessage(b.String())
}

func TestPayloadDigestIgnoresKeyOrderAndSpace(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genJSON(3).Draw(t, "data")
		a, b := spell(t, v), spell(t, v)
		if !json.Valid(a) || !json.Valid(b) {
			t.Fatalf("test bug: invalid JSON %s or %s", a, b)
		}
		e1 := iu.Event{ID: "1", Source: "s", Type: "t", Subject: "x", Data: a}
		e2 := iu.Event{ID: "1", Source: "s", Type: "t", Subject: "x", Data: b}
		if e1.PayloadDigest() != e2.PayloadDigest() {
			t.Fatalf("the same data spelled two ways has two digests:\n%s\n%s", a, b)
		}
		if got, want := string(iu.CanonicalJSON(a)), string(iu.CanonicalJSON(b)); got != want {
			t.Fatalf("CanonicalJSON differs:\n%s\n%s", got, want)
		}
	})
}

// TestPayloadDigestSeesEveryValue: two events' payloads have the same
// digest exactly when their type, subject and data (as JSON values) are the
// same.
func TestPayloadDigestSeesEveryValue(t *testing.T) {
	seen := map[bool]int{}
	rapid.Check(t, func(t *rapid.T) {
		attr := rapid.StringMatching(`[ab]{0,2}`)
		v1 := genJSON(2).Draw(t, "data1")
		v2 := v1
		if rapid.Bool().Draw(t, "other data") {
			v2 = genJSON(2).Draw(t, "data2")
		}
		// Each part of the second payload is the first's unless drawn anew,
		// so equal pairs come often enough (about one in eight) to be seen.
		e1 := iu.Event{ID: "1", Source: "s", Type: attr.Draw(t, "type1"), Subject: attr.Draw(t, "subject1"), Data: spell(t, v1)}
		e2 := iu.Event{ID: "1", Source: "s", Type: e1.Type, Subject: e1.Subject, Data: spell(t, v2)}
		if rapid.Bool().Draw(t, "other type") {
			e2.Type = attr.Draw(t, "type2")
		}
		if rapid.Bool().Draw(t, "other subject") {
			e2.Subject = attr.Draw(t, "subject2")
		}
		var d1, d2 any
		for _, x := range []struct {
			raw json.RawMessage
			v   *any
		}{{e1.Data, &d1}, {e2.Data, &d2}} {
			dec := json.NewDecoder(strings.NewReader(string(x.raw)))
			dec.UseNumber()
			if err := dec.Decode(x.v); err != nil {
				t.Fatal(err)
			}
		}
		same := e1.Type == e2.Type && e1.Subject == e2.Subject && fmt.Sprintf("%#v", d1) == fmt.Sprintf("%#v", d2)
		seen[same]++
		if (e1.PayloadDigest() == e2.PayloadDigest()) != same {
			t.Fatalf("same payload %v, but digests equal %v:\n%+v\n%+v", same, !same, e1, e2)
		}
	})
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("pairs drawn: %d equal, %d different; want both", seen[true], seen[false])
	}
}

func TestPayloadDigestExamples(t *testing.T) {
	base := iu.Event{ID: "1", Source: "s", Type: "hr.hired", Subject: "Ada", Time: time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC),
		Data: json.RawMessage(`{"manager":"Charles","team":"analytics","n":1}`)}
	same := []func(e *iu.Event){
		func(e *iu.Event) { e.Data = json.RawMessage(` { "team" : "analytics", "n":1, "manager":"Charles" } `) },
		func(e *iu.Event) { e.Data = json.RawMessage(`{"manager":"\u0043harles","team":"analytics","n":1}`) },
		// Time, id and source identify or stamp the event; they are not its payload.
		func(e *iu.Event) { e.Time = e.Time.Add(time.Hour) },
		func(e *iu.Event) { e.ID, e.Source = "2", "other" },
	}
	differ := []func(e *iu.Event){
		func(e *iu.Event) { e.Type = "hr.fired" },
		func(e *iu.Event) { e.Subject = "Alan" },
		func(e *iu.Event) { e.Subject = "" },
		func(e *iu.Event) { e.Data = json.RawMessage(`{"manager":"Charles","team":"compilers","n":1}`) },
		func(e *iu.Event) { e.Data = json.RawMessage(`{"manager":"Charles","team":"analytics","n":"1"}`) },
		func(e *iu.Event) { e.Data = json.RawMessage(`{"manager":"Charles","team":"analytics","n":1.0}`) },
		func(e *iu.Event) { e.Data = json.RawMessage(`{"manager":"Charles","team":"analytics"}`) },
		func(e *iu.Event) {
			e.Data = json.RawMessage(`{"manager":"Charles","team":"analytics","n":1,"extra":null}`)
		},
		func(e *iu.Event) { e.Data = nil },
		// Moving text between attributes must not go unnoticed.
		func(e *iu.Event) { e.Type, e.Subject = "hr.hiredAda", "" },
	}
	want := base.PayloadDigest()
	for i, f := range same {
		e := base
		f(&e)
		if e.PayloadDigest() != want {
			t.Errorf("same[%d]: %+v has another digest", i, e)
		}
	}
	for i, f := range differ {
		e := base
		f(&e)
		if e.PayloadDigest() == want {
			t.Errorf("differ[%d]: %+v has the same digest", i, e)
		}
	}
	// An array's order is content.
	a := iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage(`[1,2]`)}
	b := iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage(`[2,1]`)}
	if a.PayloadDigest() == b.PayloadDigest() {
		t.Error("[1,2] and [2,1] have the same digest")
	}
}

func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, ``},
		{` {"b": 1, "a": [true, null, "x"]} `, `{"a":[true,null,"x"],"b":1}`},
		{`{"n": 1.50, "big": 12345678901234567890}`, `{"big":12345678901234567890,"n":1.50}`},
		{`"\u00e9"`, `"é"`},
		{`{"z":{"y":1,"x":2}}`, `{"z":{"x":2,"y":1}}`},
		{`not json`, `not json`}, // returned unchanged; Validate refuses it first
	} {
		if got := string(iu.CanonicalJSON([]byte(tc.in))); got != tc.want {
			t.Errorf("CanonicalJSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEventValidate(t *testing.T) {
	ok := iu.Event{ID: "1", Source: "iu:cli", Type: "t", Subject: "Ada Lovelace", Data: json.RawMessage(`{"a":1}`)}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(e *iu.Event)
		want   string
	}{
		{"no id", func(e *iu.Event) { e.ID = "" }, "id is required"},
		{"no type", func(e *iu.Event) { e.Type = "" }, "type is required"},
		{"no source", func(e *iu.Event) { e.Source = "" }, "source is required"},
		{"long id", func(e *iu.Event) { e.ID = strings.Repeat("x", iu.MaxAttrBytes+1) }, "id is longer than 1024 bytes"},
		{"long subject", func(e *iu.Event) { e.Subject = strings.Repeat("x", iu.MaxAttrBytes+1) }, "subject is longer"},
		{"invalid UTF-8 type", func(e *iu.Event) { e.Type = "t\xff" }, "type is not valid UTF-8"},
		{"newline in subject", func(e *iu.Event) { e.Subject = "a\nb" }, "subject contains a control character"},
		{"NUL in source", func(e *iu.Event) { e.Source = "a\x00" }, "source contains a control character"},
		{"bad data", func(e *iu.Event) { e.Data = json.RawMessage(`{"a":`) }, "data is not valid JSON"},
		{"two values", func(e *iu.Event) { e.Data = json.RawMessage(`{} {}`) }, "data is not valid JSON"},
		{"big data", func(e *iu.Event) {
			e.Data = json.RawMessage(`"` + strings.Repeat("x", iu.MaxDataBytes) + `"`)
		}, "data is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ok
			tc.change(&e)
			err := e.Validate()
			if !errors.Is(err, iu.ErrInvalidEvent) || iu.ErrorCode(err) != iu.CodeInvalid {
				t.Fatalf("Validate = %v (code %q), want ErrInvalidEvent", err, iu.ErrorCode(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("message %q does not say %q", err, tc.want)
			}
		})
	}
	// At the limits exactly, the event is valid.
	e := ok
	e.ID = strings.Repeat("x", iu.MaxAttrBytes)
	e.Data = json.RawMessage(`"` + strings.Repeat("x", iu.MaxDataBytes-2) + `"`)
	if err := e.Validate(); err != nil {
		t.Errorf("an event at the limits: %v", err)
	}
}

// TestValidateRefusesDataThatIsNotUTF8: encoding/json reads invalid UTF-8
// as U+FFFD, so two payloads that differ only in such bytes would share a
// payload digest and a changed redelivery would pass as a replay.
func TestValidateRefusesDataThatIsNotUTF8(t *testing.T) {
	a := iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage("{\"a\":\"\xff\"}")}
	b := iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage("{\"a\":\"\xfe\"}")}
	for _, e := range []iu.Event{a, b} {
		if err := e.Validate(); !errors.Is(err, iu.ErrInvalidEvent) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidEvent", e.Data, err)
		}
	}
}

// TestValidateRefusesEscapesOfNoCharacter: \u0000 and half a surrogate
// pair are valid JSON that PostgreSQL refuses in jsonb (and Go reads as
// U+FFFD), so an event carrying one is refused up front on every store
// rather than failing in the database with the events batched beside it.
func TestValidateRefusesEscapesOfNoCharacter(t *testing.T) {
	for data, want := range map[string]string{
		`{"n":"\u0000"}`:             `\u0000`,
		`{"n":"\ud800"}`:             `\ud800, half of a UTF-16 surrogate pair`,
		`{"n":"\uDC00x"}`:            `\udc00`,
		`{"n":"\ud800\u0041"}`:       `\ud800`,
		`{"n":"ok","m":["\udbff"]}`:  `\udbff`,
		`{"n":"\ud83d\ude00\ud800"}`: `\ud800`,
	} {
		err := (&iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage(data)}).Validate()
		if !errors.Is(err, iu.ErrInvalidEvent) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%s) = %v, want ErrInvalidEvent naming %s", data, err, want)
		}
	}
	for _, data := range []string{`{"n":"\ud83d\ude00"}`, `{"n":"\\u0000"}`, `{"n":"\\ud800"}`, `{"\u00e9":"\u0001\"\\"}`, `[1,2]`} {
		if err := (&iu.Event{ID: "1", Source: "s", Type: "t", Data: json.RawMessage(data)}).Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want it accepted", data, err)
		}
	}
}

func TestCheckActorAndPrefix(t *testing.T) {
	for _, good := range []string{"iu-core-25000x-bulk", "ops@example.com", "svc:hr/importer"} {
		if err := iu.CheckActor(good); err != nil {
			t.Errorf("CheckActor(%q): %v", good, err)
		}
		if err := iu.CheckPrefix(good); err != nil {
			t.Errorf("CheckPrefix(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", "two words", "tab\there", "nl\n", "nul\x00", "\xff", strings.Repeat("a", 257)} {
		if err := iu.CheckActor(bad); !errors.Is(err, iu.ErrInvalidInput) {
			t.Errorf("CheckActor(%q) = %v, want ErrInvalidInput", bad, err)
		}
	}
	if err := iu.CheckPrefix(strings.Repeat("a", 129)); !errors.Is(err, iu.ErrInvalidInput) {
		t.Errorf("a 129-byte prefix: %v", err)
	}
	if err := iu.CheckActor(strings.Repeat("a", 256)); err != nil {
		t.Errorf("a 256-byte actor: %v", err)
	}
}
