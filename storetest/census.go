package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// Actors lists, in byte order and a page at a time, the actors that have
// auto instances (what a rollback removes): not an actor with only manual
// compositions, and no longer an actor rolled back.
var _ = register("ActorsListsWhoHasAutoInstances", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	for i, a := range []string{"carol", "alice", "bob", "alice", "dave"} {
		v.mustEmit(wfKey, fmt.Sprintf("census-%d", i), a)
	}
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:census", Actor: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Rollback(v.ctx, "dave", true); err != nil {
		t.Fatal(err)
	}
	all, err := v.e.Actors(v.ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(all) != "[alice bob carol]" {
		t.Errorf("actors %q, want [alice bob carol]", all)
	}
	page, err := v.e.Actors(v.ctx, "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(page) != "[bob]" {
		t.Errorf("actors after alice, 1: %q, want [bob]", page)
	}
})

// VerifyProgress reports the number of instances to check first, then
// how many were checked, ending at the report's total.
var _ = register("VerifyProgressCountsToTheTotal", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	for i := range 5 {
		v.mustEmit(wfKey, fmt.Sprintf("progress-%d", i), "alice")
	}
	v.mustEmit(fileKey, "progress-bob", "bob")
	for _, c := range []struct {
		actor string
		want  int64
	}{{"", 6}, {"alice", 5}, {"nobody", 0}} {
		var calls [][2]int64
		rep, err := v.e.VerifyProgress(v.ctx, c.actor, func(checked, total int64) { calls = append(calls, [2]int64{checked, total}) })
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total != c.want || rep.Matches != c.want {
			t.Errorf("actor %q: report %+v, want %d matches", c.actor, rep.VerifySummary, c.want)
		}
		if len(calls) < 2 || calls[0] != [2]int64{0, c.want} || calls[len(calls)-1] != [2]int64{c.want, c.want} {
			t.Errorf("actor %q: progress %v, want (0, %d) first and (%d, %d) last", c.actor, calls, c.want, c.want, c.want)
		}
	}
})

// VerifyInstance checks one instance by the rules of Verify: nothing to
// say about a sound one, the reason for a tampered one (and only for it),
// and not found for a key that is no instance.
var _ = register("VerifyInstanceNamesWhatIsWrong", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	good := v.mustEmit(wfKey, "one-good", "alice")
	bad := v.mustEmit(wfKey, "one-bad", "alice")
	h.Exec(t, v.s, "UPDATE iu_collection_membership SET piece_id = (SELECT piece_id FROM iu_collection_membership WHERE collection_key = '"+wfKey+"' AND slot = 's1') WHERE collection_key = '"+bad.InstanceKey+"' AND slot = 's2'")
	why, err := v.e.VerifyInstance(v.ctx, good.InstanceKey)
	if err != nil || len(why) != 0 {
		t.Errorf("sound instance: %q, %v", why, err)
	}
	why, err = v.e.VerifyInstance(v.ctx, bad.InstanceKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(why, "\n"), `slot "s2" holds piece`) {
		t.Errorf("tampered instance: %q, want the slot named", why)
	}
	rep := v.verify("")
	if rep.Diverges != 1 || len(rep.Diverging) != 1 || fmt.Sprint(rep.Diverging[0].Reasons) != fmt.Sprint(why) {
		t.Errorf("Verify says %+v; VerifyInstance %q: want the same reasons", rep.Diverging, why)
	}
	if _, err := v.e.VerifyInstance(v.ctx, "tpl-inst:manual:nowhere"); !errors.Is(err, iu.ErrNotFound) {
		t.Errorf("no such instance: %v, want not found", err)
	}
})

// Under a prefix, instances page in key order (served by the key index at
// any size), every one once; the prefix takes only its own keys (and
// those of longer prefixes that start with it and a '-', as the key range
// says). By event id, an event's instances come in creation order.
var _ = register("InstancesPageUnderAPrefixAndByEvent", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	want := map[string]bool{}
	for i := range 7 {
		for _, p := range []string{"run", "run-x", "rum", "runner"} {
			r, err := v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event(fmt.Sprintf("%s-%d", p, i)), Actor: "alice", Prefix: p})
			if err != nil {
				t.Fatal(err)
			}
			if p == "run" || p == "run-x" {
				want[r.InstanceKey] = true
			}
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := v.e.Instances(v.ctx, iu.InstanceFilter{Prefix: "run", PageRequest: iu.PageRequest{After: after, Limit: 3}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Items {
			got = append(got, r.InstanceKey)
		}
		if page.Next == "" {
			break
		}
		if pages > 20 {
			t.Fatal("paging under a prefix does not end")
		}
		after = page.Next
	}
	if len(got) != len(want) || !slices.IsSorted(got) {
		t.Errorf("under prefix run: %d keys %q, want the %d of run and run-x in key order", len(got), got, len(want))
	}
	for _, k := range got {
		if !want[k] {
			t.Errorf("%s is not under prefix run", k)
		}
	}
	// A seq cursor is not a key cursor: refused, not misread.
	first, err := v.e.Instances(v.ctx, iu.InstanceFilter{PageRequest: iu.PageRequest{Limit: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Instances(v.ctx, iu.InstanceFilter{Prefix: "run", PageRequest: iu.PageRequest{After: first.Next}}); !errors.Is(err, iu.ErrInvalidInput) {
		t.Errorf("a creation-order cursor under a prefix: %v, want invalid input", err)
	}
	// One event, two templates: both instances, in creation order.
	a := v.mustEmit(wfKey, "shared-event", "bob")
	b := v.mustEmit(fileKey, "shared-event", "bob")
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{EventID: "shared-event"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 || page.Items[0].InstanceKey != a.InstanceKey || page.Items[1].InstanceKey != b.InstanceKey {
		t.Errorf("instances of event shared-event: %+v, want %s then %s", page.Items, a.InstanceKey, b.InstanceKey)
	}
})

// The event log pages newest first under every filter, through the
// filter's index: by actor, by status, by both.
var _ = register("EventLogPagesByActorAndStatus", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	if err := v.e.SetEmitMode(v.ctx, fileKey, iu.EmitShadow); err != nil {
		t.Fatal(err)
	}
	v.gates(true, true)
	type entry struct{ id, actor, status string }
	var all []entry // oldest first
	for i := range 12 {
		actor, tpl, status := "alice", wfKey, "ok"
		if i%3 == 1 {
			actor = "bob"
		}
		if i%4 == 0 {
			tpl, status = fileKey, "shadow"
		}
		id := fmt.Sprintf("log-%02d", i)
		v.mustEmit(tpl, id, actor)
		all = append(all, entry{id, actor, status})
	}
	for _, f := range []iu.EventFilter{{Actor: "bob"}, {Status: iu.StatusShadow}, {Status: iu.StatusOK}, {Actor: "alice", Status: iu.StatusShadow}} {
		var want []string
		for i := len(all) - 1; i >= 0; i-- {
			if (f.Actor == "" || all[i].actor == f.Actor) && (f.Status == "" || all[i].status == string(f.Status)) {
				want = append(want, all[i].id)
			}
		}
		var got []string
		for after, pages := "", 0; ; pages++ {
			f.PageRequest = iu.PageRequest{After: after, Limit: 2}
			page, err := v.e.EventLog(v.ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Items {
				got = append(got, e.EventID)
			}
			if after = page.Next; after == "" || pages > 20 {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("event log of actor %q, status %q: %v, want %v", f.Actor, f.Status, got, want)
		}
	}
})
