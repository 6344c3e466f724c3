package storetest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/iu-engine/iu"
)

// seedPlan is the seed's bulk: 8 wf + 4 file events, gates flipped on
// inside the transaction.
func seedPlan() *iu.BulkPlan {
	p := &iu.BulkPlan{
		Actor: "bulk", InstancePrefix: "25000x-bulk",
		Gates: iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true},
	}
	for i := 1; i <= 8; i++ {
		p.Events = append(p.Events, iu.BulkEvent{Template: wfKey, Where: fmt.Sprintf("plan:%d", i),
			Event: iu.Event{ID: fmt.Sprintf("25000b00-0000-0000-0000-%012d", i), Source: iu.DefaultSource, Type: "bulk.scaleout"}})
	}
	for i := 1; i <= 4; i++ {
		p.Events = append(p.Events, iu.BulkEvent{Template: fileKey, Where: fmt.Sprintf("plan:%d", 8+i),
			Event: iu.Event{ID: fmt.Sprintf("25000b10-0000-0000-0000-%012d", i), Source: iu.DefaultSource, Type: "bulk.scaleout"}})
	}
	return p
}

var _ = register("BulkSeedScaleout", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	var seen []iu.Result
	rep, err := v.e.Bulk(v.ctx, seedPlan(), nil, func(_ iu.BulkEvent, r iu.Result) { seen = append(seen, r) })
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Committed || rep.Counts != (iu.BulkCounts{OK: 12}) || len(seen) != 12 {
		t.Fatalf("report %+v, progress %d", rep, len(seen))
	}
	want := iu.SurfaceDelta{Pre: 0, Post: 12, Delta: 12}
	if rep.Surfaces.EventLog != want || rep.Surfaces.Lineage != want || rep.Surfaces.Instances != want {
		t.Fatalf("surfaces %+v", rep.Surfaces)
	}
	if rep.ReadBack != (iu.Surfaces{EventLog: 12, Lineage: 12, Instances: 12}) {
		t.Fatalf("read-back inside the transaction: %+v", rep.ReadBack)
	}
	if !rep.Gates.InsideTx.ComposerEnabled || !rep.Gates.InsideTx.AutoInstantiateEnabled ||
		rep.Gates.PostCommit.ComposerEnabled || rep.Gates.PostCommit.AutoInstantiateEnabled {
		t.Fatalf("gates: %+v", rep.Gates)
	}
	if rep.Digest != (iu.VerifySummary{Matches: 12, Total: 12}) {
		t.Fatalf("digest: %+v", rep.Digest)
	}
	g, err := v.e.Gates(v.ctx)
	if err != nil || g.ComposerEnabled || g.AutoInstantiateEnabled {
		t.Fatalf("gates after the bulk: %+v %v", g, err)
	}
	// Both flips are on the record, under the plan's actor.
	if n := v.count("SELECT count(*) FROM iu_gate_audit WHERE changed_by = 'bulk'"); n != 4 {
		t.Fatalf("audit rows by the bulk: %d, want 4 (two on, two off)", n)
	}
	if n := v.count("SELECT count(*) FROM iu_piece_collection WHERE collection_key LIKE 'tpl-inst:auto:25000x-bulk-%'"); n != 12 {
		t.Fatalf("instances under the prefix: %d", n)
	}
	stats, err := v.e.Stats(v.ctx)
	if err != nil || len(stats) != 2 || stats[0].InstanceCount != 4 || stats[1].InstanceCount != 8 || stats[1].InstancesLastHour != 8 {
		t.Fatalf("stats %+v %v", stats, err)
	}
	// The same plan again: all replayed, nothing new.
	before := v.counts()
	rep, err = v.e.Bulk(v.ctx, seedPlan(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts != (iu.BulkCounts{Replayed: 12}) || rep.Surfaces.EventLog.Delta != 0 {
		t.Fatalf("second run: %+v", rep)
	}
	delete(before, "iu_gate_audit")
	after := v.counts()
	delete(after, "iu_gate_audit")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("replayed bulk wrote rows: %v -> %v", before, after)
	}
})

