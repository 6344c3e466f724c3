package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/iu-engine/iu"
)

// The media types of CloudEvents' structured and batch modes.
const (
	ctStructured = "application/cloudevents+json"
	ctBatch      = "application/cloudevents-batch+json"
)

// Extension attributes iu reads.
const (
	extTemplate = "iutemplate"
	extActor    = "iuactor"
	extPrefix   = "iuprefix"
)

// Event modes.
const (
	modeBinary     = "binary"
	modeStructured = "structured"
	modeBatch      = "batch"
)

// incoming is one event of a request, parsed, or the reason it was not.
type incoming struct {
	ev      iu.Event
	routing iu.Routing
	err     error // invalid event (400)
}

// DecodeEvents parses the CloudEvents of an HTTP request body in binary,
// structured or batch mode (header and body as received) with the
// CloudEvents SDK, and returns them as iu events with their routing
// extensions. The error is for the request as a whole (415 or 400); an
// event of a batch that is invalid on its own is reported in its incoming.
// The batch flag says whether the answer is a list.
func DecodeEvents(header nethttp.Header, body []byte) (events []incoming, batch bool, err error) {
	mode, err := eventMode(header)
	if err != nil {
		return nil, false, err
	}
	msg := cehttp.NewMessage(header, io.NopCloser(bytes.NewReader(body)))
	defer msg.Finish(nil)
	switch mode {
	case modeBatch:
		evs, err := binding.ToEvents(context.Background(), msg, msg.BodyReader)
		if err != nil {
			return nil, true, httpError(iu.CodeInvalid, "invalid event batch: %s", sdkMessage(err))
		}
		if len(evs) == 0 {
			return nil, true, httpError(iu.CodeInvalid, "invalid event batch: the batch is empty")
		}
		out := make([]incoming, len(evs))
		for i := range evs {
			out[i] = fromCloudEvent(&evs[i], mode)
		}
		return out, true, nil
	default:
		ce, err := binding.ToEvent(context.Background(), msg)
		if err != nil {
			return nil, false, httpError(iu.CodeInvalid, "invalid event: %s", sdkMessage(err))
		}
		in := fromCloudEvent(ce, mode)
		if in.err != nil {
			return nil, false, in.err
		}
		return []incoming{in}, false, nil
	}
}

// eventMode tells the three modes apart by the request's headers.
func eventMode(h nethttp.Header) (string, error) {
	mt := mediaType(h.Get("Content-Type"))
	switch {
	case mt == ctBatch:
		return modeBatch, nil
	case mt == ctStructured:
		return modeStructured, nil
	case h.Get("Ce-Specversion") != "":
		if mt != "" && !isJSONType(mt) {
			return "", httpError(CodeUnsupportedMedia, "binary mode: the event data must be JSON (Content-Type: application/json), not %s", mt)
		}
		return modeBinary, nil
	}
	if mt == "" {
		return "", httpError(CodeUnsupportedMedia, "not a CloudEvent: send ce-* headers (binary mode), Content-Type %s (structured) or %s (batch)", ctStructured, ctBatch)
	}
	return "", httpError(CodeUnsupportedMedia, "Content-Type %s is not a CloudEvents mode: want %s, %s, or ce-* headers with JSON data (binary mode)", mt, ctStructured, ctBatch)
}

