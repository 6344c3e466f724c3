package iu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// Stored payload digests depend on CanonicalJSON's bytes, so its fast path
// must give encoding/json's output exactly: these compare the two on
// generated JSON written every way JSON allows (spacing, member order,
// repeated keys, every escape, numbers in every form) and on corrupted
// JSON, which the fast path must decline or canonicalize the same way.

// jsonText writes a random JSON value.
func jsonText(t *rapid.T, depth int) string {
	kind := rapid.IntRange(0, 6).Draw(t, "kind")
	if depth >= 5 && kind >= 5 {
		kind = rapid.IntRange(0, 4).Draw(t, "scalar")
	}
	switch kind {
	case 0:
		return rapid.SampledFrom([]string{"true", "false", "null"}).Draw(t, "literal")
	case 1, 2:
		return jsonNumber(t)
	case 3, 4:
		return jsonString(t, "string")
	case 5:
		n := rapid.IntRange(0, 4).Draw(t, "elements")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = space(t) + jsonText(t, depth+1) + space(t)
		}
		return "[" + space(t) + strings.Join(parts, ",") + "]"
	default:
		n := rapid.IntRange(0, 5).Draw(t, "members")
		parts := make([]string, n)
		for i := range parts {
			// Few distinct keys, so that keys repeat, also in other
			// spellings (escaped or not).
			parts[i] = space(t) + jsonString(t, "key") + space(t) + ":" + space(t) + jsonText(t, depth+1) + space(t)
		}
		return "{" + space(t) + strings.Join(parts, ",") + "}"
	}
}

func space(t *rapid.T) string {
	return rapid.StringOfN(rapid.SampledFrom([]rune{' ', '\t', '\n', '\r'}), 0, 2, -1).Draw(t, "space")
}

func jsonNumber(t *rapid.T) string {
	var b strings.Builder
	if rapid.Bool().Draw(t, "minus") {
		b.WriteByte('-')
	}
	if rapid.IntRange(0, 3).Draw(t, "zero") == 0 {
		b.WriteByte('0')
	} else {
		b.WriteString(fmt.Sprint(rapid.IntRange(1, 9).Draw(t, "lead")))
		b.WriteString(rapid.StringMatching(`[0-9]{0,25}`).Draw(t, "digits"))
	}
	if rapid.Bool().Draw(t, "fraction") {
		b.WriteString("." + rapid.StringMatching(`[0-9]{1,20}`).Draw(t, "fractionDigits"))
	}
	if rapid.Bool().Draw(t, "exponent") {
		b.WriteString(rapid.StringMatching(`[eE][+-]?[0-9]{1,3}`).Draw(t, "exp"))
	}
	return b.String()
}

