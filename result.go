package iu

// Status is the outcome of one auto-instantiation.
type Status string

const (
	StatusOK     Status = "ok"     // an instance exists for the event (new, or replayed)
	StatusShadow Status = "shadow" // the template is in shadow mode: logged, nothing made
	StatusGated  Status = "gated"  // a gate is off: nothing written
)

// Result answers one event for one template. Replaying an event returns the
// first answer with Replayed set.
type Result struct {
	Status         Status `json:"status"`
	TemplateKey    string `json:"template,omitempty"`
	InstanceKey    string `json:"instance_key,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Replayed       bool   `json:"replayed"`
	Gate           string `json:"gate,omitempty"`
}

// Created reports whether the result wrote a new instance.
func (r Result) Created() bool { return r.Status == StatusOK && !r.Replayed }
