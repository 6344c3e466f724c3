// Package intake reads CloudEvents as iu takes them, for every adapter that
// receives events from outside (HTTP, NATS JetStream): binary mode (ce-*
// headers, the data as the body), structured mode (the event as one JSON
// object) and batch mode (a JSON array of them). Decoding is the
// CloudEvents SDK's, with one exception: the source attribute is taken as
// the bytes the producer sent. The SDK parses it as a URI reference and
// writes it back normalised ("a b" becomes "a%20b", "HR:x" becomes "hr:x"),
// and the idempotency key must be computed from exactly what was sent, on
// every path, or one event could make two instances and two events one.
package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	nethttp "net/http"
	"net/textproto"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/iu-engine/iu"
)

// The media types of CloudEvents' structured and batch modes.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// Extension attributes iu reads.
const (
	ExtTemplate = "iutemplate"
	ExtActor    = "iuactor"
	ExtPrefix   = "iuprefix"
)

// Mode is how a message carries its events.
type Mode string

const (
	Binary     Mode = "binary"
	Structured Mode = "structured"
	Batch      Mode = "batch"
)

// CodeUnsupportedMedia is the code of a message whose content type is not a
// CloudEvents mode iu takes (HTTP answers it 415).
const CodeUnsupportedMedia iu.Code = "unsupported_media_type"

// Event is one event of a message, read, or the reason it could not be.
type Event struct {
	Event   iu.Event
	Routing iu.Routing
	Err     error // an invalid event (iu.ErrInvalidEvent); Event holds what was read
}

// placeholderSource stands in for a source the SDK cannot take as a URI
// reference ("%zz"): it only passes the SDK's checks, and the source read
// raw replaces it.
const placeholderSource = "iu:source"

// ModeOf tells the three modes apart by a message's headers. Header names
// are matched without regard to case.
func ModeOf(h nethttp.Header) (Mode, error) {
	mt := MediaType(h.Get("Content-Type"))
	switch {
	case mt == ContentTypeBatch:
		return Batch, nil
	case mt == ContentTypeStructured:
		return Structured, nil
	case h.Get("Ce-Specversion") != "":
		if mt != "" && !IsJSONType(mt) {
			return "", unsupported("binary mode: the event data must be JSON (Content-Type: application/json), not %s", mt)
		}
		return Binary, nil
	}
	if ce := ceHeaders(h); len(ce) > 0 {
		return "", invalid("binary mode: the ce-specversion header is missing (send ce-specversion: 1.0 with %s)", strings.Join(ce, ", "))
	}
	if mt == "" {
		return "", unsupported("not a CloudEvent: send ce-* headers (binary mode), Content-Type %s (structured) or %s (batch)", ContentTypeStructured, ContentTypeBatch)
	}
	return "", unsupported("Content-Type %s is not a CloudEvents mode: want %s, %s, or ce-* headers with JSON data (binary mode)", mt, ContentTypeStructured, ContentTypeBatch)
}

// ceHeaders lists the ce-* headers of h, in lower case.
func ceHeaders(h nethttp.Header) []string {
	var out []string
	for k := range h {
		if len(k) > 3 && strings.EqualFold(k[:3], "ce-") {
			out = append(out, strings.ToLower(k))
		}
	}
	return out
}

// Decode reads the events of a message in the mode its headers say. The
// error is for the message as a whole (iu.ErrInvalidEvent, or
// CodeUnsupportedMedia); an event of a batch that is invalid on its own is
// reported in its Event. The headers are those of HTTP or of a NATS
// message: any map of names to values, matched without regard to case.
func Decode(h nethttp.Header, body []byte) ([]Event, Mode, error) {
	h = canonical(h)
	mode, err := ModeOf(h)
	if err != nil {
		return nil, "", err
	}
	switch mode {
	case Batch:
		evs, err := DecodeBatch(body)
		return evs, mode, err
	case Structured:
		ev, err := DecodeStructured(body)
		return []Event{ev}, mode, err
	}
	ev, err := decodeBinary(h, body)
	return []Event{ev}, mode, err
}