// sdkMessage keeps the SDK's reason on one line.
func sdkMessage(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// fromCloudEvent validates a CloudEvent and converts it.
func fromCloudEvent(ce *event.Event, mode string) incoming {
	var in incoming
	fail := func(format string, args ...any) incoming {
		in.err = httpError(iu.CodeInvalid, "invalid event %q: %s", ce.ID(), fmt.Sprintf(format, args...))
		return in
	}
	if err := ce.Validate(); err != nil {
		return fail("%s", sdkMessage(err))
	}
	data := ce.Data()
	if len(data) > 0 {
		if mt := mediaType(ce.DataContentType()); mt != "" && !isJSONType(mt) && mode != modeBinary {
			return fail("datacontenttype %s: the data must be JSON", mt)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			data = nil
		} else if !json.Valid(data) {
			return fail("the data is not valid JSON")
		}
	}
	in.ev = iu.Event{ID: ce.ID(), Source: ce.Source(), Type: ce.Type(), Subject: ce.Subject(), Data: data}
	if t := ce.Time(); !t.IsZero() {
		in.ev.Time = t.UTC()
	}
	if ext := ce.Extensions(); len(ext) > 0 {
		for _, x := range [...]struct {
			name string
			dst  *string
		}{{extTemplate, &in.routing.Template}, {extActor, &in.routing.Actor}, {extPrefix, &in.routing.Prefix}} {
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
	if err := in.ev.Validate(); err != nil {
		in.err = err
		return in
	}
	if t := in.routing.Template; t != "" {
		if _, err := iu.ParseTemplateKey(t); err != nil {
			return fail("extension %s: %v", extTemplate, err)
		}
	}
	if a := in.routing.Actor; a != "" {
		if err := iu.CheckActor(a); err != nil {
			return fail("extension %s: %v", extActor, err)
		}
	}
	if p := in.routing.Prefix; p != "" {
		if err := iu.CheckPrefix(p); err != nil {
			return fail("extension %s: %v", extPrefix, err)
		}
	}
	return in
}

// EventAnswer is the answer for one event: its per-template results, in the
// shapes of emit's --json, and its own status.
type EventAnswer struct {
	ID      string           `json:"id"`
	Source  string           `json:"source"`
	Type    string           `json:"type"`
	Status  int              `json:"status"`
	Results []TemplateResult `json:"results"`
	Error   *errorBody       `json:"error,omitempty"`
}

// TemplateResult is one template's answer to an event: a result, or an
// error.
type TemplateResult struct {
	iu.Result
	Error *errorBody `json:"error,omitempty"`
}

// MarshalJSON writes a result as emit --json does, or {"template", "error"}.
func (t TemplateResult) MarshalJSON() ([]byte, error) { return appendTemplateResult(nil, &t), nil }

// UnmarshalJSON reads either shape.
func (t *TemplateResult) UnmarshalJSON(b []byte) error {
	var x struct {
		iu.Result
		Error *errorBody `json:"error"`
	}
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*t = TemplateResult{Result: x.Result, Error: x.Error}
	return nil
}

// statusRank orders the statuses of an event's results: the answer is the
// highest ranked. A retryable refusal (503) comes first, so that a producer
// sends the event again (its other templates then answer replayed); then
// the event's own faults; then conflicts; then created; then replayed or
// shadowed (200).
var statusRank = map[int]int{
	nethttp.StatusServiceUnavailable:    9,
	nethttp.StatusInternalServerError:   8,
	nethttp.StatusBadRequest:            7,
	nethttp.StatusNotFound:              6,
	nethttp.StatusUnprocessableEntity:   5,
	nethttp.StatusConflict:              4,
	nethttp.StatusCreated:               2,
	nethttp.StatusOK:                    1,
	nethttp.StatusRequestEntityTooLarge: 7,
}

func worse(a, b int) int {
	if statusRank[b] > statusRank[a] {
		return b
	}
	return a
}

// handleEvents is POST /v1/events.
func (s *Server) handleEvents(c *call) error {
	body, err := readAll(c.r.Body)
	if err != nil {
		s.metrics.event("", "too_large")
		return err
	}
	ins, batch, err := DecodeEvents(c.r.Header, body)
	if err != nil {
		s.metrics.event("", string(iu.ErrorCode(err)))
		return err
	}
	answers := s.applyEvents(c, ins)
	status := 0
	gate := ""
	for i := range answers {
		status = worse(status, answers[i].Status)
		for _, r := range answers[i].Results {
			if r.Gate != "" {
				gate = r.Gate
			}
		}
	}
	if status == nethttp.StatusServiceUnavailable {
		c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		if gate != "" {
			c.w.Header().Set("Iu-Gate", gate)
		}
	}
	c.outcome = "events"
	b := make([]byte, 0, 320*len(answers))
	if batch {
		b = append(b, '[')
		for i := range answers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEventAnswer(b, &answers[i])
		}
		b = append(b, ']')
	} else {
		b = appendEventAnswer(b, &answers[0])
	}
	h := c.w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	c.w.WriteHeader(status)
	c.w.Write(append(b, '\n'))
	return nil
}

// applyEvents routes every event and submits them to the batcher at once,
// one unit per event (its fan-out shares a transaction), and answers each.
func (s *Server) applyEvents(c *call, ins []incoming) []EventAnswer {
	answers := make([]EventAnswer, len(ins))
	units := make([][]iu.EmitRequest, len(ins))
	var triggers []iu.Trigger
	var trigErr error
	loaded := false
	for i := range ins {
		in := &ins[i]
		a := &answers[i]
		a.ID, a.Source, a.Type, a.Results = in.ev.ID, in.ev.Source, in.ev.Type, []TemplateResult{}
		if in.err != nil {
			body := publicError(in.err, c.id)
			a.Status, a.Error = statusOf(body.Code), &body
			continue
		}
		if in.routing.Template == "" && !loaded {
			triggers, trigErr = s.triggers.get(c.ctx(), s.engine)
			loaded = true
		}
		if in.routing.Template == "" && trigErr != nil {
			body := publicError(trigErr, c.id)
			a.Status, a.Error = statusOf(body.Code), &body
			continue
		}
		reqs, err := iu.Route(in.ev, in.routing, triggers, c.token.Name)
		if err != nil {
			body := publicError(err, c.id)
			a.Status, a.Error = statusOf(body.Code), &body
			continue
		}
		units[i] = reqs
	}
	results := s.batcher.SubmitAll(c.ctx(), units)
	for i, res := range results {
		a := &answers[i]
		if units[i] == nil {
			s.metrics.event(a.Type, outcomeOf(a.Status))
			continue
		}
		if res.Err != nil {
			body := publicError(res.Err, c.id)
			if body.Code == iu.CodeInternal {
				c.logger().Error("event failed", "id", a.ID, "err", res.Err)
			}
			a.Status, a.Error = statusOf(body.Code), &body
			s.metrics.event(a.Type, outcomeOf(a.Status))
			continue
		}
		a.Results = make([]TemplateResult, len(res.Outcomes))
		for j, o := range res.Outcomes {
			tpl := units[i][j].TemplateKey
			st := nethttp.StatusOK
			if o.Err != nil {
				body := publicError(o.Err, c.id)
				a.Results[j] = TemplateResult{Result: iu.Result{TemplateKey: tpl}, Error: &body}
				st = statusOf(body.Code)
				s.metrics.instantiation(tpl, string(body.Code))
			} else {
				r := o.Result
				a.Results[j] = TemplateResult{Result: r}
				switch {
				case r.Status == iu.StatusGated:
					st = nethttp.StatusServiceUnavailable
				case r.Created():
					st = nethttp.StatusCreated
				}
				s.metrics.instantiation(tpl, resultLabel(r))
			}
			a.Status = worse(a.Status, st)
		}
		s.metrics.event(a.Type, outcomeOf(a.Status))
	}
	return answers
}

// outcomeOf names an event's answer for the events metric.
func outcomeOf(status int) string {
	switch status {
	case nethttp.StatusCreated:
		return "created"
	case nethttp.StatusOK:
		return "replayed_or_shadow"
	case nethttp.StatusServiceUnavailable:
		return "unavailable"
	case nethttp.StatusBadRequest:
		return "invalid"
	case nethttp.StatusNotFound:
		return "unknown_template"
	case nethttp.StatusConflict:
		return "conflict"
	case nethttp.StatusUnprocessableEntity:
		return "unmatched"
	}
	return "error"
}

// resultLabel names a result for the instantiations metric.
func resultLabel(r iu.Result) string {
	switch {
	case r.Replayed:
		return "replayed"
	case r.Status == iu.StatusOK:
		return "created"
	}
	return string(r.Status)
}
