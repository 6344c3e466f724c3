package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// After instantiation: compensating one instance, migrating instances to
// another version of their template, and an instance's history.

const wf3Key = "tpl:wf:onboarding/v3"

// v3 is the next version of the wf template: step 3 has other content, and
// a ninth step is added after the eighth.
func v3(t *testing.T) *iu.Template {
	t.Helper()
	spec := &iu.TemplateSpec{Key: wf3Key, Title: "Test " + wf3Key}
	for i := 1; i <= 9; i++ {
		p := iu.SlotSpec{ID: fmt.Sprintf("s%d", i), Kind: "step", Body: fmt.Sprintf("Step %d of %s for {{ .subject }}", i, wfKey)}
		if i == 3 {
			p.Body = "Step 3, reworded"
		}
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

// newV3Env is an environment with the seed templates and wf's v3
// published, and both gates open.
func newV3Env(t *testing.T, h Harness, opts ...iu.Option) *env {
	v := newEnv(t, h, opts...)
	v.seedTemplates()
	v.publish(v3(t))
	v.gates(true, true)
	return v
}

var _ = register("CompensateKeepsTheKeyClaimed", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	a := v.mustEmit(wfKey, "c-1", "alice")
	other := v.mustEmit(wfKey, "c-2", "alice")
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")

	// A dry run says what would go and writes nothing; it attributes
	// nothing, so it needs neither a principal nor an actor.
	before := v.counts()
	dry, err := v.e.Compensate(v.ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Reason: "wrong hire"})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Action != iu.CompensateActionCompensate || dry.Lineage != 1 || dry.Instances != 1 || dry.Memberships != 8 || dry.LogEntry != "compensated" || dry.EventID != "c-1" {
		t.Fatalf("dry run: %+v", dry)
	}
	v.sameCounts(before, "a dry run of compensate")

	rep, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Reason: "wrong hire", Apply: true, Actor: "mallory"})
	if err != nil || rep.DryRun || rep.Memberships != 8 {
		t.Fatalf("compensate: %+v %v", rep, err)
	}
	after := v.counts()
	if after["iu_piece_collection"] != before["iu_piece_collection"]-1 || after["iu_collection_membership"] != before["iu_collection_membership"]-8 ||
		after["iu_collection_template_instance_lineage"] != before["iu_collection_template_instance_lineage"]-1 ||
		after["iu_auto_instantiate_event_log"] != before["iu_auto_instantiate_event_log"] {
		t.Fatalf("compensate wrote %+v from %+v", after, before)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE status = 'compensated' AND instance_key = '" + a.InstanceKey + "'"); n != 1 {
		t.Fatalf("the event's log entry is not compensated: %d", n)
	}
	if n := v.count("SELECT count(*) FROM iu_compensation WHERE instance_key = '" + a.InstanceKey + "' AND compensated_by = 'ops' AND claimed_actor = 'mallory' AND reason = 'wrong hire' AND actor = 'alice' AND event_id = 'c-1' AND template_key = '" + wfKey + "'"); n != 1 {
		t.Fatalf("the compensation is not on the record: %d", n)
	}
	// A redelivery answers compensated and makes nothing.
	before = v.counts()
	r := v.mustEmit(wfKey, "c-1", "alice")
	if r.Status != iu.StatusCompensated || !r.Replayed || r.InstanceKey != a.InstanceKey || r.Created() {
		t.Fatalf("redelivery of a compensated event: %+v", r)
	}
	v.sameCounts(before, "a redelivery of a compensated event")
	// The views leave it out; verify finds no orphans; the neighbour stays.
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{Actor: "alice"})
	if err != nil || len(page.Items) != 1 || page.Items[0].InstanceKey != other.InstanceKey {
		t.Fatalf("instances after compensate: %+v %v", page, err)
	}
	if rep := v.verify(""); !rep.OK() || rep.Total != 1 {
		t.Fatalf("verify after compensate: %+v", rep)
	}
	// Twice is a clear error that writes nothing; so is an instance that
	// never was.
	before = v.counts()
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Apply: true}); !errors.Is(err, iu.ErrNotFound) || !contains(err, "compensated already") || !contains(err, "--release") {
		t.Fatalf("compensate twice: %v, want ErrNotFound saying it was compensated already", err)
	}
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: "tpl-inst:auto:nobody-000000000000", Apply: true}); !errors.Is(err, iu.ErrNotFound) || !contains(err, "no instance") {
		t.Fatalf("compensate of nothing: %v, want ErrNotFound", err)
	}
	v.sameCounts(before, "refused compensations")
	// The audit: its history tells what made it and who undid it.
	hist, err := v.e.History(v.ctx, a.InstanceKey)
	if err != nil || len(hist) != 2 || hist[0].What != "created" || hist[0].By != "alice" || hist[0].Event == nil || hist[0].Event.ID != "c-1" ||
		hist[1].What != "compensated" || hist[1].By != "ops" || hist[1].Claimed != "mallory" {
		t.Fatalf("history of a compensated instance: %+v %v", hist, err)
	}
})

