package iu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Trigger routes events to a template: every event whose type matches Type
// (and whose source is Source, when Source is set) instantiates Template.
// Type is an exact event type ("com.acme.hr.hired"), a prefix ending in
// ".*" ("com.acme.hr.*" matches "com.acme.hr.hired" and "com.acme.hr.a.b",
// not "com.acme.hr"), or "*" for every type.
type Trigger struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Template string `json:"template"`
	// Actor is recorded as the instantiation's actor; empty means the
	// event's iuactor extension, else the name of the token that posted it.
	Actor string `json:"actor,omitempty"`
	// Prefix is the instance key prefix; empty means the actor.
	Prefix    string `json:"instance_prefix,omitempty"`
	CreatedAt Time   `json:"created_at"`
	CreatedBy string `json:"created_by"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$`)

// CheckName validates the name of a trigger or a token: 1 to 64 letters,
// digits, '.', '_', ':', '@' or '-', starting with a letter or digit. A token's
// name may become an actor, so the two share a character set.
func CheckName(what, name string) error {
	if name == "" {
		return Errorf(ErrInvalidInput, "%s name is required", what)
	}
	if !nameRE.MatchString(name) {
		return Errorf(ErrInvalidInput, "%s name %q: use 1 to 64 letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// Validate checks a trigger's fields; Name may be empty (AddTrigger
// derives one). Errors name the field at fault.
func (t *Trigger) Validate() error {
	if t.Name != "" {
		if err := CheckName("trigger", t.Name); err != nil {
			return err
		}
	}
	if err := checkTypePattern(t.Type); err != nil {
		return err
	}
	if t.Source != "" {
		if err := checkAttr("source", t.Source); err != nil {
			return Errorf(ErrInvalidInput, "trigger source: %v", err)
		}
	}
	if t.Template == "" {
		return Errorf(ErrInvalidInput, "trigger template is required (a template key such as tpl:wf:onboarding/v2)")
	}
	if _, err := ParseTemplateKey(t.Template); err != nil {
		return Errorf(ErrInvalidInput, "trigger template: %v", err)
	}
	if t.Actor != "" {
		if err := CheckActor(t.Actor); err != nil {
			return Errorf(ErrInvalidInput, "trigger %v", err)
		}
	}
	if t.Prefix != "" {
		if err := CheckPrefix(t.Prefix); err != nil {
			return Errorf(ErrInvalidInput, "trigger %v", err)
		}
	}
	return nil
}

func checkTypePattern(p string) error {
	if p == "" {
		return Errorf(ErrInvalidInput, "trigger type is required: an event type (com.acme.hr.hired), a prefix (com.acme.hr.*) or * for every type")
	}
	if err := checkAttr("type", p); err != nil {
		return Errorf(ErrInvalidInput, "trigger type: %v", err)
	}
	if p == "*" {
		return nil
	}
	head, wild := strings.CutSuffix(p, ".*")
	if strings.Contains(head, "*") || (wild && head == "") {
		return Errorf(ErrInvalidInput, "trigger type %q: '*' may only end a prefix, as in com.acme.hr.* (or stand alone for every type)", p)
	}
	return nil
}

// DefaultTriggerName derives a trigger's name from what it matches and
// where it goes, so that adding the same trigger twice is refused.
func DefaultTriggerName(t *Trigger) string {
	h := sha256.Sum256([]byte(t.Type + "\x00" + t.Source + "\x00" + t.Template))
	return "trg-" + hex.EncodeToString(h[:4])
}

// Matches reports whether the trigger applies to an event of type typ from
// source.
func (t *Trigger) Matches(typ, source string) bool {
	if t.Source != "" && t.Source != source {
		return false
	}
	if t.Type == "*" {
		return true
	}
	if head, ok := strings.CutSuffix(t.Type, "*"); ok {
		return strings.HasPrefix(typ, head)
	}
	return t.Type == typ
}

// specificity orders matches: an exact type before any prefix, a longer
// prefix before a shorter one, a trigger that names the source before one
// that does not.
func (t *Trigger) specificity() (exact bool, prefix int, sourced bool) {
	head, wild := strings.CutSuffix(t.Type, "*")
	return !wild, len(head), t.Source != ""
}

// MatchTriggers returns the triggers that apply to an event of type typ from
// source, most specific first, at most one per template: when several route
// the event to the same template (they would share its idempotency key),
// the most specific one decides the actor and the instance prefix.
func MatchTriggers(triggers []Trigger, typ, source string) []Trigger {
	var out []Trigger
	for _, t := range triggers {
		if t.Matches(typ, source) {
			out = append(out, t)
		}
	}
	if len(out) < 2 {
		return out
	}
	sort.SliceStable(out, func(i, j int) bool {
		ei, pi, si := out[i].specificity()
		ej, pj, sj := out[j].specificity()
		switch {
		case ei != ej:
			return ei
		case pi != pj:
			return pi > pj
		case si != sj:
			return si
		}
		return out[i].Name < out[j].Name
	})
	seen := make(map[string]bool, len(out))
	kept := out[:0]
	for _, t := range out {
		if !seen[t.Template] {
			seen[t.Template] = true
			kept = append(kept, t)
		}
	}
	return kept
}

// Routing is what an event says about where it goes, in its CloudEvents
// extension attributes: iutemplate names a template (instead of the
// triggers), iuactor and iuprefix the actor and instance prefix.
type Routing struct {
	Template string
	Actor    string
	Prefix   string
}

// Route turns one event into its emit requests: one for the template it
// names, else one per matching trigger. defaultActor (the producer's token
// name) is the actor when neither the trigger nor the event names one. An
// event that names no template and matches no trigger is ErrUnmatched.
func Route(ev Event, r Routing, triggers []Trigger, defaultActor string) ([]EmitRequest, error) {
	actor := func(t string) string {
		switch {
		case t != "":
			return t
		case r.Actor != "":
			return r.Actor
		}
		return defaultActor
	}
	prefix := func(t string) string {
		if t != "" {
			return t
		}
		return r.Prefix
	}
	if r.Template != "" {
		return []EmitRequest{{TemplateKey: r.Template, Event: ev, Actor: actor(""), Prefix: r.Prefix}}, nil
	}
	ts := MatchTriggers(triggers, ev.Type, ev.Source)
	if len(ts) == 0 {
		return nil, Errorf(ErrUnmatched, "event %q of type %q from %q matches no trigger and names no template (extension iutemplate): add a trigger (iu trigger add) or name the template", ev.ID, ev.Type, ev.Source)
	}
	reqs := make([]EmitRequest, len(ts))
	for i, t := range ts {
		reqs[i] = EmitRequest{TemplateKey: t.Template, Event: ev, Actor: actor(t.Actor), Prefix: prefix(t.Prefix)}
	}
	return reqs, nil
}

// AddTrigger validates and stores a trigger; the template must be published.
// A trigger whose name, or whose type, source and template, are taken is
// ErrTriggerExists.
func (e *Engine) AddTrigger(ctx context.Context, t Trigger, actor string) (Trigger, error) {
	w, err := claim(ctx, actor)
	if err != nil {
		return Trigger{}, err
	}
	if err := t.Validate(); err != nil {
		return Trigger{}, err
	}
	if t.Name == "" {
		t.Name = DefaultTriggerName(&t)
	}
	t.CreatedBy, t.CreatedAt = w.By, TimeOf(e.clock())
	err = e.update(ctx, func(tx Tx) error {
		if _, err := tx.GetTemplate(ctx, t.Template); err != nil {
			if errors.Is(err, ErrUnknownTemplate) {
				return Errorf(ErrUnknownTemplate, "unknown template %q: publish it before adding a trigger for it (iu template publish FILE)", t.Template)
			}
			return err
		}
		if err := tx.InsertTrigger(ctx, &t); err != nil {
			switch {
			case errors.Is(err, ErrTriggerRouteTaken):
				return Errorf(ErrTriggerRouteTaken, "a trigger already routes type %q%s to %s", t.Type, fromSource(t.Source), t.Template)
			case errors.Is(err, ErrTriggerExists):
				return Errorf(ErrTriggerExists, "trigger %q already exists: remove it first (iu trigger remove %s) or choose another name", t.Name, t.Name)
			}
			return err
		}
		return e.audit(ctx, tx, w, AuditTriggerAdd, t.Name, "%s", t.Describe())
	})
	if err != nil {
		return Trigger{}, err
	}
	return t, nil
}

// ListTriggers lists triggers by name, a page at a time.
func (e *Engine) ListTriggers(ctx context.Context, r PageRequest) (Page[Trigger], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[Trigger]{}, err
	}
	after, err := parseKeyCursor(r.After)
	if err != nil {
		return Page[Trigger]{}, err
	}
	var rows []Trigger
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListTriggers(ctx, after, limit+1)
		return err
	})
	return pageOf(rows, limit, func(t *Trigger) string { return keyCursor(t.Name) }), err
}

