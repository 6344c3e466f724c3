package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	nethttp "net/http"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// sources are attribute values that a URI parser would rewrite, or refuse:
// iu must take each exactly as sent.
var sources = []string{
	"a b'c", "HR:Workday", "hr:Workday", "a%20b", "a b", "%zz", "urn:x",
	"https://Example.com/A?b=c#d", "/relative/path", "x\u00e9y", "HTTP://EXAMPLE.COM/",
}

func binary(source string) nethttp.Header {
	h := nethttp.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "e-1")
	h.Set("Ce-Source", source)
	h.Set("Ce-Type", "t")
	h.Set("Content-Type", "application/json")
	return h
}

func structured(source string) []byte {
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "e-1", "source": source, "type": "t", "data": map[string]int{"a": 1}})
	return b
}

// The source attribute is the bytes the producer sent, in every mode: the
// idempotency key is computed from it.
func TestSourceKeptAsSent(t *testing.T) {
	for _, src := range sources {
		t.Run(src, func(t *testing.T) {
			evs, mode, err := Decode(binary(src), []byte(`{"a":1}`))
			if err != nil || mode != Binary || len(evs) != 1 || evs[0].Event.Source != src {
				t.Fatalf("binary: %v %s %+v", err, mode, evs)
			}
			h := nethttp.Header{"Content-Type": {ContentTypeStructured}}
			evs, mode, err = Decode(h, structured(src))
			if err != nil || mode != Structured || len(evs) != 1 || evs[0].Event.Source != src {
				t.Fatalf("structured: %v %s %+v", err, mode, evs)
			}
			batch := []byte("[" + string(structured(src)) + "," + string(structured("other")) + "]")
			h = nethttp.Header{"Content-Type": {ContentTypeBatch}}
			evs, mode, err = Decode(h, batch)
			if err != nil || mode != Batch || len(evs) != 2 || evs[0].Event.Source != src || evs[1].Event.Source != "other" {
				t.Fatalf("batch: %v %s %+v", err, mode, evs)
			}
			for _, ev := range evs {
				if ev.Err != nil {
					t.Fatalf("batch event refused: %v", ev.Err)
				}
			}
		})
	}
}

// Header names are matched without regard to case (NATS keeps them as
// sent).
func TestHeaderCase(t *testing.T) {
	h := nethttp.Header{"ce-specversion": {"1.0"}, "CE-ID": {"e-1"}, "ce-Source": {"HR:x"}, "ce-type": {"t"}, "content-type": {"application/json"}, "ce-iutemplate": {"tpl:wf:a/v1"}}
	evs, mode, err := Decode(h, []byte(`{}`))
	if err != nil || mode != Binary || evs[0].Event.ID != "e-1" || evs[0].Event.Source != "HR:x" || evs[0].Routing.Template != "tpl:wf:a/v1" {
		t.Fatalf("%v %s %+v", err, mode, evs)
	}
}

// Refusals name what is wrong.
func TestRefusals(t *testing.T) {
	b64 := func(data, ct string) []byte {
		m := map[string]any{"specversion": "1.0", "id": "e-1", "source": "s", "type": "t", "data_base64": data}
		if ct != "" {
			m["datacontenttype"] = ct
		}
		b, _ := json.Marshal(m)
		return b
	}
	structuredH := nethttp.Header{"Content-Type": {ContentTypeStructured}}
	cases := []struct {
		name string
		h    nethttp.Header
		body []byte
		code iu.Code
		want string
	}{
		{"no specversion", nethttp.Header{"Ce-Id": {"1"}, "Ce-Type": {"t"}, "Content-Type": {"application/json"}}, []byte(`{}`),
			iu.CodeInvalid, "the ce-specversion header is missing"},
		{"not a CloudEvent", nethttp.Header{}, []byte(`{}`), CodeUnsupportedMedia, "not a CloudEvent"},
		{"binary not JSON", func() nethttp.Header { h := binary("s"); h.Set("Content-Type", "text/plain"); return h }(), []byte("hi"),
			CodeUnsupportedMedia, "must be JSON"},
		{"base64 not JSON", structuredH, b64("AAEC", ""), iu.CodeInvalid, "data_base64 does not hold a JSON document: iu takes JSON data only"},
		{"base64 of text", structuredH, b64("aGk=", "text/plain"), iu.CodeInvalid, "datacontenttype text/plain: iu takes JSON data only"},
		{"data twice", structuredH, []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data":{"x":1},"data_base64":"eyJhIjoxfQ=="}`),
			iu.CodeInvalid, "data and data_base64 are both present"},
		{"data_base64 not a string", structuredH, []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data_base64":5}`),
			iu.CodeInvalid, "data_base64: want a JSON string, got JSON number"},
		{"source not a string", structuredH, []byte(`{"specversion":"1.0","id":"a","source":{},"type":"c"}`),
			iu.CodeInvalid, "source: want a JSON string, got JSON object"},
		{"id not a string", structuredH, []byte(`{"specversion":"1.0","id":7,"source":"b","type":"c"}`),
			iu.CodeInvalid, "id: want a JSON string, got JSON number"},
		{"datacontenttype not a string", structuredH, []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","datacontenttype":["application/json"]}`),
			iu.CodeInvalid, "datacontenttype: want a JSON string, got JSON array"},
		{"time not a string", structuredH, []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","time":true}`),
			iu.CodeInvalid, "time: want a JSON string, got JSON bool"},
		{"batch of nothing", nethttp.Header{"Content-Type": {ContentTypeBatch}}, []byte(`[]`), iu.CodeInvalid, "the batch is empty"},
		{"batch not a list", nethttp.Header{"Content-Type": {ContentTypeBatch}}, []byte(`{}`), iu.CodeInvalid, "want a JSON array of events"},
		{"control character in source", structuredH, structured("a\x01b"), iu.CodeInvalid, "source contains a control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, _, err := Decode(c.h, c.body)
			if err == nil && len(evs) > 0 {
				err = evs[0].Err
			}
			if err == nil {
				t.Fatalf("accepted: %+v", evs)
			}
			if iu.ErrorCode(err) != c.code || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %s %q, want %s containing %q", iu.ErrorCode(err), err, c.code, c.want)
			}
		})
	}
}