var _ = register("CompensateReleaseLetsTheEventInstantiateAgain", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	a := v.mustEmit(wfKey, "r-1", "alice")
	rep, err := v.e.Compensate(v.ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Release: true, Apply: true, Actor: "ops"})
	if err != nil || rep.LogEntry != "deleted" {
		t.Fatalf("compensate --release: %+v %v", rep, err)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); n != 0 {
		t.Fatalf("the log entry of a released event is still there: %d", n)
	}
	r := v.mustEmit(wfKey, "r-1", "alice")
	if !r.Created() || r.InstanceKey != a.InstanceKey {
		t.Fatalf("the released event again: %+v, want a new instance under the same key", r)
	}
	if rep := v.verify(""); !rep.OK() || rep.Total != 1 {
		t.Fatalf("verify: %+v", rep)
	}
	hist, err := v.e.History(v.ctx, a.InstanceKey)
	if err != nil || len(hist) != 3 || hist[0].What != "created" || hist[1].What != "compensated" || hist[2].What != "created" {
		t.Fatalf("history of a key made twice: %+v %v", hist, err)
	}
})

var _ = register("CompensateAManualInstance", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, false)
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:m-1", Actor: "carol"}); err != nil {
		t.Fatal(err)
	}
	rep, err := v.e.Compensate(v.ctx, iu.CompensateRequest{InstanceKey: "tpl-inst:manual:m-1", Apply: true, Actor: "ops"})
	if err != nil || rep.Mode != iu.ModeManual || rep.LogEntry != "none" {
		t.Fatalf("compensate a manual instance: %+v %v", rep, err)
	}
	if n := v.count("SELECT count(*) FROM iu_piece_collection WHERE collection_kind = 'instance'"); n != 0 {
		t.Fatalf("instances left: %d", n)
	}
	if rep := v.verify(""); !rep.OK() {
		t.Fatalf("verify: %+v", rep)
	}
	hist, err := v.e.History(v.ctx, "tpl-inst:manual:m-1")
	if err != nil || len(hist) != 2 || hist[0].What != "composed" || hist[0].By != "carol" || hist[1].What != "compensated" {
		t.Fatalf("history: %+v %v", hist, err)
	}
})

// A compensation that kept the event's key claimed may release it later,
// found through the template the event was claimed for (here v2, the
// instance having moved to v3 since); the release is audited and told in
// the instance's history, and releasing twice, or a manual instance's, is
// refused and writes nothing.
var _ = register("CompensatedKeyReleasedLater", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	a := v.mustEmit(wfKey, "l-1", "alice")
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	if _, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Apply: true}); err != nil {
		t.Fatal(err)
	}
	before := v.counts()
	dry, err := v.e.Compensate(v.ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Release: true})
	if err != nil || !dry.DryRun || dry.Action != iu.CompensateActionRelease || dry.LogEntry != "deleted" || dry.Instances != 0 || dry.EventID != "l-1" || dry.TemplateKey != wf3Key {
		t.Fatalf("dry run of releasing a compensated instance's key: %+v %v", dry, err)
	}
	v.sameCounts(before, "a dry run of a later release")
	rep, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Release: true, Apply: true, Reason: "hired after all"})
	if err != nil || rep.DryRun || rep.LogEntry != "deleted" {
		t.Fatalf("release later: %+v %v", rep, err)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); n != 0 {
		t.Fatalf("the released event's log entry is still there: %d", n)
	}
	if n := v.count("SELECT count(*) FROM iu_compensation WHERE released"); n != 1 {
		t.Fatalf("the compensation is not marked released: %d", n)
	}
	for _, action := range []string{iu.AuditCompensate, iu.AuditRelease, iu.AuditMigrate} {
		if n := v.count("SELECT count(*) FROM iu_audit WHERE action = '" + action + "' AND changed_by = 'ops'"); n != 1 {
			t.Fatalf("audit rows of %s by ops: %d, want 1", action, n)
		}
	}
	before = v.counts()
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Release: true, Apply: true}); !errors.Is(err, iu.ErrNotFound) || !contains(err, "released already") {
		t.Fatalf("release twice: %v, want ErrNotFound saying so", err)
	}
	v.sameCounts(before, "a second release")
	// The event instantiates again, on the template it names; the key's
	// history tells both lives, the release between them under who did it.
	r := v.mustEmit(wfKey, "l-1", "alice")
	if !r.Created() || r.InstanceKey != a.InstanceKey {
		t.Fatalf("the released event again: %+v", r)
	}
	hist, err := v.e.History(v.ctx, a.InstanceKey)
	var whats []string
	for _, h := range hist {
		whats = append(whats, h.What)
	}
	if err != nil || strings.Join(whats, " ") != "created migrated compensated released created" {
		t.Fatalf("history of a key released later and made again: %v %v", whats, err)
	}
	if rel := hist[3]; rel.By != "ops" || !strings.Contains(rel.Detail, "hired after all") || !strings.Contains(hist[2].Detail, "stayed claimed until its release later") {
		t.Fatalf("the release in the history: %+v, the compensation: %+v", rel, hist[2])
	}
	// A manual instance has no key to release.
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:l-m", Actor: "carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: "tpl-inst:manual:l-m", Apply: true}); err != nil {
		t.Fatal(err)
	}
	before = v.counts()
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: "tpl-inst:manual:l-m", Release: true, Apply: true}); !errors.Is(err, iu.ErrInvalidInput) || !contains(err, "by hand") {
		t.Fatalf("release of a manual instance: %v, want ErrInvalidInput", err)
	}
	v.sameCounts(before, "a release of a manual instance")
	if rep := v.verify(""); !rep.OK() || rep.Total != 1 {
		t.Fatalf("verify: %+v", rep)
	}
})