// canonical returns h with its names in canonical MIME form (Ce-Id), which
// is how the SDK looks them up: NATS keeps header names as sent.
func canonical(h nethttp.Header) nethttp.Header {
	for k := range h {
		if textproto.CanonicalMIMEHeaderKey(k) != k {
			c := make(nethttp.Header, len(h))
			for k, v := range h {
				ck := textproto.CanonicalMIMEHeaderKey(k)
				c[ck] = append(c[ck], v...)
			}
			return c
		}
	}
	return h
}

// decodeBinary reads a binary-mode event: attributes in ce-* headers, the
// data as the body.
func decodeBinary(h nethttp.Header, body []byte) (Event, error) {
	// An attribute given twice (in any case: the names are canonical here)
	// would be read as its first by iu and perhaps as its last by a proxy;
	// structured mode refuses it too.
	for k, v := range h {
		if len(v) > 1 && strings.HasPrefix(k, "Ce-") {
			return Event{}, invalid("invalid event: the %s header is given %d times: send it once", strings.ToLower(k), len(v))
		}
	}
	raw := h.Get("Ce-Source")
	if !sdkExact(raw) {
		h = h.Clone()
		h.Set("Ce-Source", placeholderSource)
	}
	msg := cehttp.NewMessage(h, io.NopCloser(bytes.NewReader(body)))
	defer msg.Finish(nil)
	ce, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return Event{}, invalid("invalid event: %s", sdkMessage(err))
	}
	ev := FromCloudEvent(ce, raw, Binary)
	return ev, ev.Err
}