var _ = register("BulkRepeatInsidePlanIsReplayed", func(t *testing.T, h Harness) {
	v := newEnv(t, h, iu.WithBulkChunk(3)) // repeats fall in the same chunk and in later ones
	v.seedTemplates()
	p := seedPlan()
	p.Events = append(p.Events, p.Events[0], p.Events[1], p.Events[0])
	rep, err := v.e.Bulk(v.ctx, p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts != (iu.BulkCounts{OK: 12, Replayed: 3}) || rep.Surfaces.Instances.Delta != 12 {
		t.Fatalf("report %+v", rep)
	}
})

var _ = register("BulkIsAllOrNothing", func(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name   string
		mutate func(p *iu.BulkPlan)
		want   error
	}{
		{"unknown template", func(p *iu.BulkPlan) { p.Events[10].Template = "tpl:wf:nope/v1" }, iu.ErrUnknownTemplate},
		{"invalid event", func(p *iu.BulkPlan) { p.Events[7].Event.Type = "" }, iu.ErrInvalidEvent},
		{"conflict", func(p *iu.BulkPlan) {
			e := p.Events[0]
			e.Event.Subject = "someone else"
			p.Events = append(p.Events, e)
		}, iu.ErrIdempotencyConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, h, iu.WithBulkChunk(4))
			v.seedTemplates()
			before := v.counts()
			p := seedPlan()
			tc.mutate(p)
			_, err := v.e.Bulk(v.ctx, p, nil, nil)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "plan:") {
				t.Fatalf("bulk: %v, want %v naming the event", err, tc.want)
			}
			v.sameCounts(before, "failed bulk")
		})
	}
	// A stream that fails midway (a bad NDJSON line) rolls back too.
	v := newEnv(t, h, iu.WithBulkChunk(4))
	v.seedTemplates()
	before := v.counts()
	p := seedPlan()
	stream := func(yield func(iu.BulkEvent, error) bool) {
		for i, e := range p.Events {
			if i == 9 {
				yield(iu.BulkEvent{}, iu.Errorf(iu.ErrInvalidEvent, "events.ndjson:10: broken line"))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
	if _, err := v.e.Bulk(v.ctx, p, stream, nil); !errors.Is(err, iu.ErrInvalidEvent) || !strings.Contains(err.Error(), "events.ndjson:10") {
		t.Fatalf("broken stream: %v", err)
	}
	v.sameCounts(before, "bulk with a broken stream")
	// Cancelling the run rolls back too.
	ctx, cancel := context.WithCancel(v.ctx)
	n := 0
	if _, err := v.e.Bulk(ctx, p, nil, func(iu.BulkEvent, iu.Result) {
		if n++; n == 2 {
			cancel()
		}
	}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled bulk: %v", err)
	}
	v.sameCounts(before, "cancelled bulk")
})

var _ = register("BulkWithoutGatesIsGated", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	p := seedPlan()
	p.Gates = nil
	rep, err := v.e.Bulk(v.ctx, p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts != (iu.BulkCounts{Gated: 12}) || rep.Surfaces.EventLog.Post != 0 {
		t.Fatalf("gated bulk: %+v", rep)
	}
})

// count returns a stream of n generated events.
func generated(n int, prefix string) iter.Seq2[iu.BulkEvent, error] {
	return func(yield func(iu.BulkEvent, error) bool) {
		for i := 0; i < n; i++ {
			tpl := wfKey
			if i%3 == 0 {
				tpl = fileKey
			}
			e := iu.BulkEvent{Template: tpl, Where: fmt.Sprintf("gen:%d", i+1),
				Event: iu.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Source: "gen", Type: "bulk.scaleout"}}
			if !yield(e, nil) {
				return
			}
		}
	}
}

var _ = register("BulkStreamsManyEvents", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	p := &iu.BulkPlan{Actor: "bulk", Gates: iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}}
	const n = 3000
	rep, err := v.e.Bulk(v.ctx, p, generated(n, "many"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.OK != n || rep.Surfaces.Instances.Delta != n || rep.Digest.Matches != n || rep.Digest.Diverges != 0 {
		t.Fatalf("report %+v", rep)
	}
	if m := v.count("SELECT count(*) FROM iu_collection_membership"); m != 16+8*n {
		t.Fatalf("memberships %d", m)
	}
})

