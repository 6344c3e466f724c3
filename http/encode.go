package http

import (
	"strconv"

	"github.com/iu-engine/iu"
)

// The answers to events are written by hand: they are the hot path of the
// server (one per event, thousands a second), and encoding/json's
// reflection costs more than the rest of the handler. The shapes are those
// of EventAnswer and TemplateResult's MarshalJSON; a test compares them.

func appendErrorBody(b []byte, e *errorBody) []byte {
	b = append(b, `{"code":`...)
	b = iu.AppendJSONString(b, string(e.Code))
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = iu.AppendJSONString(b, e.Reason)
	}
	b = append(b, `,"message":`...)
	b = iu.AppendJSONString(b, e.Message)
	return append(b, '}')
}

// appendResult appends a result as emit --json writes it.
func appendResult(b []byte, r *iu.Result) []byte {
	b = append(b, `{"status":`...)
	b = iu.AppendJSONString(b, string(r.Status))
	if r.TemplateKey != "" {
		b = append(b, `,"template":`...)
		b = iu.AppendJSONString(b, r.TemplateKey)
	}
	if r.InstanceKey != "" {
		b = append(b, `,"instance_key":`...)
		b = iu.AppendJSONString(b, r.InstanceKey)
	}
	if r.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = iu.AppendJSONString(b, r.IdempotencyKey)
	}
	b = append(b, `,"replayed":`...)
	b = strconv.AppendBool(b, r.Replayed)
	if r.Gate != "" {
		b = append(b, `,"gate":`...)
		b = iu.AppendJSONString(b, r.Gate)
	}
	return append(b, '}')
}

func appendTemplateResult(b []byte, t *TemplateResult) []byte {
	if t.Error != nil {
		b = append(b, `{"template":`...)
		b = iu.AppendJSONString(b, t.TemplateKey)
		b = append(b, `,"error":`...)
		b = appendErrorBody(b, t.Error)
		return append(b, '}')
	}
	return appendResult(b, &t.Result)
}

// appendEventAnswer appends one event's answer.
func appendEventAnswer(b []byte, a *EventAnswer) []byte {
	b = append(b, `{"id":`...)
	b = iu.AppendJSONString(b, a.ID)
	b = append(b, `,"source":`...)
	b = iu.AppendJSONString(b, a.Source)
	b = append(b, `,"type":`...)
	b = iu.AppendJSONString(b, a.Type)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	b = append(b, `,"results":[`...)
	for i := range a.Results {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTemplateResult(b, &a.Results[i])
	}
	b = append(b, ']')
	if a.Error != nil {
		b = append(b, `,"error":`...)
		b = appendErrorBody(b, a.Error)
	}
	return append(b, '}')
}

// MarshalJSON writes the answer; see appendEventAnswer.
func (a EventAnswer) MarshalJSON() ([]byte, error) { return appendEventAnswer(nil, &a), nil }