var _ = register("MigrateMovesInstancesToTheNextVersion", func(t *testing.T, h Harness) {
	v := newEnv(t, h, iu.WithMigrateBatch(3))
	wf, _ := v.seedTemplates()
	next := v3(t)
	v.publish(next)
	v.gates(true, true)
	var keys []string
	for i := range 7 {
		actor := "alice"
		if i >= 5 {
			actor = "bob"
		}
		keys = append(keys, v.mustEmit(wfKey, fmt.Sprintf("m-%d", i), actor).InstanceKey)
	}
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:m-x", Actor: "carol"}); err != nil {
		t.Fatal(err)
	}
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	req := iu.MigrateRequest{From: wfKey, To: wf3Key}

	// A dry run counts and compares, and writes nothing (and, attributing
	// nothing, needs no principal).
	before := v.counts()
	dry, err := v.e.Migrate(v.ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := dry.Diff
	if !dry.DryRun || dry.Instances != 8 || dry.Moved != 0 || fmt.Sprint(d.Added) != "[s9]" || len(d.Removed) != 0 ||
		len(d.Changed) != 1 || d.Changed[0].Slot != "s3" || !d.Changed[0].PieceChange || d.Changed[0].EdgesChange || d.Same != 7 {
		t.Fatalf("dry run: %+v", dry)
	}
	v.sameCounts(before, "a dry run of migrate")
	// A batch out of bounds is refused, and nothing moves.
	for _, n := range []int{-1, iu.MaxMigrateBatch + 1} {
		if _, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true, Batch: n}, nil); !errors.Is(err, iu.ErrInvalidInput) {
			t.Fatalf("batch %d: %v, want a refusal", n, err)
		}
	}
	v.sameCounts(before, "a migration with a batch out of bounds")
	// Narrowed to bob: his two, one a transaction as asked.
	bob, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Actor: "bob", Apply: true, Batch: 1}, nil)
	if err != nil || bob.Moved != 2 || bob.Batches != 2 {
		t.Fatalf("migrate bob's one at a time: %+v %v", bob, err)
	}
	var progress []int64
	rep, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, func(moved, total int64) { progress = append(progress, moved) })
	if err != nil || rep.Moved != 6 || rep.Instances != 6 || len(progress) < 3 {
		t.Fatalf("migrate the rest in batches of 3: %+v %v, progress %v", rep, err, progress)
	}
	// Every instance is on v3, with v3's graph, and verifies.
	if n := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE template_key = '" + wf3Key + "' AND template_digest = '" + next.Digest.String() + "'"); n != 8 {
		t.Fatalf("lineage on v3: %d, want 8", n)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership m JOIN iu_piece_collection c ON c.collection_id = m.collection_id WHERE c.collection_kind = 'instance'"); n != 8*9 {
		t.Fatalf("instance memberships: %d, want 8 x 9", n)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration WHERE from_key = '" + wfKey + "' AND from_digest = '" + wf.Digest.String() + "' AND to_key = '" + wf3Key + "' AND migrated_by = 'ops'"); n != 8 {
		t.Fatalf("migrations on the record: %d, want 8", n)
	}
	rv := v.verify("")
	if !rv.OK() || rv.Total != 8 || rv.Matches != 8 {
		t.Fatalf("verify after migrate: %+v", rv)
	}
	stats, err := v.e.Stats(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if (s.TemplateKey == wf3Key) != (s.InstanceCount == 7) {
			t.Fatalf("stats count under the template they are on: %+v", stats)
		}
	}
	// A redelivered v2 event is still a replay, answering the migrated
	// instance; a new v2 event makes a v2 instance.
	before = v.counts()
	r := v.mustEmit(wfKey, "m-0", "alice")
	if !r.Replayed || r.InstanceKey != keys[0] {
		t.Fatalf("redelivery after migrate: %+v", r)
	}
	v.sameCounts(before, "a redelivery after migrate")
	// Running it again finds nothing to move.
	again, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil)
	if err != nil || again.Moved != 0 || again.Instances != 0 {
		t.Fatalf("migrate again: %+v %v", again, err)
	}
	hist, err := v.e.History(v.ctx, keys[0])
	if err != nil || len(hist) != 2 || hist[0].What != "created" || hist[0].TemplateKey != wfKey || hist[1].What != "migrated" || hist[1].TemplateKey != wf3Key || hist[1].By != "ops" {
		t.Fatalf("history of a migrated instance: %+v %v", hist, err)
	}
	// A migrated instance is compensated by the key it was claimed under.
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: keys[0], Apply: true}); err != nil {
		t.Fatal(err)
	}
	if r := v.mustEmit(wfKey, "m-0", "alice"); r.Status != iu.StatusCompensated {
		t.Fatalf("redelivery of a migrated, compensated event: %+v", r)
	}
	// Refusals: another template's versions, the same version, an
	// unpublished target.
	for _, bad := range []iu.MigrateRequest{
		{From: wfKey, To: fileKey, Apply: true},
		{From: wfKey, To: wfKey, Apply: true},
		{From: wfKey, To: "tpl:wf:onboarding/v9", Apply: true},
		{From: "tpl:wf:onboarding/v7", To: wf3Key, Apply: true},
	} {
		if _, err := v.e.Migrate(ctx, bad, nil); err == nil || iu.ErrorCode(err) == iu.CodeInternal {
			t.Errorf("migrate %s to %s: %v, want a clear refusal", bad.From, bad.To, err)
		}
	}
	// Back to v2 (a slot removed, one changed), two instances' rows damaged
	// first. A migration writes the slots the versions differ in and leaves
	// the rest: an instance damaged in a slot the move rewrites (s3) ends
	// whole, one damaged where the versions agree (s2, s5) keeps the damage,
	// and verify still names it.
	h.Exec(t, v.s, "DELETE FROM iu_collection_membership WHERE collection_key = '"+keys[1]+"' AND slot = 's5'")
	h.Exec(t, v.s, "UPDATE iu_collection_membership SET after_slots = '', position = 99 WHERE collection_key = '"+keys[1]+"' AND slot = 's2'")
	h.Exec(t, v.s, "DELETE FROM iu_collection_membership WHERE collection_key = '"+keys[2]+"' AND slot = 's3'")
	back, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wf3Key, To: wfKey, Apply: true}, nil)
	if err != nil || back.Moved != 7 {
		t.Fatalf("migrate back: %+v %v", back, err)
	}
	rv = v.verify("")
	if rv.Total != 7 || rv.Matches != 6 || rv.Diverges != 1 || len(rv.Diverging) != 1 || rv.Diverging[0].InstanceKey != keys[1] {
		t.Fatalf("verify after migrating back: %+v, want %s alone named", rv, keys[1])
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership m JOIN iu_piece_collection c ON c.collection_id = m.collection_id WHERE c.collection_kind = 'instance' AND m.slot = 's9'"); n != 0 {
		t.Fatalf("%d rows of the slot v2 lacks are left", n)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership m WHERE m.collection_key = '" + keys[2] + "' AND m.slot = 's3' AND m.position = 2 AND m.piece_id = '" + wf.Slots[2].Piece.String() + "'"); n != 1 {
		t.Fatalf("the slot the move rewrote is not v2's in the instance that had lost it")
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership m JOIN iu_piece_collection c ON c.collection_id = m.collection_id WHERE c.collection_kind = 'instance' AND m.position < 8"); n != 6*8+6 {
		t.Fatalf("instance memberships after migrating back: %d, want 6 x 8 at the template's positions, and 6 of the damaged one", n)
	}
})

