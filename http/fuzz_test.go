package http

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/iu-engine/iu"
)

// checkWireError checks that a refusal is an *iu.Error with a code of the
// status table, as every answer must be.
func checkWireError(t *testing.T, err error) {
	t.Helper()
	var ie *iu.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error %T %v is not an *iu.Error", err, err)
	}
	if _, ok := statuses[ie.Code]; !ok {
		t.Fatalf("error code %q has no status", ie.Code)
	}
	if ie.Message == "" {
		t.Fatalf("error without a message")
	}
}

// FuzzJSONBodies decodes arbitrary bytes as every JSON body of the API:
// strict decoding never panics, refuses with a coded error, and what it
// accepts encodes and decodes again to the same value.
func FuzzJSONBodies(f *testing.F) {
	for _, s := range []string{
		`{"template": "tpl:wf:a/v1", "actor": "a", "event": {"id": "1", "source": "s", "type": "t", "data": {"x": 1}}}`,
		`{"iu_core.composer_enabled": true, "auto_instantiate_enabled": false}`,
		`{"composer_enabled": true, "iu_core.composer_enabled": false}`,
		`{"templates": [{"key": "tpl:wf:a/v1", "pieces": [{"id": "a", "kind": "step", "body": "x"}]}], "actor": "me"}`,
		`{"actor": "a", "apply": true}`, `{"actor": "a", "aply": true}`,
		`{"type": "a.*", "template": "tpl:wf:a/v1", "instance_prefix": "p"}`,
		`{"scope": "read"}`, `{"emit_mode": "shadow"}`, `{"template": "t", "key": "k", "actor": "a"}`,
		`{"actor": "a", "gates": {"composer_enabled": true}}`,
		`{"where": "f:1", "template": "tpl:wf:a/v1", "id": "1", "type": "t", "time": "2026-01-01T00:00:00Z"}`,
		`{} {}`, `[1]`, `null`, ``, `{"a":`, "\xff",
	} {
		f.Add([]byte(s))
	}
	bodies := []func() any{
		func() any { return new(EmitBody) }, func() any { return new(iu.GateChange) }, func() any { return new(PublishBody) },
		func() any { return new(RollbackBody) }, func() any { return new(TriggerBody) }, func() any { return new(TokenBody) },
		func() any { return new(ModeBody) }, func() any { return new(ComposeBody) }, func() any { return new(bulkHeader) },
		func() any { return new(bulkLine) },
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mk := range bodies {
			v := mk()
			if err := decodeStrict(bytes.NewReader(b), v); err != nil {
				checkWireError(t, err)
				continue
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T accepted %q but does not encode: %v", v, b, err)
			}
			w := mk()
			if err := decodeStrict(bytes.NewReader(again), w); err != nil {
				t.Fatalf("%T: %q accepted, re-encoded as %s, refused: %v", v, b, again, err)
			}
			if again2, _ := json.Marshal(w); !bytes.Equal(again, again2) {
				t.Fatalf("%T does not round-trip: %s != %s", v, again, again2)
			}
		}
	})
}

// FuzzBulkBody streams arbitrary bytes as bulk event lines: every event
// yielded without an error is valid, and an error ends the stream.
func FuzzBulkBody(f *testing.F) {
	f.Add([]byte(`{"template": "tpl:wf:a/v1", "id": "1", "type": "t"}` + "\n\n" + `{"template": "tpl:wf:a/v1", "id": "2", "type": "t", "where": "x:9"}`))
	f.Add([]byte(`{"template": "", "id": "1", "type": "t"}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for be, err := range bulkEvents(bufio.NewReader(bytes.NewReader(b)), "fuzz") {
			if err != nil {
				checkWireError(t, err)
				continue
			}
			if err := be.Event.Validate(); err != nil || be.Where == "" {
				t.Fatalf("accepted an invalid event %+v: %v", be, err)
			}
			if _, err := iu.ParseTemplateKey(be.Template); err != nil {
				t.Fatalf("accepted template %q", be.Template)
			}
		}
	})
}

// FuzzAnswerEncoding checks the hand-written encoder of event answers
// against encoding/json, byte for byte.
func FuzzAnswerEncoding(f *testing.F) {
	f.Add("e-1", "hr:x", "hr.hired", "tpl:wf:a/v1", "tpl-inst:auto:a-1", "ok", "", "conflict", "a \"message\" <with> & \\ \n\t\x01 \u2028 é \xff", true, 201)
	f.Add("", "", "", "", "", "", "iu_core.composer_enabled", "", "", false, 0)
	f.Fuzz(func(t *testing.T, id, source, typ, tpl, inst, status, gate, code, msg string, replayed bool, st int) {
		a := EventAnswer{ID: id, Source: source, Type: typ, Status: st, Results: []TemplateResult{
			{Result: iu.Result{Status: iu.Status(status), TemplateKey: tpl, InstanceKey: inst, IdempotencyKey: id, Replayed: replayed, Gate: gate}},
			{Result: iu.Result{TemplateKey: tpl}, Error: &errorBody{Code: iu.Code(code), Message: msg}},
		}}
		if code != "" {
			a.Error = &errorBody{Code: iu.Code(code), Message: msg}
		}
		type result struct {
			Status         string `json:"status"`
			TemplateKey    string `json:"template,omitempty"`
			InstanceKey    string `json:"instance_key,omitempty"`
			IdempotencyKey string `json:"idempotency_key,omitempty"`
			Replayed       bool   `json:"replayed"`
			Gate           string `json:"gate,omitempty"`
		}
		type failed struct {
			Template string     `json:"template"`
			Error    *errorBody `json:"error"`
		}
		type answer struct {
			ID      string     `json:"id"`
			Source  string     `json:"source"`
			Type    string     `json:"type"`
			Status  int        `json:"status"`
			Results []any      `json:"results"`
			Error   *errorBody `json:"error,omitempty"`
		}
		r := a.Results[0].Result
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // as writeJSON: < > & are written as they are
		err := enc.Encode(answer{id, source, typ, st, []any{
			result{string(r.Status), r.TemplateKey, r.InstanceKey, r.IdempotencyKey, r.Replayed, r.Gate},
			failed{tpl, a.Results[1].Error},
		}, a.Error})
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if got := appendEventAnswer(nil, &a); !bytes.Equal(got, want) {
			t.Fatalf("hand-written encoding differs from encoding/json:\n got %s\nwant %s", got, want)
		}
	})
}