// An event of a batch refused for carrying its data twice is named in the
// answer, beside the events around it, which are read.
func TestBatchNamesTheEventWithDataTwice(t *testing.T) {
	body := []byte(`[{"specversion":"1.0","id":"b-1","source":"s","type":"t","data":{}},
		{"specversion":"1.0","id":"b-2","source":"s","type":"t","data":{"x":1},"data_base64":"eyJhIjoxfQ=="},
		{"specversion":"1.0","id":"b-3","source":"s","type":"t","data":{}}]`)
	evs, err := DecodeBatch(body)
	if err != nil || len(evs) != 3 {
		t.Fatalf("%v %v", evs, err)
	}
	if evs[0].Err != nil || evs[2].Err != nil {
		t.Errorf("the good events: %v, %v", evs[0].Err, evs[2].Err)
	}
	if bad := evs[1]; bad.Err == nil || !strings.Contains(bad.Err.Error(), "both present") || bad.Event.ID != "b-2" || bad.Event.Source != "s" {
		t.Errorf("the event with data twice: %+v", bad)
	}
}

// data_base64 whose bytes are JSON is taken as that JSON.
func TestBase64JSON(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data_base64":"eyJhIjoxfQ==","datacontenttype":"application/json"}`)
	evs, _, err := Decode(nethttp.Header{"Content-Type": {ContentTypeStructured}}, body)
	if err != nil || evs[0].Err != nil || string(evs[0].Event.Data) != `{"a":1}` {
		t.Fatalf("%v %+v", err, evs)
	}
}