// jsonString writes a string of runes that encoding/json treats specially
// and ordinary ones, each written raw or escaped, as JSON allows.
func jsonString(t *rapid.T, label string) string {
	special := []rune{'"', '\\', '/', '<', '>', '&', '\b', '\f', '\n', '\r', '\t', 0, 0x1f, 0x7f,
		'\u2028', '\u2029', 'é', '€', '\U0001F600', '\ufffd', 'a', 'b', 'A', ' '}
	var runes []rune
	if label == "key" {
		runes = rapid.SliceOfN(rapid.SampledFrom([]rune{'a', 'b', 'A', 'é', '<', '\n', '\u2028'}), 0, 2).Draw(t, "keyRunes")
	} else {
		runes = rapid.SliceOfN(rapid.OneOf(rapid.SampledFrom(special), rapid.Rune()), 0, 12).Draw(t, "runes")
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range runes {
		if !utf8.ValidRune(r) {
			r = utf8.RuneError
		}
		short := map[rune]string{'"': `\"`, '\\': `\\`, '/': `\/`, '\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`}
		mustEscape := r == '"' || r == '\\' || r < 0x20
		switch how := rapid.IntRange(0, 2).Draw(t, "escape"); {
		case how == 0 && !mustEscape:
			b.WriteRune(r)
		case how == 1 && short[r] != "":
			b.WriteString(short[r])
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
			if rapid.Bool().Draw(t, "upper") {
				s := b.String()
				b.Reset()
				b.WriteString(s[:len(s)-4] + strings.ToUpper(s[len(s)-4:]))
			}
		case mustEscape:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r) // beyond the BMP: raw (escaped, it is a surrogate pair)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// checks is how many rounds of rapid's 100 cases each property runs: a
// case is a few microseconds, and an escape handled wrongly is one rune
// among thousands.
const checks = 20

func TestCanonicalJSONMatchesEncodingJSON(t *testing.T) {
	for range checks {
		rapid.Check(t, matchesEncodingJSON)
	}
}

func matchesEncodingJSON(t *rapid.T) {
	in := space(t) + jsonText(t, 0) + space(t)
	if !json.Valid([]byte(in)) {
		t.Fatalf("the generator wrote invalid JSON: %q", in)
	}
	got, ok := canonicalJSON([]byte(in))
	if !ok {
		t.Fatalf("canonicalJSON declined valid JSON %q", in)
	}
	if want := canonicalJSONStd([]byte(in)); string(got) != string(want) {
		t.Fatalf("canonicalJSON(%q)\n got %q\nwant %q", in, got, want)
	}
}

func TestCanonicalJSONOnCorruptedJSON(t *testing.T) {
	for range checks {
		rapid.Check(t, corrupted)
	}
}

func corrupted(t *rapid.T) {
	b := []byte(jsonText(t, 0))
	// Change, insert or delete a few bytes anywhere.
	for range rapid.IntRange(1, 3).Draw(t, "edits") {
		i := rapid.IntRange(0, len(b)).Draw(t, "at")
		c := rapid.SampledFrom([]byte{'"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', '.', 'e', 'u', 't', ' ', 0x01, 0x80, 0xff, 0xed}).Draw(t, "byte")
		switch op := rapid.IntRange(0, 2).Draw(t, "op"); {
		case op == 0 && i < len(b):
			b[i] = c
		case op == 1 && i < len(b):
			b = append(b[:i], b[i+1:]...)
		default:
			b = append(b[:i], append([]byte{c}, b[i:]...)...)
		}
	}
	got, ok := canonicalJSON(b)
	if !ok {
		return // left to encoding/json, which CanonicalJSON then calls
	}
	if !json.Valid(b) {
		t.Fatalf("canonicalJSON accepted invalid JSON %q as %q", b, got)
	}
	if want := canonicalJSONStd(b); string(got) != string(want) {
		t.Fatalf("canonicalJSON(%q)\n got %q\nwant %q", b, got, want)
	}
}

// Inputs the fast path declines still get encoding/json's answer.
func TestCanonicalJSONDeclines(t *testing.T) {
	deep := strings.Repeat("[", maxCanonicalDepth+1) + strings.Repeat("]", maxCanonicalDepth+1)
	for _, in := range []string{
		`{"a":1} {"b":2}`,           // a second value: encoding/json reads the first
		`"\ud83d\ude00"`,            // an escaped surrogate pair
		`"\ud800"`,                  // a lone surrogate
		"\"\xff\"",                  // invalid UTF-8
		`{"a":tru}`,                 // invalid
		"\ufeff{}",                  // a byte order mark
		deep,                        // nesting beyond maxCanonicalDepth
		`[1,]`, `{"a" 1}`, `01`, ``, // more invalid ones
	} {
		declines(t, in)
	}
	// Every raw control character and bytes that are not UTF-8, inside a
	// string: JSON forbids the first, encoding/json replaces the second.
	bad := []byte{0x80, 0xbf, 0xc3, 0xed, 0xf4, 0xff}
	for c := range byte(0x20) {
		bad = append(bad, c)
	}
	for _, c := range bad {
		declines(t, "[\"a"+string([]byte{c})+"b\"]")
		declines(t, "{\"k"+string([]byte{c})+"\":1}")
	}
}

// declines checks that canonicalJSON leaves in to encoding/json, and that
// CanonicalJSON gives encoding/json's answer for it.
func declines(t *testing.T, in string) {
	t.Helper()
	if _, ok := canonicalJSON([]byte(in)); ok {
		t.Errorf("canonicalJSON(%q) did not decline", in)
	}
	if got, want := CanonicalJSON([]byte(in)), canonicalJSONStd([]byte(in)); len(in) > 0 && string(got) != string(want) {
		t.Errorf("CanonicalJSON(%q) = %q, want encoding/json's %q", in, got, want)
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x\u00e9<"],"a":2}`, `"\u2028&"`, `-0.0e+1`, `[{}]`, `{"a":{"b":{"c":[]}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := canonicalJSON(b)
		if !ok {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if want := canonicalJSONStd(b); string(got) != string(want) {
			t.Fatalf("canonicalJSON(%q)\n got %q\nwant %q", b, got, want)
		}
	})
}

func BenchmarkCanonicalJSON(b *testing.B) {
	data := []byte(`{"team": "analytics", "manager": "Charles Babbage", "start_date": "2025-04-07", "tags": ["new", "remote"], "level": 3}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			canonicalJSON(data)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			canonicalJSONStd(data)
		}
	})
}

// AppendJSONString writes any string, UTF-8 or not, as an Encoder without
// HTML escaping does; canonical JSON's strings are json.Marshal's, HTML
// escaping included (payload digests depend on it).
func TestAppendJSONStringMatchesMarshal(t *testing.T) {
	for range checks {
		rapid.Check(t, func(t *rapid.T) {
			s := rapid.OneOf(
				rapid.String(),
				rapid.StringOf(rapid.SampledFrom([]rune{'"', '\\', '<', '>', '&', '\b', '\f', '\n', '\r', '\t', 0, 0x1f, 0x7f, '\u2028', '\u2029', 'é', 'a'})),
				rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }), // mostly not UTF-8
			).Draw(t, "s")
			want, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendJSONString(nil, s, true); string(got) != string(want) {
				t.Fatalf("appendJSONString(%q, html) = %s, want %s", s, got, want)
			}
			if got := appendJSONString(nil, []byte(s), true); string(got) != string(want) {
				t.Fatalf("appendJSONString([]byte(%q), html) = %s, want %s", s, got, want)
			}
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(s); err != nil {
				t.Fatal(err)
			}
			want = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
			if got := AppendJSONString(nil, s); string(got) != string(want) {
				t.Fatalf("AppendJSONString(%q) = %s, want %s", s, got, want)
			}
			if got := AppendJSONString(nil, []byte(s)); string(got) != string(want) {
				t.Fatalf("AppendJSONString([]byte(%q)) = %s, want %s", s, got, want)
			}
		})
	}
}