var _ = register("RollbackByActor", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	if _, err := v.e.Bulk(v.ctx, seedPlan(), nil, nil); err != nil {
		t.Fatal(err)
	}
	v.gates(true, true)
	other := v.mustEmit(wfKey, "keep-me", "alice")
	if _, err := v.e.Compose(v.ctx, iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "manual-1", Actor: "bulk"}); err != nil {
		t.Fatal(err)
	}
	before := v.counts()
	dry, err := v.e.Rollback(v.ctx, "bulk", false)
	if err != nil {
		t.Fatal(err)
	}
	want := iu.RollbackReport{Actor: "bulk", DryRun: true, RollbackCounts: iu.RollbackCounts{LogRows: 12, LineageRows: 12, Instances: 12, Memberships: 96}}
	if dry != want {
		t.Fatalf("dry run %+v, want %+v", dry, want)
	}
	v.sameCounts(before, "dry-run rollback")
	done, err := v.e.Rollback(v.ctx, "bulk", true)
	if err != nil {
		t.Fatal(err)
	}
	want.DryRun = false
	if done != want {
		t.Fatalf("apply %+v, want %+v (what the dry run said)", done, want)
	}
	after := v.counts()
	for tb, d := range map[string]int64{
		"iu_auto_instantiate_event_log": 12, "iu_collection_template_instance_lineage": 12,
		"iu_piece_collection": 12, "iu_collection_membership": 96, "iu_piece": 0, "iu_gate": 0, "iu_gate_audit": 0,
	} {
		if before[tb]-after[tb] != d {
			t.Errorf("%s: %d -> %d, want %d fewer", tb, before[tb], after[tb], d)
		}
	}
	// Others' rows, the manual instance, templates and pieces stay.
	rep := v.verify("")
	if rep.Total != 2 || !rep.OK() {
		t.Fatalf("verify after rollback: %+v", rep)
	}
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].InstanceKey != other.InstanceKey {
		t.Fatalf("instances after rollback: %+v %v", page, err)
	}
	// A rolled-back event may be instantiated again.
	p := seedPlan()
	rep2, err := v.e.Bulk(v.ctx, p, nil, nil)
	if err != nil || rep2.Counts.OK != 12 {
		t.Fatalf("re-run after rollback: %+v %v", rep2, err)
	}
	// Rolling back an actor with nothing is a no-op.
	if r, err := v.e.Rollback(v.ctx, "nobody", true); err != nil || r.RollbackCounts != (iu.RollbackCounts{}) {
		t.Fatalf("rollback of nobody: %+v %v", r, err)
	}
})

var _ = register("VerifyDetectsDivergence", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	a := v.mustEmit(wfKey, "v1", "alice")
	b := v.mustEmit(wfKey, "v2", "alice")
	c := v.mustEmit(fileKey, "v3", "bob")
	if rep := v.verify(""); rep.Matches != 3 || !rep.OK() {
		t.Fatalf("clean verify: %+v", rep)
	}
	// Point one slot of a at another piece (as if the piece had been copied
	// or the graph edited).
	h.Exec(t, v.s, "UPDATE iu_collection_membership SET piece_id = (SELECT piece_id FROM iu_collection_membership WHERE collection_key = '"+fileKey+"' AND slot = 's1') WHERE collection_key = '"+a.InstanceKey+"' AND slot = 's2'")
	// Record a wrong template digest in b's lineage.
	h.Exec(t, v.s, "UPDATE iu_collection_template_instance_lineage SET template_digest = 'sha256:"+strings.Repeat("0", 64)+"' WHERE instance_key = '"+b.InstanceKey+"'")
	rep := v.verify("")
	if rep.Total != 3 || rep.Matches != 1 || rep.Diverges != 2 || rep.OK() {
		t.Fatalf("verify: %+v", rep)
	}
	got := map[string]string{}
	for _, d := range rep.Diverging {
		got[d.InstanceKey] = strings.Join(d.Reasons, "; ")
	}
	if !strings.Contains(got[a.InstanceKey], "not the template's") || !strings.Contains(got[b.InstanceKey], "lineage records template digest") {
		t.Fatalf("reasons: %v", got)
	}
	if rep := v.verify("bob"); rep.Total != 1 || !rep.OK() {
		t.Fatalf("verify bob: %+v", rep)
	}
	// Tampering with a shared piece's body breaks every instance that uses it
	// (and the template): the digest is recomputed from the stored bodies.
	h.Exec(t, v.s, "UPDATE iu_piece SET body = 'tampered' WHERE piece_id = (SELECT piece_id FROM iu_collection_membership WHERE collection_key = '"+c.InstanceKey+"' AND slot = 's4')")
	rep = v.verify("bob")
	if rep.Diverges != 1 || !strings.Contains(strings.Join(rep.Diverging[0].Reasons, ";"), "does not match its stored content") {
		t.Fatalf("verify after tampering a body: %+v", rep)
	}
})

