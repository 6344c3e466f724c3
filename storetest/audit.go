package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/iu-engine/iu"
)

// Every change is recorded under the principal that made it; an actor the
// caller names is kept beside it as claimed, never instead of it.
var _ = register("AuditRecordsThePrincipal", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops-token")

	// Gates: the principal, and the claimed actor beside it.
	if _, err := v.e.SetGates(ctx, iu.GateChange{iu.GateComposer: true}, "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.SetGates(ctx, iu.GateChange{iu.GateAutoInstantiate: true}, ""); err != nil {
		t.Fatal(err)
	}
	trail, err := v.e.GateAudit(v.ctx, iu.PageRequest{})
	if err != nil || len(trail.Items) != 2 {
		t.Fatalf("gate audit: %+v %v", trail, err)
	}
	if a := trail.Items[1]; a.ChangedBy != "ops-token" || a.Claimed != "mallory" || a.Name != iu.GateComposer {
		t.Fatalf("a change with a claimed actor: %+v, want by ops-token, claimed mallory", a)
	}
	if a := trail.Items[0]; a.ChangedBy != "ops-token" || a.Claimed != "" {
		t.Fatalf("a change without a claimed actor: %+v", a)
	}
	if n := v.count("SELECT count(*) FROM iu_gate WHERE updated_by = 'ops-token'"); n != 2 {
		t.Fatalf("gates updated by the principal: %d, want 2", n)
	}

	// A gate set to the value it has is no change: no audit row. Setting
	// both, one of which changes, records only that one.
	before := v.count("SELECT count(*) FROM iu_gate_audit")
	if _, err := v.e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "mallory"); err != nil {
		t.Fatal(err)
	}
	if n := v.count("SELECT count(*) FROM iu_gate_audit"); n != before {
		t.Fatalf("setting gates to their values wrote %d audit rows", n-before)
	}
	g, err := v.e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: false}, "")
	if err != nil || !g.ComposerEnabled || g.AutoInstantiateEnabled {
		t.Fatalf("gates: %+v %v", g, err)
	}
	if n := v.count("SELECT count(*) FROM iu_gate_audit"); n != before+1 {
		t.Fatalf("one gate changed, %d audit rows written", n-before)
	}

	// Templates, emit modes, triggers, tokens, bulk runs and rollbacks go to
	// the audit trail, each once, under the principal.
	wf, file := template(t, wfKey, 8, ""), template(t, fileKey, 8, "")
	if _, err := v.e.PublishTemplates(ctx, []*iu.Template{wf, file}, "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.PublishTemplates(ctx, []*iu.Template{wf}, "mallory"); err != nil { // a no-op
		t.Fatal(err)
	}
	if n := v.count("SELECT count(*) FROM iu_piece_collection WHERE collection_kind = 'template' AND actor = 'ops-token'"); n != 2 {
		t.Fatalf("templates published by the principal: %d, want 2", n)
	}
	if err := v.e.SetEmitMode(ctx, wfKey, iu.EmitShadow); err != nil {
		t.Fatal(err)
	}
	if err := v.e.SetEmitMode(ctx, wfKey, iu.EmitShadow); err != nil { // no change
		t.Fatal(err)
	}
	if err := v.e.SetEmitMode(ctx, wfKey, iu.EmitLive); err != nil {
		t.Fatal(err)
	}
	tr, err := v.e.AddTrigger(ctx, iu.Trigger{Type: "hr.*", Template: wfKey}, "mallory")
	if err != nil || tr.CreatedBy != "ops-token" {
		t.Fatalf("trigger: %+v %v", tr, err)
	}
	if _, err := v.e.RemoveTrigger(ctx, tr.Name); err != nil {
		t.Fatal(err)
	}
	tok, err := v.e.CreateToken(ctx, "ci", iu.ScopeIngest, "")
	if err != nil || tok.CreatedBy != "ops-token" {
		t.Fatalf("token: %+v %v", tok, err)
	}
	for range 2 { // the second revoke changes nothing
		if _, err := v.e.RevokeToken(ctx, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	plan := seedPlan()
	plan.Actor, plan.InstancePrefix = "import", "import"
	if _, err := v.e.Bulk(ctx, plan, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Rollback(ctx, "import", false); err != nil { // a dry run
		t.Fatal(err)
	}
	if _, err := v.e.Rollback(ctx, "import", true); err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, subject, claimed string }{
		{iu.AuditRollback, "import", ""},
		{iu.AuditBulk, "import", "import"},
		{iu.AuditTokenRevoke, "ci", ""},
		{iu.AuditTokenCreate, "ci", ""},
		{iu.AuditTriggerRemove, tr.Name, ""},
		{iu.AuditTriggerAdd, tr.Name, "mallory"},
		{iu.AuditEmitMode, wfKey, ""},
		{iu.AuditEmitMode, wfKey, ""},
		{iu.AuditPublish, fileKey, "mallory"},
		{iu.AuditPublish, wfKey, "mallory"},
	}
	var got []iu.AuditEntry
	for after := ""; ; {
		page, err := v.e.Audit(v.ctx, iu.PageRequest{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page.Items...)
		if after = page.Next; after == "" {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("audit: %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		a := got[i]
		if a.Action != w.action || a.Subject != w.subject || a.Claimed != w.claimed || a.By != "ops-token" || a.At.IsZero() || a.Detail == "" {
			t.Errorf("audit entry %d: %+v, want %s %s claimed %q by ops-token", i, a, w.action, w.subject, w.claimed)
		}
	}
	// The bulk's own gate flips are the principal's too, with the plan's
	// actor as claimed.
	if n := v.count("SELECT count(*) FROM iu_gate_audit WHERE changed_by = 'ops-token' AND claimed_actor = 'import'"); n != 2 {
		t.Fatalf("the bulk's gate changes under the principal: %d, want 2 (auto on, then back off; composer was on already)", n)
	}

	// Without a principal (the Go API), the actor named is who did it; with
	// neither, the change is refused.
	if _, err := v.e.SetGates(v.ctx, iu.GateChange{iu.GateComposer: false}, "api-user"); err != nil {
		t.Fatal(err)
	}
	if n := v.count("SELECT count(*) FROM iu_gate_audit WHERE changed_by = 'api-user' AND claimed_actor = ''"); n != 1 {
		t.Fatalf("a change through the Go API: %d rows by api-user", n)
	}
	if _, err := v.e.SetGates(v.ctx, iu.GateChange{iu.GateComposer: true}, ""); !errors.Is(err, iu.ErrInvalidInput) {
		t.Fatalf("a change by nobody: %v, want ErrInvalidInput", err)
	}
})

// Every list pages with a keyset cursor: pages join up without a gap or a
// repeat, the last one has no next, and a bad cursor or size is refused.
var _ = register("ListsPageWithACursor", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	var keys []string
	for i := range 25 {
		actor := "alice"
		if i%5 == 4 {
			actor = "bob"
		}
		keys = append(keys, v.mustEmit(wfKey, fmt.Sprintf("p-%02d", i), actor).InstanceKey)
	}
	var seen []string
	pages := 0
	for after := ""; ; {
		page, err := v.e.Instances(v.ctx, iu.InstanceFilter{PageRequest: iu.PageRequest{After: after, Limit: 10}})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range page.Items {
			seen = append(seen, r.InstanceKey)
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if pages != 3 || fmt.Sprint(seen) != fmt.Sprint(keys) {
		t.Fatalf("%d pages of instances %v, want 3 pages of %v", pages, seen, keys)
	}
	// Filters page too: bob's 5, two a page.
	var bobs []iu.InstanceRow
	for after := ""; ; {
		page, err := v.e.Instances(v.ctx, iu.InstanceFilter{Actor: "bob", PageRequest: iu.PageRequest{After: after, Limit: 2}})
		if err != nil {
			t.Fatal(err)
		}
		bobs = append(bobs, page.Items...)
		if after = page.Next; after == "" {
			break
		}
	}
	if len(bobs) != 5 || bobs[0].EventID != "p-04" || bobs[4].EventID != "p-24" {
		t.Fatalf("bob's instances: %+v", bobs)
	}
	one, err := v.e.Instances(v.ctx, iu.InstanceFilter{EventID: "p-07"})
	if err != nil || len(one.Items) != 1 || one.Items[0].InstanceKey != keys[7] || one.Next != "" {
		t.Fatalf("by event id: %+v %v", one, err)
	}
	// An exact page has no next page after it.
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{Actor: "bob", PageRequest: iu.PageRequest{Limit: 5}})
	if err != nil || len(page.Items) != 5 || page.Next != "" {
		t.Fatalf("an exact page: %d rows, next %q, %v", len(page.Items), page.Next, err)
	}

	// The event log, newest first.
	var ids []string
	for after := ""; ; {
		page, err := v.e.EventLog(v.ctx, iu.EventFilter{Actor: "alice", PageRequest: iu.PageRequest{After: after, Limit: 7}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			ids = append(ids, e.EventID)
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if len(ids) != 20 || ids[0] != "p-23" || ids[19] != "p-00" {
		t.Fatalf("alice's event log, newest first: %v", ids)
	}
	if page, err := v.e.EventLog(v.ctx, iu.EventFilter{Status: iu.StatusShadow}); err != nil || len(page.Items) != 0 {
		t.Fatalf("shadow entries: %+v %v", page, err)
	}

	// Templates, by key.
	first, err := v.e.ListTemplates(v.ctx, iu.PageRequest{Limit: 1})
	if err != nil || len(first.Items) != 1 || first.Items[0].Key != fileKey || first.Next == "" {
		t.Fatalf("first template page: %+v %v", first, err)
	}
	second, err := v.e.ListTemplates(v.ctx, iu.PageRequest{After: first.Next, Limit: 1})
	if err != nil || len(second.Items) != 1 || second.Items[0].Key != wfKey || second.Next != "" {
		t.Fatalf("second template page: %+v %v", second, err)
	}

	// Refusals: a page too large, a negative one, a cursor of nothing or of
	// another kind of list.
	for _, r := range []iu.PageRequest{{Limit: iu.MaxPageSize + 1}, {Limit: -1}, {After: "nonsense"}, {After: first.Next}} {
		if _, err := v.e.Instances(v.ctx, iu.InstanceFilter{PageRequest: r}); !errors.Is(err, iu.ErrInvalidInput) {
			t.Errorf("instances with %+v: %v, want ErrInvalidInput", r, err)
		}
	}
	if _, err := v.e.EventLog(v.ctx, iu.EventFilter{Status: "gated"}); !errors.Is(err, iu.ErrInvalidInput) {
		t.Errorf("event log of status gated: %v, want ErrInvalidInput", err)
	}
})