// Triggers returns every trigger, ordered by name: what routing needs.
// Triggers are few (an operator adds each), so they are read whole.
func (e *Engine) Triggers(ctx context.Context) ([]Trigger, error) {
	var out []Trigger
	err := e.store.View(ctx, func(tx Tx) (err error) {
		out, err = tx.ListTriggers(ctx, "", math.MaxInt32)
		return err
	})
	return out, err
}

// RemoveTrigger deletes a trigger by name and returns it; ErrNotFound if
// there is none.
func (e *Engine) RemoveTrigger(ctx context.Context, name string) (Trigger, error) {
	if err := CheckName("trigger", name); err != nil {
		return Trigger{}, err
	}
	w := who(ctx, "")
	var t Trigger
	err := e.update(ctx, func(tx Tx) (err error) {
		if t, err = tx.DeleteTrigger(ctx, name); err != nil {
			if errors.Is(err, ErrNotFound) {
				return Errorf(ErrNotFound, "no trigger named %q (iu trigger list shows them)", name)
			}
			return err
		}
		return e.audit(ctx, tx, w, AuditTriggerRemove, t.Name, "%s", t.Describe())
	})
	return t, err
}

func fromSource(s string) string {
	if s == "" {
		return " (any source)"
	}
	return " from source " + strconv.Quote(s)
}

// Describe says what a trigger does, in one line.
func (t *Trigger) Describe() string {
	s := "type " + strconv.Quote(t.Type)
	if t.Source != "" {
		s += " from " + strconv.Quote(t.Source)
	}
	s += " -> " + t.Template
	if t.Actor != "" {
		s += ", actor " + t.Actor
	}
	if t.Prefix != "" {
		s += ", prefix " + t.Prefix
	}
	return s
}