// A migration stopped between batches (its store fails after some) leaves
// every instance whole, on one version or the other, and running it again
// finishes the job.
var _ = register("MigrateInterruptedAndResumed", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	for i := range 10 {
		v.mustEmit(wfKey, fmt.Sprintf("i-%d", i), "alice")
	}
	failing := &failAfter{Store: v.s, updates: 2}
	_, err := iu.NewEngine(failing, iu.WithMigrateBatch(3)).Migrate(v.ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true, Claimed: "ops"}, nil)
	if !errors.Is(err, errInterrupted) {
		t.Fatalf("a migration whose store fails: %v", err)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE template_key = '" + wf3Key + "'"); n != 6 {
		t.Fatalf("moved before the failure: %d, want two batches of 3", n)
	}
	if rep := v.verify(""); !rep.OK() || rep.Matches != 10 {
		t.Fatalf("verify after an interrupted migration: %+v", rep)
	}
	rep, err := iu.NewEngine(v.s, iu.WithMigrateBatch(3)).Migrate(v.ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true, Claimed: "ops"}, nil)
	if err != nil || rep.Moved != 4 || rep.Instances != 4 {
		t.Fatalf("resumed: %+v %v", rep, err)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration"); n != 10 {
		t.Fatalf("%d migrations recorded, want each of the 10 once", n)
	}
	if rep := v.verify(""); !rep.OK() || rep.Matches != 10 {
		t.Fatalf("verify: %+v", rep)
	}
})