// FuzzDecode feeds the decoder every mode with arbitrary attributes and
// bodies: it never panics, refuses with a coded error, and what it accepts
// is a valid iu event with JSON data and the source as sent.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), "e-1", "hr:x", "hr.hired", "tpl:wf:onboarding/v2", "application/json", []byte(`{"a":1}`))
	f.Add(uint8(0), "", "s", "t", "", "", []byte(nil))
	f.Add(uint8(0), "e\x01", "a b", "t", "tpl:x", "text/plain", []byte("hi"))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data":{"x":[1,2]},"iutemplate":"tpl:wf:a/v1"}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"%zz","type":"c"}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data_base64":"eyJhIjoxfQ==","datacontenttype":"application/json"}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"0.3","id":"a","source":"b","type":"c","data":"x","datacontenttype":"text/plain"}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","iutemplate":5}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"b","type":"c","data_base64":5,"data":null}`))
	f.Add(uint8(1), "", "", "", "", "", []byte(`{"specversion":"1.0","id":"a","source":"a b","type":"c","datacontenttype":null,"data":{"a":"<"},"data":null}`))
	f.Add(uint8(2), "", "", "", "", "", []byte(`[{"specversion":"1.0","id":"a","source":"b","type":"c"},{"specversion":"1.0","id":"","source":"b","type":"c"}]`))
	f.Add(uint8(2), "", "", "", "", "", []byte(`[]`))
	f.Add(uint8(2), "", "", "", "", "", []byte(`{"not":"a list"}`))
	f.Add(uint8(3), "", "", "", "", "", []byte(`{}`))
	f.Fuzz(func(t *testing.T, mode uint8, id, source, typ, tpl, ct string, body []byte) {
		h := nethttp.Header{}
		switch mode % 4 {
		case 0:
			h.Set("Ce-Specversion", "1.0")
			h.Set("Ce-Id", id)
			h.Set("Ce-Source", source)
			h.Set("Ce-Type", typ)
			if tpl != "" {
				h.Set("Ce-Iutemplate", tpl)
			}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
		case 1:
			h.Set("Content-Type", ContentTypeStructured)
		case 2:
			h.Set("Content-Type", ContentTypeBatch+"; charset=utf-8")
		case 3:
			h.Set("Content-Type", ct)
		}
		evs, got, err := Decode(h, body)
		if err != nil {
			checkError(t, err)
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		for _, in := range evs {
			if in.Err != nil {
				checkError(t, in.Err)
				continue
			}
			if err := in.Event.Validate(); err != nil {
				t.Fatalf("accepted an invalid event %+v: %v", in.Event, err)
			}
			if len(in.Event.Data) > 0 && !json.Valid(in.Event.Data) {
				t.Fatalf("accepted non-JSON data %q", in.Event.Data)
			}
			if got == Binary && in.Event.Source != h.Get("Ce-Source") {
				t.Fatalf("binary source %q read as %q", h.Get("Ce-Source"), in.Event.Source)
			}
			if in.Routing.Template != "" {
				if _, err := iu.ParseTemplateKey(in.Routing.Template); err != nil {
					t.Fatalf("accepted a malformed iutemplate %q", in.Routing.Template)
				}
			}
		}
	})
}

func checkError(t *testing.T, err error) {
	t.Helper()
	var ie *iu.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error %T %v is not an *iu.Error", err, err)
	}
	if ie.Code != iu.CodeInvalid && ie.Code != CodeUnsupportedMedia || ie.Message == "" || !errors.Is(err, iu.ErrInvalidEvent) {
		t.Fatalf("error %s %q", ie.Code, ie.Message)
	}
}

// A null attribute is read as an absent one, as the CloudEvents JSON format
// says: the event is the one without it.
func TestNullAttributesAreAbsent(t *testing.T) {
	without := []byte(`{"specversion":"1.0","id":"a","source":"HR:x","type":"c","data":{"x":1}}`)
	want, err := DecodeStructured(without)
	if err != nil {
		t.Fatal(err)
	}
	for _, nulls := range []string{
		`"data_base64":null`, `"datacontenttype":null`, `"subject":null`, `"time":null`,
		`"dataschema":null`, `"iutemplate":null`, `"data_base64":null,"datacontenttype":null,"subject":null`,
	} {
		body := append(bytes.TrimSuffix(without, []byte("}")), []byte(","+nulls+"}")...)
		got, err := DecodeStructured(body)
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		if got.Event.Source != want.Event.Source || got.Event.ID != want.Event.ID || got.Event.Subject != "" ||
			string(got.Event.Data) != string(want.Event.Data) || got.Routing != want.Routing {
			t.Errorf("%s: read as %+v, want %+v", body, got, want)
		}
	}
	// A required attribute sent as null is missing, and named.
	for attr, body := range map[string]string{
		"source": `{"specversion":"1.0","id":"a","source":null,"type":"c"}`,
		"id":     `{"specversion":"1.0","id":null,"source":"s","type":"c"}`,
		"type":   `{"specversion":"1.0","id":"a","source":"s","type":null}`,
	} {
		_, err := DecodeStructured([]byte(body))
		if err == nil || iu.ErrorCode(err) != iu.CodeInvalid || !strings.Contains(err.Error(), attr) {
			t.Errorf("%s: %v, want a refusal naming %s", body, err, attr)
		}
	}
}