// DecodeStructured reads one event in structured mode: the whole event as
// a JSON object.
func DecodeStructured(body []byte) (Event, error) {
	var m struct {
		SpecVersion     member `json:"specversion"`
		ID              member `json:"id"`
		Source          valued `json:"source"`
		Type            member `json:"type"`
		Subject         member `json:"subject"`
		Time            member `json:"time"`
		Data            valued `json:"data"`
		DataBase64      member `json:"data_base64"`
		DataContentType member `json:"datacontenttype"`
		DataSchema      member `json:"dataschema"`
		Template        member `json:"iutemplate"`
		Actor           member `json:"iuactor"`
		Prefix          member `json:"iuprefix"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return Event{}, invalid("invalid event: %s", jsonMessage(err))
	}
	attrs := []struct {
		name string
		m    member
		str  bool // a string attribute
	}{{"specversion", m.SpecVersion, true}, {"id", m.ID, true}, {"source", m.Source.member, true}, {"type", m.Type, true},
		{"subject", m.Subject, true}, {"time", m.Time, true}, {"data", m.Data.member, false}, {"data_base64", m.DataBase64, true},
		{"datacontenttype", m.DataContentType, true}, {"dataschema", m.DataSchema, true},
		{ExtTemplate, m.Template, false}, {ExtActor, m.Actor, false}, {ExtPrefix, m.Prefix, false}}
	// An attribute iu reads given twice (Go's decoder matches names without
	// regard to case, the SDK exactly) would let a proxy read one and iu
	// keep the other.
	for _, a := range attrs {
		if a.m.n > 1 {
			return named(body, invalid("invalid event: %s appears %d times (names match without regard to case): send it once", a.name, a.m.n))
		}
	}
	// The string attributes are checked here, to be named: the SDK's words
	// for them are its parser's, and it panics on a data_base64 that is not
	// a string.
	for _, a := range attrs {
		if a.str && a.m.present() && a.m.first != '"' {
			return named(body, invalid("invalid event: %s: want a JSON string, got JSON %s", a.name, valueKind(a.m.first)))
		}
	}
	var raw string
	if m.Source.present() {
		if err := json.Unmarshal(m.Source.raw, &raw); err != nil {
			return Event{}, invalid("invalid event: source: %s", jsonMessage(err))
		}
	}
	// A null attribute is an absent one (the JSON format, "Type System
	// Mapping"). The SDK reads most so, but not these: it would parse
	// "data_base64": null as base64 and "datacontenttype": null as a media
	// type.
	replace := !sdkExact(raw)
	rewrite := replace || m.Source.null() || m.DataBase64.null() || m.DataContentType.null() || m.DataSchema.null()
	sdkBody := body
	if rewrite {
		var err error
		if sdkBody, err = forSDK(body, replace); err != nil {
			return Event{}, err
		}
	}
	ce := event.New()
	if err := json.Unmarshal(sdkBody, &ce); err != nil {
		return named(body, invalid("invalid event: %s", sdkMessage(err)))
	}
	if rewrite && m.Data.present() && !ce.DataBase64 {
		// The rewrite spelled data anew (compacted, HTML escaped); where the
		// SDK kept that spelling as it is, keep the producer's instead.
		if spelled, err := json.Marshal(m.Data.raw); err == nil && bytes.Equal(ce.DataEncoded, spelled) {
			ce.DataEncoded = m.Data.raw
		}
	}
	ev := FromCloudEvent(&ce, raw, Structured)
	// The SDK takes data_base64 and drops data without a word: what a proxy
	// inspected (data) would not be what iu kept. Refused after reading the
	// rest, so that a batch's answer names the event.
	if ev.Err == nil && m.DataBase64.present() && m.Data.present() {
		ev.Err = invalid("invalid event: data and data_base64 are both present: send the data once, in one of them")
	}
	return ev, ev.Err
}

// named returns an event refused before the SDK read it, with the id,
// source and type that are strings, for a batch's answer to name it.
func named(body []byte, err error) (Event, error) {
	var a struct{ ID, Source, Type any }
	_ = json.Unmarshal(body, &a) // best effort: the refusal stands either way
	str := func(v any) string { s, _ := v.(string); return s }
	return Event{Event: iu.Event{ID: str(a.ID), Source: str(a.Source), Type: str(a.Type)}, Err: err}, err
}

// member is a top-level member of a structured event as sent: how often
// it appeared and the first byte of its last value, which tells its kind.
type member struct {
	n     int
	first byte
}

// UnmarshalJSON is called for every appearance of the member, null too.
func (m *member) UnmarshalJSON(b []byte) error {
	m.n++
	m.first = b[0]
	return nil
}

func (m member) null() bool    { return m.n > 0 && m.first == 'n' }
func (m member) present() bool { return m.n > 0 && m.first != 'n' }

// valueKind names the kind of a JSON value by its first byte.
func valueKind(first byte) string {
	switch first {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	case '"':
		return "string"
	}
	return "number"
}

// valued is a member whose last value is kept too.
type valued struct {
	member
	raw json.RawMessage
}

func (v *valued) UnmarshalJSON(b []byte) error {
	v.member.UnmarshalJSON(b)
	v.raw = append(v.raw[:0], b...)
	return nil
}

// DecodeBatch reads a batch: a JSON array of structured events. An empty
// batch is refused; an invalid event fails alone, in its Event.
func DecodeBatch(body []byte) ([]Event, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, invalid("invalid event batch: %s", jsonMessage(err))
	}
	if len(items) == 0 {
		return nil, invalid("invalid event batch: the batch is empty")
	}
	out := make([]Event, len(items))
	for i, item := range items {
		ev, err := DecodeStructured(item)
		if err != nil && ev.Err == nil {
			ev.Err = err
		}
		out[i] = ev
	}
	return out, nil
}

// forSDK returns a structured event for the SDK to read: its null
// attributes left out, and its source, when replaceSource, replaced by the
// placeholder.
func forSDK(body []byte, replaceSource bool) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, invalid("invalid event: %s", jsonMessage(err))
	}
	for k, v := range m {
		if string(v) == "null" {
			delete(m, k)
		}
	}
	if replaceSource {
		m["source"] = json.RawMessage(`"` + placeholderSource + `"`)
	}
	return json.Marshal(m)
}

// sdkExact reports whether the SDK keeps source as it is: it parses the
// attribute as a URI reference and writes it back.
func sdkExact(source string) bool {
	if source == "" {
		return true
	}
	u := types.ParseURIRef(source)
	return u != nil && u.String() == source
}

// FromCloudEvent validates a CloudEvent decoded by the SDK and converts it,
// with source as the producer sent it. Invalid events carry Err
// (iu.ErrInvalidEvent) naming the attribute at fault.
func FromCloudEvent(ce *event.Event, source string, mode Mode) Event {
	var in Event
	fail := func(format string, args ...any) Event {
		in.Err = invalid("invalid event %q: %s", ce.ID(), fmt.Sprintf(format, args...))
		return in
	}
	in.Event = iu.Event{ID: ce.ID(), Source: source, Type: ce.Type(), Subject: ce.Subject()}
	if err := ce.Validate(); err != nil {
		return fail("%s", sdkMessage(err))
	}
	data := ce.Data()
	if len(data) > 0 {
		mt := MediaType(ce.DataContentType())
		switch {
		case ce.DataBase64 && mt != "" && !IsJSONType(mt):
			return fail("data_base64 with datacontenttype %s: iu takes JSON data only (send data, or data_base64 of a JSON document with datacontenttype application/json)", mt)
		case ce.DataBase64 && !json.Valid(data):
			return fail("data_base64 does not hold a JSON document: iu takes JSON data only (send data, or data_base64 of a JSON document with datacontenttype application/json)")
		case mt != "" && !IsJSONType(mt) && mode != Binary:
			return fail("datacontenttype %s: iu takes JSON data only", mt)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			data = nil
		} else if !json.Valid(data) {
			return fail("the data is not valid JSON: iu takes JSON data only")
		}
	}
	in.Event.Data = data
	if t := ce.Time(); !t.IsZero() {
		in.Event.Time = t.UTC()
	}
	if ext := ce.Extensions(); len(ext) > 0 {
		for _, x := range [...]struct {
			name string
			dst  *string
		}{{ExtTemplate, &in.Routing.Template}, {ExtActor, &in.Routing.Actor}, {ExtPrefix, &in.Routing.Prefix}} {
			v, ok := ext[x.name]
			if !ok {
				continue
			}
			s, err := types.ToString(v)
			if err != nil {
				return fail("extension %s must be a string", x.name)
			}
			*x.dst = s
		}
	}
	if err := in.Event.Validate(); err != nil {
		in.Err = err
		return in
	}
	if t := in.Routing.Template; t != "" {
		if _, err := iu.ParseTemplateKey(t); err != nil {
			return fail("extension %s: %v", ExtTemplate, err)
		}
	}
	if a := in.Routing.Actor; a != "" {
		if err := iu.CheckActor(a); err != nil {
			return fail("extension %s: %v", ExtActor, err)
		}
	}
	if p := in.Routing.Prefix; p != "" {
		if err := iu.CheckPrefix(p); err != nil {
			return fail("extension %s: %v", ExtPrefix, err)
		}
	}
	return in
}

// MediaType returns the media type of a Content-Type value, lower case,
// without parameters ("" if absent).
func MediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}

// IsJSONType reports whether a media type is JSON.
func IsJSONType(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// sdkMessage keeps the SDK's reason on one line.
func sdkMessage(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// jsonMessage words encoding/json's errors.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("want a JSON %s, got JSON %s", jsonKind(te.Type.Kind().String()), te.Value)
	}
	return sdkMessage(err)
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "array of events"
	case "struct", "map":
		return "object (one event)"
	}
	return k
}

func invalid(format string, args ...any) error {
	return iu.Errorf(iu.ErrInvalidEvent, format, args...)
}

func unsupported(format string, args ...any) error {
	return &iu.Error{Code: CodeUnsupportedMedia, Message: fmt.Sprintf(format, args...), Err: iu.ErrInvalidEvent}
}