// An instance's migration records are its own through every life of its
// key: a compensated instance keeps them, a new instance under the released
// key starts without them, and a rollback deletes them with its instances.
var _ = register("MigrationRecordsFollowTheirInstance", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	a := v.mustEmit(wfKey, "life-1", "alice").InstanceKey
	b := v.mustEmit(wfKey, "life-2", "bob").InstanceKey
	migrate := func(from, to string, moved int64) {
		t.Helper()
		if rep, err := v.e.Migrate(ctx, iu.MigrateRequest{From: from, To: to, Apply: true}, nil); err != nil || rep.Moved != moved {
			t.Fatalf("migrate %s to %s: %+v %v, want %d moved", from, to, rep, err, moved)
		}
	}
	whats := func(key string) string { return told(v.ctx, v.e, key) }
	migrate(wfKey, wf3Key, 2)
	// The first life: migrated, then compensated and its key released.
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a, Release: true, Apply: true}); err != nil {
		t.Fatal(err)
	}
	first := "created " + wfKey + ", migrated " + wf3Key + ", compensated " + wf3Key
	if got := whats(a); got != first {
		t.Fatalf("history of a migrated, compensated instance: %s, want %s", got, first)
	}
	// The second life under the same key, made from v2 again, migrated
	// again: each life's migration told after its own birth.
	if r := v.mustEmit(wfKey, "life-1", "alice"); r.InstanceKey != a || r.Replayed {
		t.Fatalf("the released event again: %+v", r)
	}
	if got := whats(a); got != first+", created "+wfKey {
		t.Fatalf("history of the key made again: %s", got)
	}
	migrate(wfKey, wf3Key, 1)
	if got, want := whats(a), first+", created "+wfKey+", migrated "+wf3Key; got != want {
		t.Fatalf("history of the key made again and migrated: %s, want %s", got, want)
	}
	// A rollback deletes alice's instance with its migration records; the
	// compensated life's stay, and bob's are untouched.
	if _, err := v.e.Rollback(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if got := whats(a); got != first {
		t.Fatalf("history after the rollback: %s, want the compensated life alone: %s", got, first)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration WHERE instance_key = '" + a + "'"); n != 1 {
		t.Fatalf("%d migration records under %s after the rollback, want the compensated life's 1", n, a)
	}
	if got, want := whats(b), "created "+wfKey+", migrated "+wf3Key; got != want {
		t.Fatalf("history of bob's instance: %s, want %s", got, want)
	}
})

