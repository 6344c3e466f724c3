package http

import (
	"encoding/json"
	"errors"
	nethttp "net/http"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

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
	ins, mode, err := intake.Decode(c.r.Header, body)
	batch := mode == intake.Batch
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
func (s *Server) applyEvents(c *call, ins []intake.Event) []EventAnswer {
	answers := make([]EventAnswer, len(ins))
	units := make([][]iu.EmitRequest, len(ins))
	var triggers []iu.Trigger
	var trigErr error
	loaded := false
	for i := range ins {
		in := &ins[i]
		a := &answers[i]
		a.ID, a.Source, a.Type, a.Results = in.Event.ID, in.Event.Source, in.Event.Type, []TemplateResult{}
		if in.Err != nil {
			body := publicError(in.Err, c.id)
			a.Status, a.Error = statusOf(body.Code), &body
			continue
		}
		if in.Routing.Template == "" && !loaded {
			triggers, trigErr = s.triggers.Get(c.ctx(), s.engine)
			loaded = true
		}
		if in.Routing.Template == "" && trigErr != nil {
			body := publicError(trigErr, c.id)
			a.Status, a.Error = statusOf(body.Code), &body
			continue
		}
		reqs, err := iu.Route(in.Event, in.Routing, triggers, c.token.Name)
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
			switch body.Code {
			case iu.CodeInternal:
				c.logger().Error("event failed", "id", a.ID, "err", res.Err)
			case iu.CodeUnavailable:
				c.logger().Warn("event not taken", "id", a.ID, "err", res.Err)
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
				s.metrics.instantiation(tpl, errors.Is(o.Err, iu.ErrIdempotencyConflict), string(body.Code))
			} else {
				r := o.Result
				a.Results[j] = TemplateResult{Result: r}
				switch {
				case r.Status == iu.StatusGated:
					st = nethttp.StatusServiceUnavailable
				case r.Created():
					st = nethttp.StatusCreated
				}
				s.metrics.instantiation(tpl, true, resultLabel(r))
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
