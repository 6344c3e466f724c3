// Package storetest is iu's conformance suite: every rule of the engine,
// run against a real backend. Each backend's tests call Exercise; a new rule
// lands here, never in one backend's tests.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// Harness opens fresh, empty stores of one backend.
type Harness struct {
	// Open returns a new empty store, closed by the test's cleanup.
	Open func(t *testing.T) iu.Store
	// Exec runs raw SQL against the store, bypassing the engine: used only to
	// corrupt a store and show that verify notices. The SQL is written to
	// work on every dialect.
	Exec func(t *testing.T, s iu.Store, query string)
	// Count runs a query that returns one integer (a count), bypassing the
	// engine: how tests see exactly what was written.
	Count func(t *testing.T, s iu.Store, query string) int64
	// Reopen opens a second handle on the same database as s (another
	// process would), closed by the test's cleanup.
	Reopen func(t *testing.T, s iu.Store) iu.Store
	// DownTo runs the schema's down migrations on s's database, outside
	// the store, until its schema is at version: a store as an older iu
	// left it (Reopen then upgrades it, as opening always does).
	DownTo func(t *testing.T, s iu.Store, version int64)
	// Blank makes a new place for a store (a file, a schema) with nothing
	// in it yet: what opening a store does to a place is a rule too.
	Blank func(t *testing.T) Location
}

// Location is a place for a store that no store has opened yet.
type Location struct {
	// Exec runs raw SQL there, outside any store (it creates the place
	// if need be).
	Exec func(query string) error
	// Open opens a store there, as iu does (refusing to create one with
	// mustExist); the test's cleanup closes it.
	Open func(mustExist bool) (iu.Store, error)
}

// Exercise runs the whole suite.
func Exercise(t *testing.T, h Harness) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, h)
		})
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, h Harness)
}

var cases []testCase

func register(name string, fn func(t *testing.T, h Harness)) struct{} {
	cases = append(cases, testCase{name, fn})
	return struct{}{}
}

// env is one test's engine over a fresh store.
type env struct {
	t   *testing.T
	h   Harness
	s   iu.Store
	e   *iu.Engine
	ctx context.Context
}

func newEnv(t *testing.T, h Harness, opts ...iu.Option) *env {
	t.Helper()
	s := h.Open(t)
	return &env{t: t, h: h, s: s, e: iu.NewEngine(s, opts...), ctx: context.Background()}
}

const (
	wfKey   = "tpl:wf:onboarding/v2"
	fileKey = "tpl:file:status-report/v2"
)

// template builds a small template of n steps, each after the previous.
func template(t *testing.T, key string, n int, mode iu.EmitMode) *iu.Template {
	t.Helper()
	spec := &iu.TemplateSpec{Key: key, Title: "Test " + key, EmitMode: string(mode)}
	for i := 1; i <= n; i++ {
		p := iu.SlotSpec{ID: fmt.Sprintf("s%d", i), Kind: "step", Body: fmt.Sprintf("Step %d of %s for {{ .subject }}", i, key)}
		if i > 1 {
			p.After = []string{fmt.Sprintf("s%d", i-1)}
		}
		spec.Pieces = append(spec.Pieces, p)
	}
	tp, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func (v *env) publish(tps ...*iu.Template) {
	v.t.Helper()
	if _, err := v.e.PublishTemplates(v.ctx, tps, "tester"); err != nil {
		v.t.Fatalf("publish: %v", err)
	}
}

// seedTemplates publishes the two 8-piece templates of the seed.
func (v *env) seedTemplates() (wf, file *iu.Template) {
	v.t.Helper()
	wf, file = template(v.t, wfKey, 8, ""), template(v.t, fileKey, 8, "")
	v.publish(wf, file)
	return wf, file
}

func (v *env) gates(composer, auto bool) {
	v.t.Helper()
	if _, err := v.e.SetGates(v.ctx, iu.GateChange{iu.GateComposer: composer, iu.GateAutoInstantiate: auto}, "tester"); err != nil {
		v.t.Fatalf("set gates: %v", err)
	}
}

func event(id string) iu.Event {
	return iu.Event{ID: id, Source: "test", Type: "test.created", Subject: "Ada", Data: json.RawMessage(`{"team":"core"}`)}
}

func (v *env) emit(tpl, id, actor string) (iu.Result, error) {
	return v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: tpl, Event: event(id), Actor: actor})
}

func (v *env) mustEmit(tpl, id, actor string) iu.Result {
	v.t.Helper()
	r, err := v.emit(tpl, id, actor)
	if err != nil {
		v.t.Fatalf("emit %s %s: %v", tpl, id, err)
	}
	return r
}

// tables are every table iu writes.
var tables = []string{
	"iu_piece", "iu_piece_collection", "iu_collection_membership",
	"iu_collection_template_instance_lineage", "iu_auto_instantiate_event_log", "iu_gate", "iu_gate_audit",
}

// counts is every table's row count: the test's view of "what was written".
type counts map[string]int64

func (v *env) counts() counts {
	v.t.Helper()
	c := counts{}
	for _, tb := range tables {
		c[tb] = v.h.Count(v.t, v.s, "SELECT count(*) FROM "+tb)
	}
	return c
}

func (v *env) count(query string) int64 {
	v.t.Helper()
	return v.h.Count(v.t, v.s, query)
}

func (v *env) sameCounts(before counts, what string) {
	v.t.Helper()
	if after := v.counts(); fmt.Sprint(after) != fmt.Sprint(before) {
		v.t.Fatalf("%s wrote something: before %+v, after %+v", what, before, after)
	}
}

func (v *env) verify(actor string) *iu.VerifyReport {
	v.t.Helper()
	r, err := v.e.Verify(v.ctx, actor)
	if err != nil {
		v.t.Fatalf("verify: %v", err)
	}
	return r
}

func ago(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(-d) } }