// verify counts each kind of orphan row, on every backend: memberships
// and lineage rows that point at no collection of theirs, ok log rows whose
// instance is missing, and instances without lineage. Each corruption is
// one statement that both dialects run (and that SQLite's foreign keys
// allow), and each makes exactly its own count non-zero.
var _ = register("VerifyCountsOrphans", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	keys := make([]string, 4)
	for i := range keys {
		keys[i] = v.mustEmit(wfKey, fmt.Sprintf("o%d", i), "alice").InstanceKey
	}
	if rep := v.verify(""); !rep.OK() || rep.Orphans.Total() != 0 {
		t.Fatalf("a healthy store: %+v", rep)
	}
	corruptions := []struct {
		name  string
		sql   string
		count func(iu.Orphans) int64
	}{
		{"a membership row naming another collection's key",
			"UPDATE iu_collection_membership SET collection_key = 'tpl-inst:auto:elsewhere-000000000000' WHERE collection_key = '" + keys[0] + "' AND slot = 's1'",
			func(o iu.Orphans) int64 { return o.Memberships }},
		{"a lineage row naming another instance",
			"UPDATE iu_collection_template_instance_lineage SET instance_key = 'tpl-inst:auto:elsewhere-000000000001' WHERE instance_key = '" + keys[1] + "'",
			func(o iu.Orphans) int64 { return o.Lineage }},
		{"an ok log row whose instance is missing",
			"UPDATE iu_auto_instantiate_event_log SET instance_key = 'tpl-inst:auto:gone-000000000000' WHERE instance_key = '" + keys[2] + "'",
			func(o iu.Orphans) int64 { return o.EventLog }},
		{"an instance without lineage",
			"DELETE FROM iu_collection_template_instance_lineage WHERE instance_key = '" + keys[3] + "'",
			func(o iu.Orphans) int64 { return o.Instances }},
	}
	var want iu.Orphans
	for _, c := range corruptions {
		h.Exec(t, v.s, c.sql)
		rep := v.verify("")
		if got := c.count(rep.Orphans); got != 1 || rep.OK() {
			t.Fatalf("after %s: orphans %+v, want that count at 1", c.name, rep.Orphans)
		}
		// The counts before it are unchanged: each corruption is its own.
		if prev := want.Total(); rep.Orphans.Total() != prev+1 {
			t.Fatalf("after %s: %d orphan rows in all, want %d", c.name, rep.Orphans.Total(), prev+1)
		}
		want = rep.Orphans
	}
})

var _ = register("ConcurrentSameEventCreatesOnce", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	const workers = 16
	engines := []*iu.Engine{v.e}
	if h.Reopen != nil { // a second handle, as a second process would have
		engines = append(engines, iu.NewEngine(h.Reopen(t, v.s)))
	}
	var wg sync.WaitGroup
	results := make([]iu.Result, workers)
	errs := make([]error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = engines[i%len(engines)].Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event("same"), Actor: fmt.Sprintf("worker")})
		}()
	}
	wg.Wait()
	created := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("worker %d: %v", i, errs[i])
		}
		if results[i].InstanceKey != results[0].InstanceKey || results[i].Status != iu.StatusOK {
			t.Fatalf("worker %d: %+v vs %+v", i, results[i], results[0])
		}
		if !results[i].Replayed {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d workers created the instance, want exactly 1", created)
	}
	if n := v.count("SELECT count(*) FROM iu_piece_collection WHERE collection_kind = 'instance'"); n != 1 {
		t.Fatalf("instances: %d", n)
	}
})

