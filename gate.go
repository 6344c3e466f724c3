package iu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// The two global kill switches. Both are off in a new store.
const (
	// GateComposer gates all composition, manual and automatic.
	GateComposer = "iu_core.composer_enabled"
	// GateAutoInstantiate gates event-driven instantiation.
	GateAutoInstantiate = "iu_core.auto_instantiate_enabled"
)

// GateNames lists the gates in their display order.
var GateNames = []string{GateComposer, GateAutoInstantiate}

// ParseGateName accepts a full gate name or its short form without
// "iu_core." ("composer_enabled", "auto_instantiate_enabled").
func ParseGateName(s string) (string, error) {
	for _, g := range GateNames {
		if s == g || "iu_core."+s == g {
			return g, nil
		}
	}
	return "", Errorf(ErrInvalidInput, "unknown gate %q: want one of %s (the iu_core. prefix may be left out)", s, strings.Join(GateNames, ", "))
}

// Gates is the state of every gate.
type Gates struct {
	ComposerEnabled        bool
	AutoInstantiateEnabled bool
}

// Get returns the state of the named gate.
func (g Gates) Get(name string) bool {
	if name == GateComposer {
		return g.ComposerEnabled
	}
	return g.AutoInstantiateEnabled
}

// Set sets the named gate; name must be a full gate name.
func (g *Gates) Set(name string, v bool) {
	if name == GateComposer {
		g.ComposerEnabled = v
	} else {
		g.AutoInstantiateEnabled = v
	}
}

// MarshalJSON writes {"iu_core.composer_enabled": .., "iu_core.auto_instantiate_enabled": ..}.
func (g Gates) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{%q:%t,%q:%t}`, GateComposer, g.ComposerEnabled, GateAutoInstantiate, g.AutoInstantiateEnabled), nil
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (g *Gates) UnmarshalJSON(b []byte) error {
	var m map[string]bool
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		name, err := ParseGateName(k)
		if err != nil {
			return err
		}
		g.Set(name, v)
	}
	return nil
}

// GateChange sets some gates; the others keep their value.
type GateChange map[string]bool

// ParseGateChange checks the names in m (short forms allowed) and returns the
// change with full names.
func ParseGateChange(m map[string]bool) (GateChange, error) {
	c := make(GateChange, len(m))
	for k, v := range m {
		name, err := ParseGateName(k)
		if err != nil {
			return nil, err
		}
		if _, dup := c[name]; dup {
			return nil, Errorf(ErrInvalidInput, "gate %s is given twice, with and without the iu_core. prefix: give it once", name)
		}
		c[name] = v
	}
	return c, nil
}

// Names returns the gate names in c in display order.
func (c GateChange) Names() []string {
	var names []string
	for _, g := range GateNames {
		if _, ok := c[g]; ok {
			names = append(names, g)
		}
	}
	return names
}

// UnmarshalJSON reads {"name": bool, ...} and checks the names.
func (c *GateChange) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m map[string]bool
	if err := dec.Decode(&m); err != nil {
		return Errorf(ErrInvalidInput, "gates: want an object of gate names to true or false: %v", err)
	}
	p, err := ParseGateChange(m)
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// GateAuditEntry is one recorded change of a gate: ChangedBy is who made
// it (the principal: a token's name through the server), Claimed the actor
// the client named, kept beside it when it named another.
type GateAuditEntry struct {
	Seq       int64  `json:"-"` // the trail's order, for paging
	Name      string `json:"name"`
	Enabled   bool   `json:"enabled"`
	ChangedBy string `json:"changed_by"`
	Claimed   string `json:"claimed_actor,omitempty"`
	ChangedAt Time   `json:"changed_at"`
}

// Gates returns the committed state of the gates.
func (e *Engine) Gates(ctx context.Context) (Gates, error) {
	var g Gates
	err := e.store.View(ctx, func(tx Tx) (err error) {
		g, err = tx.Gates(ctx)
		return err
	})
	return g, err
}

// SetGates changes gates and returns the new state. Each change is audited
// under the principal, with actor kept as what the client claimed; a gate
// set to the value it has is not a change and records nothing.
func (e *Engine) SetGates(ctx context.Context, change GateChange, actor string) (Gates, error) {
	w, err := claim(ctx, actor)
	if err != nil {
		return Gates{}, err
	}
	if len(change) == 0 {
		return Gates{}, Errorf(ErrInvalidInput, "no gate to set: give NAME=true or NAME=false")
	}
	var g Gates
	err = e.update(ctx, func(tx Tx) (err error) {
		g, err = e.setGates(ctx, tx, change, w)
		return err
	})
	return g, err
}

// setGates applies the part of change that changes something, audited
// under w, and returns the gates as they are then.
func (e *Engine) setGates(ctx context.Context, tx Tx, change GateChange, w Who) (Gates, error) {
	g, err := tx.Gates(ctx)
	if err != nil {
		return Gates{}, err
	}
	real := GateChange{}
	for name, on := range change {
		if g.Get(name) != on {
			real[name] = on
			g.Set(name, on)
		}
	}
	if len(real) == 0 {
		return g, nil
	}
	return g, tx.SetGates(ctx, real, w, e.clock())
}

// GateAudit returns the gates' audit trail newest first, a page at a time.
func (e *Engine) GateAudit(ctx context.Context, r PageRequest) (Page[GateAuditEntry], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[GateAuditEntry]{}, err
	}
	before, err := parseBeforeCursor(r.After)
	if err != nil {
		return Page[GateAuditEntry]{}, err
	}
	var rows []GateAuditEntry
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListGateAudit(ctx, before, limit+1)
		return err
	})
	return pageOf(rows, limit, func(a *GateAuditEntry) string { return seqCursor(a.Seq) }), err
}