// A store that an iu before schema version 7 left, with migrated and
// compensated instances, is upgraded when opened: its migration records
// are all there, each told in its own life, and migrating goes on.
var _ = register("UpgradeKeepsMigrationRecords", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	a := v.mustEmit(wfKey, "up-1", "alice").InstanceKey
	b := v.mustEmit(wfKey, "up-2", "bob").InstanceKey
	if _, err := v.e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a, Release: true, Apply: true}); err != nil {
		t.Fatal(err)
	}
	v.mustEmit(wfKey, "up-1", "alice") // a's second life, on v2
	h.DownTo(t, v.s, 6)
	// A record a rollback left under b's key at version 6, from a life
	// before b's: older than b.
	h.Exec(t, v.s, "INSERT INTO iu_instance_migration (instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor) "+
		"VALUES ('"+b+"', '"+wfKey+"', 'sha256:00', '"+wf3Key+"', 'sha256:01', '2000-01-01T00:00:00.000Z', 'ops', '')")
	if n := v.count("SELECT count(*) FROM iu_instance_migration"); n != 3 {
		t.Fatalf("%d migration records at version 6, want 3", n)
	}
	s := h.Reopen(t, v.s)
	e := iu.NewEngine(s)
	if ver, err := e.SchemaVersion(v.ctx); err != nil || ver < 7 {
		t.Fatalf("schema version after reopening: %d %v", ver, err)
	}
	whats := func(key string) string { return told(v.ctx, e, key) }
	first := "created " + wfKey + ", migrated " + wf3Key + ", compensated " + wf3Key
	if got := whats(a); got != first+", created "+wfKey {
		t.Fatalf("history of the compensated key made again, upgraded: %s", got)
	}
	if got, want := whats(b), "migrated "+wf3Key+", created "+wfKey+", migrated "+wf3Key; got != want {
		t.Fatalf("history of a migrated instance, upgraded (an earlier life's record first): %s, want %s", got, want)
	}
	if rep, err := e.Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil); err != nil || rep.Moved != 1 {
		t.Fatalf("migrate after the upgrade: %+v %v", rep, err)
	}
	if got, want := whats(a), first+", created "+wfKey+", migrated "+wf3Key; got != want {
		t.Fatalf("history after migrating again: %s, want %s", got, want)
	}
	if rv, err := e.Verify(v.ctx, ""); err != nil || !rv.OK() || rv.Total != 2 {
		t.Fatalf("verify after the upgrade: %+v %v", rv, err)
	}
	// The upgrade gave each live instance its records, and the ended life
	// its own: rolling back both actors leaves the compensated life's.
	for _, actor := range []string{"alice", "bob"} {
		if _, err := e.Rollback(ctx, actor, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration WHERE instance_key = '" + b + "' AND migrated_at > '2001-01-01T00:00:00.000Z'"); n != 0 {
		t.Fatalf("%d migration records of a rolled-back instance made before the upgrade", n)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration WHERE instance_key = '" + b + "' AND instance_id IS NULL"); n != 1 {
		t.Fatalf("the record of an earlier life under b's key: %d left, want 1 (not b's, so not rolled back with it)", n)
	}
	if got := whats(a); got != first {
		t.Fatalf("history of the compensated life after the rollbacks: %s, want %s", got, first)
	}
})

// told is an instance's history as its entries' "what template", comma
// separated, or the error History answered.
func told(ctx context.Context, e *iu.Engine, key string) string {
	hist, err := e.History(ctx, key)
	if err != nil {
		return err.Error()
	}
	var w []string
	for _, x := range hist {
		w = append(w, x.What+" "+x.TemplateKey)
	}
	return strings.Join(w, ", ")
}

// A compensation and a rollback that come while a migration batch is
// writing wait for it, and delete what it wrote too: the instance's
// migration record is kept (compensation) or deleted (rollback) with it,
// and no membership the batch added is left behind.
var _ = register("DeletionsWaitForAMigrationBatch", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	a := v.mustEmit(wfKey, "race-1", "alice").InstanceKey
	b := v.mustEmit(wfKey, "race-2", "bob").InstanceKey
	paused := &pausingStore{Store: v.s, inBatch: make(chan struct{}), release: make(chan struct{})}
	migrated := make(chan error, 1)
	go func() {
		_, err := iu.NewEngine(paused).Migrate(ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil)
		migrated <- err
	}()
	<-paused.inBatch // the batch has written both instances and not committed
	deleted := make(chan error, 2)
	go func() {
		_, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a, Apply: true})
		deleted <- err
	}()
	go func() {
		_, err := v.e.Rollback(ctx, "bob", true)
		deleted <- err
	}()
	time.Sleep(200 * time.Millisecond) // let them reach the store and wait
	close(paused.release)
	if err := <-migrated; err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for range 2 {
		if err := <-deleted; err != nil {
			t.Fatalf("compensate or rollback: %v", err)
		}
	}
	if got, want := told(v.ctx, v.e, a), "created "+wfKey+", migrated "+wf3Key+", compensated "+wf3Key; got != want {
		t.Fatalf("history of the instance compensated during the batch: %s, want %s", got, want)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration WHERE instance_key = '" + b + "'"); n != 0 {
		t.Fatalf("%d migration records of the instance rolled back during the batch", n)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership WHERE collection_key IN ('" + a + "', '" + b + "')"); n != 0 {
		t.Fatalf("%d memberships of the deleted instances left", n)
	}
	if rv := v.verify(""); !rv.OK() {
		t.Fatalf("verify: %+v", rv)
	}
})