// Data is kept as the producer spelled it, also when iu gives the SDK a
// rewritten event (a source the SDK would normalise, a null it would
// misread).
func TestDataKeepsItsSpelling(t *testing.T) {
	data := `{"team":"<eng> & co",  "x" : 1}`
	for _, attrs := range []string{
		`"source":"s"`,
		`"source":"HR:x y"`,
		`"source":"s","datacontenttype":null`,
		`"source":"HR:x y","data_base64":null,"dataschema":null`,
	} {
		body := `{"specversion":"1.0","id":"a","type":"c",` + attrs + `,"data":` + data + `}`
		ev, err := DecodeStructured([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if string(ev.Event.Data) != data {
			t.Errorf("%s: data kept as %s", body, ev.Event.Data)
		}
	}
}

// Data sent twice is refused, whatever the second value: a proxy could
// inspect one and iu keep the other.
func TestDataTwiceIsRefused(t *testing.T) {
	for _, body := range []string{
		`{"specversion":"1.0","id":"a","source":"s","type":"c","data":{"a":"benign"},"data":{"a":"evil"}}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"c","data":{"a":"benign"},"data_base64":"eyJhIjoiZXZpbCJ9","data":null}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"c","data_base64":"eyJhIjoxfQ==","data_base64":"eyJhIjoyfQ=="}`,
	} {
		_, err := DecodeStructured([]byte(body))
		if err == nil || iu.ErrorCode(err) != iu.CodeInvalid || !strings.Contains(err.Error(), "appears 2 times") {
			t.Errorf("%s: %v, want a refusal saying data appears twice", body, err)
		}
	}
}

// Events of a batch refused before the SDK reads them are named in the
// answer too, by what of their id, source and type can be read.
func TestBatchNamesEventsRefusedEarly(t *testing.T) {
	body := []byte(`[{"specversion":"1.0","id":"e-1","source":"a b","type":"t","data":{},"data":{}},
		{"specversion":"1.0","id":"e-2","source":"s","type":"t","data_base64":[1]},
		{"specversion":"1.0","id":"e-3","source":"s","type":"t","time":"yesterday"},
		{"specversion":"1.0","id":4,"source":"s","type":"t"}]`)
	evs, err := DecodeBatch(body)
	if err != nil || len(evs) != 4 {
		t.Fatalf("%v %v", evs, err)
	}
	for i, want := range []struct{ id, source, msg string }{
		{"e-1", "a b", "data appears 2 times"},
		{"e-2", "s", "data_base64: want a JSON string"},
		{"e-3", "s", "time"},
		{"", "s", "id: want a JSON string, got JSON number"},
	} {
		ev := evs[i]
		if ev.Err == nil || !strings.Contains(ev.Err.Error(), want.msg) || ev.Event.ID != want.id || ev.Event.Source != want.source || ev.Event.Type != "t" {
			t.Errorf("event %d: %+v, %v; want it named %q from %q, refused for %q", i, ev.Event, ev.Err, want.id, want.source, want.msg)
		}
	}
}

// Any attribute iu reads given twice, in any case, is refused: Go's decoder
// and the SDK would each keep one, and a proxy might read the other.
func TestAttributeTwiceIsRefused(t *testing.T) {
	for body, attr := range map[string]string{
		`{"specversion":"1.0","id":"a","source":"s","type":"t","type":"u"}`:                                  "type",
		`{"specversion":"1.0","id":"a","source":"https://a","type":"t","source":"https://b"}`:                "source",
		`{"specversion":"1.0","id":"a","source":"s","type":"t","iutemplate":"x","iutemplate":"tpl:wf:a/v1"}`: "iutemplate",
		`{"specversion":"1.0","id":"a","ID":"b","source":"s","type":"t"}`:                                    "id",
		`{"specversion":"1.0","id":"a","source":"x","Source":null,"type":"t"}`:                               "source",
		`{"specversion":"1.0","id":"a","source":"s","type":"t","iuactor":"ada","IUACTOR":"root"}`:            "iuactor",
	} {
		_, err := DecodeStructured([]byte(body))
		if err == nil || iu.ErrorCode(err) != iu.CodeInvalid || !strings.Contains(err.Error(), attr+" appears 2 times") {
			t.Errorf("%s: %v, want a refusal saying %s appears twice", body, err, attr)
		}
	}
}

// A ce-* header given twice, in any case, is refused in binary mode, as an
// attribute given twice is in structured mode.
func TestBinaryHeaderTwiceIsRefused(t *testing.T) {
	for name, h := range map[string]nethttp.Header{
		"id twice": {"Ce-Specversion": {"1.0"}, "Ce-Id": {"d1", "d1x"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Content-Type": {"application/json"}},
		"actor in two cases": {"Ce-Specversion": {"1.0"}, "Ce-Id": {"d2"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Content-Type": {"application/json"},
			"ce-iuactor": {"alice"}, "CE-IUACTOR": {"mallory"}},
	} {
		_, _, err := Decode(h, []byte(`{}`))
		if err == nil || iu.ErrorCode(err) != iu.CodeInvalid || !strings.Contains(err.Error(), "header is given 2 times") {
			t.Errorf("%s: %v, want a refusal of the header given twice", name, err)
		}
	}
}
