package http

import (
	"bytes"
	"encoding/json"
	nethttp "net/http"
	"strings"
	"testing"
)

// A field given twice in a body's top-level object, in any case, is found;
// the same name in nested objects (an event's data), or as a value, is not
// a repetition.
func TestRepeatedField(t *testing.T) {
	for doc, want := range map[string]string{
		`{"apply": false, "Apply": true}`:                  "Apply",
		`{"apply": false, "apply": true}`:                  "apply",
		`{"a": 1, "b": {"c": 2}, "B": 3}`:                  "B",
		`{"a": {"x": 1, "X": 2}, "b": [{"k": 1, "k": 2}]}`: "",
		`{"a": "apply", "apply": "a"}`:                     "",
		`{"a": {}, "b": [], "c": null, "d": [[], [{}]]}`:   "",
		`[{"k": 1}, {"k": 1}]`:                             "",
		`"apply"`:                                          "",
		`{"a": 1,`:                                         "",
		`{"iu_core.composer_enabled": true}`:               "",
	} {
		got, ok := repeatedField([]byte(doc))
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", doc, got, ok, want)
		}
	}
	// Names Go's decoder folds to one another beyond ASCII case: the long s
	// is an s, the Kelvin sign a k.
	for _, c := range [][2]string{{"source", "\u017fource"}, {"scope", "\u017fcope"}, {"key", "\u212aey"}} {
		var v struct{ Source, Scope, Key string }
		if err := json.Unmarshal([]byte(`{"`+c[1]+`": "b"}`), &v); err != nil || v.Source+v.Scope+v.Key != "b" {
			t.Fatalf("%s: Go's decoder took it as %+v, %v; the premise is wrong", c[1], v, err)
		}
		doc := `{"` + c[0] + `": "a", "` + c[1] + `": "b"}`
		if got, ok := repeatedField([]byte(doc)); !ok || got != c[1] {
			t.Errorf("%s: %q %v, want %q", doc, got, ok, c[1])
		}
	}
	// Through the decoder every handler uses, with nothing decoded.
	var b struct{ Apply bool }
	r, _ := nethttp.NewRequest("POST", "/", bytes.NewReader([]byte(`{"apply": false, "Apply": true}`)))
	err := decodeJSON(r, &b)
	if err == nil || !strings.Contains(err.Error(), `"Apply" is given twice`) || b.Apply {
		t.Errorf("%v, %+v", err, b)
	}
}

// A field name that is not ASCII is refused: Go's decoder would take
// "releaſe" (a long s) for release.
func TestNonASCIIFieldIsRefused(t *testing.T) {
	var b struct{ Release bool }
	r, _ := nethttp.NewRequest("POST", "/", strings.NewReader("{\"apply\": false, \"relea\u017fe\": true}"))
	if err := decodeJSON(r, &b); err == nil || !strings.Contains(err.Error(), "unknown field") || b.Release {
		t.Errorf("%v, %+v", err, b)
	}
}