// pausingStore is a store whose write transactions, once they have moved a
// migration batch, say so on inBatch and wait for release before they
// commit.
type pausingStore struct {
	iu.Store
	inBatch, release chan struct{}
	once             sync.Once
}

func (p *pausingStore) Update(ctx context.Context, fn func(iu.Tx) error) error {
	return p.Store.Update(ctx, func(tx iu.Tx) error { return fn(&pausingTx{Tx: tx, p: p}) })
}

type pausingTx struct {
	iu.Tx
	p *pausingStore
}

func (t *pausingTx) MigrateInstances(ctx context.Context, sel iu.MigrationSelector, mode iu.Mode, after int64, limit int, plan iu.MigrationPlan, rec iu.InstanceMigration) (int, int, int64, error) {
	moved, seen, last, err := t.Tx.MigrateInstances(ctx, sel, mode, after, limit, plan, rec)
	if err == nil && moved > 0 {
		t.p.once.Do(func() {
			close(t.p.inBatch)
			<-t.p.release
		})
	}
	return moved, seen, last, err
}

var errInterrupted = errors.New("interrupted")

// failAfter is a store whose write transactions fail after a number of
// them have committed: a process stopped between two batches.
type failAfter struct {
	iu.Store
	updates int32
}

func (f *failAfter) Update(ctx context.Context, fn func(iu.Tx) error) error {
	if atomic.AddInt32(&f.updates, -1) < 0 {
		return errInterrupted
	}
	return f.Store.Update(ctx, fn)
}

// Events keep arriving for the source version while a migration runs:
// every instance ends on exactly one version, whole, and verify is clean.
var _ = register("MigrateWhileEventsArrive", func(t *testing.T, h Harness) {
	v := newV3Env(t, h, iu.WithMigrateBatch(5))
	for i := range 40 {
		v.mustEmit(wfKey, fmt.Sprintf("w-%d", i), "alice")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var emitErr error
	go func() {
		defer wg.Done()
		for i := range 40 {
			if _, err := v.emit(wfKey, fmt.Sprintf("w-new-%d", i), "alice"); err != nil {
				emitErr = err
				return
			}
		}
	}()
	rep, err := v.e.Migrate(v.ctx, iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true, Claimed: "ops"}, nil)
	wg.Wait()
	if err != nil || emitErr != nil || rep.Moved < 40 {
		t.Fatalf("migrate: %+v %v; emits: %v", rep, err, emitErr)
	}
	on2 := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE template_key = '" + wfKey + "'")
	on3 := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE template_key = '" + wf3Key + "'")
	if on2+on3 != 80 || on3 != rep.Moved {
		t.Fatalf("%d on v2 and %d on v3 (moved %d), want 80 in all", on2, on3, rep.Moved)
	}
	if n := v.count("SELECT count(*) FROM iu_instance_migration"); n != on3 {
		t.Fatalf("%d migrations recorded for %d moved", n, on3)
	}
	if rv := v.verify(""); !rv.OK() || rv.Matches != 80 {
		t.Fatalf("verify: %+v", rv)
	}
})

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// flaky is a store whose first write transactions fail as a transient
// failure would (a serialization failure, a deadlock): the engine runs
// them again, with backoff, up to its bound.
type flaky struct {
	iu.Store
	failures int32
}

func (f *flaky) Update(ctx context.Context, fn func(iu.Tx) error) error {
	if atomic.AddInt32(&f.failures, -1) >= 0 {
		return iu.Errorf(iu.ErrRetryable, "a transient failure, injected")
	}
	return f.Store.Update(ctx, fn)
}

// Transient failures are retried from the start, on every store (only
// PostgreSQL's produce them for real): an emit that fails twice then
// succeeds is one instance; one that keeps failing gives up, unavailable,
// having written nothing.
var _ = register("TransientFailuresAreRetried", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	e := iu.NewEngine(&flaky{Store: v.s, failures: 2}, iu.WithMaxRetries(3))
	r, err := e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event("t-1"), Actor: "alice"})
	if err != nil || !r.Created() {
		t.Fatalf("an emit that failed twice, then went through: %+v %v", r, err)
	}
	before := v.counts()
	e = iu.NewEngine(&flaky{Store: v.s, failures: 100}, iu.WithMaxRetries(3))
	_, err = e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event("t-2"), Actor: "alice"})
	if !errors.Is(err, iu.ErrUnavailable) || !contains(err, "gave up after 4 attempts") {
		t.Fatalf("an emit that keeps failing: %v, want ErrUnavailable after 4 attempts", err)
	}
	v.sameCounts(before, "an emit that kept failing")
	// A caller that goes away stops the retries.
	ctx, cancel := context.WithCancel(v.ctx)
	cancel()
	if _, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event("t-3"), Actor: "alice"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("retries after the caller went away: %v", err)
	}
})