var _ = register("ConcurrentDifferentEvents", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	engines := []*iu.Engine{v.e}
	if h.Reopen != nil {
		engines = append(engines, iu.NewEngine(h.Reopen(t, v.s)))
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tpl := wfKey
				if i%2 == 0 {
					tpl = fileKey
				}
				r, err := engines[w%len(engines)].Emit(v.ctx, iu.EmitRequest{TemplateKey: tpl, Event: event(fmt.Sprintf("w%d-%d", w, i)), Actor: "worker"})
				if err != nil || r.Status != iu.StatusOK || r.Replayed {
					failed.Add(1)
					t.Errorf("worker %d event %d: %+v %v", w, i, r, err)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	rep := v.verify("worker")
	if rep.Total != workers*each || !rep.OK() {
		t.Fatalf("verify: %+v", rep)
	}
})

var _ = register("BulkRacingEmits", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	const n = 400
	other := v.e
	if h.Reopen != nil {
		other = iu.NewEngine(h.Reopen(t, v.s))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var bulkErr error
	var rep *iu.BulkReport
	go func() {
		defer wg.Done()
		rep, bulkErr = v.e.Bulk(v.ctx, &iu.BulkPlan{Actor: "bulk"}, generated(n, "race"), nil)
	}()
	created := int64(0)
	for i := 0; i < n; i += 7 {
		tpl := wfKey
		if i%3 == 0 {
			tpl = fileKey
		}
		r, err := other.Emit(v.ctx, iu.EmitRequest{TemplateKey: tpl, Event: iu.Event{ID: fmt.Sprintf("race-%d", i), Source: "gen", Type: "bulk.scaleout"}, Actor: "alice"})
		if err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		if !r.Replayed {
			created++
		}
	}
	wg.Wait()
	if bulkErr != nil {
		t.Fatal(bulkErr)
	}
	if rep.Counts.OK+created != n {
		t.Fatalf("bulk created %d, emits created %d: want %d in all", rep.Counts.OK, created, n)
	}
	if m := v.count("SELECT count(*) FROM iu_piece_collection WHERE collection_kind = 'instance'"); m != n {
		t.Fatalf("instances %d, want %d", m, n)
	}
	if r := v.verify(""); !r.OK() || r.Total != n {
		t.Fatalf("verify %+v", r)
	}
})

var _ = register("RollbackRacingEmits", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	other := v.e
	if h.Reopen != nil {
		other = iu.NewEngine(h.Reopen(t, v.s))
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 150; i++ {
			if _, err := other.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event(fmt.Sprintf("rr-%d", i)), Actor: "alice"}); err != nil {
				t.Errorf("emit: %v", err)
				return
			}
		}
	}()
	// Batches as group commit makes them, half of each repeating events of
	// the single emits above, whose entries the rollbacks keep deleting.
	go func() {
		defer wg.Done()
		for i := 0; i < 40; i++ {
			var reqs []iu.EmitRequest
			for j := 0; j < 8; j++ {
				id := fmt.Sprintf("rb-%d-%d", i, j)
				if j%2 == 1 {
					id = fmt.Sprintf("rr-%d", (i*4+j)%150)
				}
				reqs = append(reqs, iu.EmitRequest{TemplateKey: wfKey, Event: event(id), Actor: "alice"})
			}
			outs, err := other.EmitBatch(v.ctx, reqs)
			if err != nil {
				t.Errorf("emit batch: %v", err)
				return
			}
			for j, o := range outs {
				if o.Err != nil || o.Result.Status != iu.StatusOK {
					t.Errorf("batch %d, request %d: %+v %v", i, j, o.Result, o.Err)
					return
				}
			}
		}
	}()
	for i := 0; i < 10; i++ {
		if _, err := v.e.Rollback(v.ctx, "alice", true); err != nil {
			t.Fatalf("rollback: %v", err)
		}
	}
	wg.Wait()
	if r := v.verify(""); !r.OK() {
		t.Fatalf("orphans or divergence after racing rollbacks: %+v", r)
	}
})
