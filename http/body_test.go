package http

import (
	"bytes"
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
	// Through the decoder every handler uses, with nothing decoded.
	var b struct{ Apply bool }
	r, _ := nethttp.NewRequest("POST", "/", bytes.NewReader([]byte(`{"apply": false, "Apply": true}`)))
	err := decodeJSON(r, &b)
	if err == nil || !strings.Contains(err.Error(), `"Apply" is given twice`) || b.Apply {
		t.Errorf("%v, %+v", err, b)
	}
}