// A template whose stored digest is not a digest (changed outside iu) is
// read, so that verify can report it, but nothing is made or moved from
// it: emit, compose and a migration to it are refused and write nothing.
var _ = register("NothingIsMadeFromADamagedTemplateDigest", func(t *testing.T, h Harness) {
	v := newV3Env(t, h)
	v.mustEmit(wfKey, "d-1", "alice")
	h.Exec(t, v.s, "UPDATE iu_piece_collection SET digest = 'garbage' WHERE collection_key IN ('"+wfKey+"', '"+wf3Key+"')")
	before := v.counts()
	if _, err := v.emit(wfKey, "d-2", "alice"); !errors.Is(err, iu.ErrInvalidTemplate) || !contains(err, "stored digest") {
		t.Fatalf("emit from a template with a damaged digest: %v, want ErrInvalidTemplate", err)
	}
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:d-m", Actor: "carol"}); !errors.Is(err, iu.ErrInvalidTemplate) {
		t.Fatalf("compose from a template with a damaged digest: %v, want ErrInvalidTemplate", err)
	}
	if _, err := v.e.Migrate(iu.NewContextWithPrincipal(v.ctx, "ops"), iu.MigrateRequest{From: wfKey, To: wf3Key, Apply: true}, nil); !errors.Is(err, iu.ErrInvalidTemplate) {
		t.Fatalf("migrate to a template with a damaged digest: %v, want ErrInvalidTemplate", err)
	}
	v.sameCounts(before, "refusals from a damaged template")
	if rep := v.verify(""); rep.OK() || len(rep.Diverging) == 0 || !strings.Contains(strings.Join(rep.Diverging[0].Reasons, "; "), "unreadable") {
		t.Fatalf("verify of a store whose templates' digests are damaged: %+v, want it to name the unreadable digest", rep)
	}
})

// Releases of one compensated key that race (a double click, a retried
// request): exactly one releases it, the others are told it was released
// already, and the audit holds one release.
var _ = register("RacingReleasesReleaseOnce", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	const keys, racers = 5, 4
	for k := range keys {
		a := v.mustEmit(wfKey, fmt.Sprintf("race-%d", k), "alice")
		if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Apply: true}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, racers)
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Release: true, Apply: true})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		released := 0
		for err := range errs {
			switch {
			case err == nil:
				released++
			case !errors.Is(err, iu.ErrNotFound) || !contains(err, "released already"):
				t.Fatalf("a racing release: %v, want ErrNotFound saying it was released already", err)
			}
		}
		if released != 1 {
			t.Fatalf("key %d: %d racing releases succeeded, want 1", k, released)
		}
	}
	if n := v.count("SELECT count(*) FROM iu_audit WHERE action = '" + iu.AuditRelease + "'"); n != keys {
		t.Fatalf("audited releases: %d, want %d", n, keys)
	}
})

// A rollback of an actor deletes the log entries of its compensated
// instances too, releasing their events' keys: their compensations say so,
// and the history tells the release, by whom the rollback was made.
var _ = register("RollbackReleasesCompensatedKeys", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	ctx := iu.NewContextWithPrincipal(v.ctx, "ops")
	a := v.mustEmit(wfKey, "rb-1", "alice")
	v.mustEmit(wfKey, "rb-2", "alice")
	if _, err := v.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: a.InstanceKey, Apply: true}); err != nil {
		t.Fatal(err)
	}
	rep, err := v.e.Rollback(ctx, "alice", true)
	if err != nil || rep.LogRows != 2 || rep.Instances != 1 {
		t.Fatalf("rollback: %+v %v, want the two log entries (one compensated) and the one instance", rep, err)
	}
	if n := v.count("SELECT count(*) FROM iu_compensation WHERE released AND released_by = 'ops'"); n != 1 {
		t.Fatalf("the compensation of a rolled-back key is not marked released: %d", n)
	}
	hist, err := v.e.History(v.ctx, a.InstanceKey)
	if err != nil || len(hist) != 3 || hist[2].What != "released" || hist[2].By != "ops" || !strings.Contains(hist[2].Detail, "rollback of actor alice") {
		t.Fatalf("history of a compensated key rolled back: %+v %v", hist, err)
	}
	if r := v.mustEmit(wfKey, "rb-1", "alice"); !r.Created() {
		t.Fatalf("the event of a rolled-back compensated key again: %+v, want a new instance", r)
	}
})
