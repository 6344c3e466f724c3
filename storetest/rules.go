package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

var _ = register("GatesStartClosedAndAreAudited", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	g, err := v.e.Gates(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.ComposerEnabled || g.AutoInstantiateEnabled {
		t.Fatalf("new store has gates %+v, want both off", g)
	}
	change, err := iu.ParseGateChange(map[string]bool{"composer_enabled": true})
	if err != nil {
		t.Fatal(err)
	}
	g, err = v.e.SetGates(v.ctx, change, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !g.ComposerEnabled || g.AutoInstantiateEnabled {
		t.Fatalf("after setting composer: %+v", g)
	}
	if _, err := v.e.SetGates(v.ctx, iu.GateChange{iu.GateComposer: false, iu.GateAutoInstantiate: true}, "bob"); err != nil {
		t.Fatal(err)
	}
	page, err := v.e.GateAudit(v.ctx, iu.PageRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	audit := page.Items
	if len(audit) != 3 {
		t.Fatalf("audit has %d entries, want 3: %+v", len(audit), audit)
	}
	if audit[2].Name != iu.GateComposer || !audit[2].Enabled || audit[2].ChangedBy != "alice" || audit[2].ChangedAt.IsZero() {
		t.Fatalf("oldest audit entry %+v, want composer on by alice", audit[2])
	}
	if audit[0].ChangedBy != "bob" {
		t.Fatalf("newest audit entry %+v, want bob's", audit[0])
	}
	if _, err := iu.ParseGateName("nope"); !errors.Is(err, iu.ErrInvalidInput) {
		t.Fatalf("unknown gate name: %v", err)
	}
})

var _ = register("PublishIsIdempotentAndImmutable", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	tp := template(t, wfKey, 8, "")
	res, err := v.e.PublishTemplates(v.ctx, []*iu.Template{tp}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Created || res[0].Digest != tp.Digest || res[0].Pieces != 8 {
		t.Fatalf("first publish: %+v", res[0])
	}
	before := v.counts()
	res, err = v.e.PublishTemplates(v.ctx, []*iu.Template{template(t, wfKey, 8, "")}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Created {
		t.Fatalf("second identical publish says created")
	}
	v.sameCounts(before, "identical publish")
	_, err = v.e.PublishTemplates(v.ctx, []*iu.Template{template(t, wfKey, 7, "")}, "tester")
	if !errors.Is(err, iu.ErrTemplateExists) || !strings.Contains(err.Error(), "tpl:wf:onboarding/v3") {
		t.Fatalf("publishing other content under the same key: %v, want ErrTemplateExists naming v3", err)
	}
	v.sameCounts(before, "refused publish")
	// All or nothing: a good template beside a conflicting one is not published.
	_, err = v.e.PublishTemplates(v.ctx, []*iu.Template{template(t, fileKey, 3, ""), template(t, wfKey, 2, "")}, "tester")
	if !errors.Is(err, iu.ErrTemplateExists) {
		t.Fatalf("batch with a conflict: %v", err)
	}
	v.sameCounts(before, "refused batch")

	got, err := v.e.GetTemplate(v.ctx, wfKey)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != tp.Digest || len(got.Slots) != 8 || len(got.Pieces) != 8 || got.EmitMode != iu.EmitLive {
		t.Fatalf("stored template: digest %s slots %d pieces %d mode %s", got.Digest, len(got.Slots), len(got.Pieces), got.EmitMode)
	}
	for i, s := range got.Slots {
		if s.ID != tp.Slots[i].ID || s.Piece != tp.Slots[i].Piece || strings.Join(s.After, ",") != strings.Join(tp.Slots[i].After, ",") {
			t.Fatalf("slot %d stored as %+v, published %+v", i, s, tp.Slots[i])
		}
		if got.Pieces[s.Piece].ID() != s.Piece {
			t.Fatalf("piece %s does not hash to its id", s.Piece)
		}
	}
	if _, err := v.e.GetTemplate(v.ctx, "tpl:wf:missing/v1"); !errors.Is(err, iu.ErrUnknownTemplate) {
		t.Fatalf("missing template: %v", err)
	}
	// Pieces are content-addressed: a second template with the same bodies
	// adds no piece rows.
	other := template(t, wfKey, 8, "")
	other.Key = "tpl:wf:onboarding/v9"
	pieces := v.count("SELECT count(*) FROM iu_piece")
	v.publish(other)
	if n := v.count("SELECT count(*) FROM iu_piece"); n != pieces {
		t.Fatalf("piece rows %d -> %d: equal content must be stored once", pieces, n)
	}
})

var _ = register("EmitModeSwitch", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	if err := v.e.SetEmitMode(v.ctx, wfKey, iu.EmitShadow); err != nil {
		t.Fatal(err)
	}
	tpage, err := v.e.ListTemplates(v.ctx, iu.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	list := tpage.Items
	if len(list) != 2 || list[0].Key != fileKey || list[1].Key != wfKey || list[1].EmitMode != iu.EmitShadow || list[0].Pieces != 8 {
		t.Fatalf("list: %+v", list)
	}
	if err := v.e.SetEmitMode(v.ctx, "tpl:wf:nope/v1", iu.EmitLive); !errors.Is(err, iu.ErrUnknownTemplate) {
		t.Fatalf("mode of unknown template: %v", err)
	}
	if err := v.e.SetEmitMode(v.ctx, wfKey, "loud"); !errors.Is(err, iu.ErrInvalidInput) {
		t.Fatalf("bad mode: %v", err)
	}
})

var _ = register("EmitGatedWritesNothing", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	before := v.counts()
	r := v.mustEmit(wfKey, "e1", "alice")
	if r.Status != iu.StatusGated || r.Gate != iu.GateAutoInstantiate || r.Replayed {
		t.Fatalf("both gates off: %+v", r)
	}
	v.sameCounts(before, "gated emit")
	v.gates(false, true)
	before = v.counts()
	r = v.mustEmit(wfKey, "e1", "alice")
	if r.Status != iu.StatusGated || r.Gate != iu.GateComposer {
		t.Fatalf("composer off: %+v", r)
	}
	v.sameCounts(before, "composer-gated emit")
})

var _ = register("EmitCreatesCorrelatedSharedInstance", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	wf, _ := v.seedTemplates()
	v.gates(true, true)
	ev := iu.Event{ID: "evt-1", Source: "hr", Type: "hire.created", Subject: "Ada Lovelace", Data: json.RawMessage(`{"manager": "Grace"}`)}
	r, err := v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: ev, Actor: "alice", Prefix: "onb"})
	if err != nil {
		t.Fatal(err)
	}
	key := iu.IdempotencyKey(wfKey, "hr", "evt-1")
	if r.Status != iu.StatusOK || r.Replayed || r.IdempotencyKey != key || r.InstanceKey != "tpl-inst:auto:onb-"+key[:12] {
		t.Fatalf("result %+v", r)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE event_id = 'evt-1' AND event_type = 'hire.created' AND event_source = 'hr' AND actor = 'alice' AND status = 'ok' AND idempotency_key = '" + key + "'"); n != 1 {
		t.Fatalf("event log rows for the event: %d", n)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE instance_key = '" + r.InstanceKey + "' AND template_key = '" + wfKey + "' AND template_digest = '" + wf.Digest.String() + "' AND actor = 'alice' AND mode = 'auto' AND event_id = 'evt-1' AND event_type = 'hire.created' AND event_source = 'hr'"); n != 1 {
		t.Fatalf("lineage rows: %d", n)
	}
	// Shared graph: the instance's memberships reference the template's own
	// piece ids; no piece row was added.
	if n := v.count("SELECT count(*) FROM iu_piece"); n != 16 {
		t.Fatalf("pieces: %d, want the 16 of the two templates", n)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_membership m JOIN iu_collection_membership tm ON tm.collection_key = '" + wfKey + "' AND tm.slot = m.slot AND tm.piece_id = m.piece_id AND tm.after_slots = m.after_slots WHERE m.collection_key = '" + r.InstanceKey + "'"); n != 8 {
		t.Fatalf("instance slots sharing the template's pieces: %d, want 8", n)
	}
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	rows := page.Items
	if len(rows) != 1 || rows[0].InstanceKey != r.InstanceKey || rows[0].EventID != "evt-1" || rows[0].EventType != "hire.created" ||
		rows[0].EventSource != "hr" || !rows[0].DigestMatch || rows[0].InstanceDigest != wf.Digest || rows[0].TemplateDigest != wf.Digest {
		t.Fatalf("instances view: %+v", rows)
	}
	rep := v.verify("")
	if rep.Matches != 1 || rep.Total != 1 || !rep.OK() {
		t.Fatalf("verify: %+v", rep)
	}
})

var _ = register("ReplayReturnsFirstAnswer", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	first := v.mustEmit(wfKey, "e1", "alice")
	before := v.counts()
	for i := 0; i < 3; i++ {
		again := v.mustEmit(wfKey, "e1", "alice")
		if again.Status != iu.StatusOK || !again.Replayed || again.InstanceKey != first.InstanceKey || again.IdempotencyKey != first.IdempotencyKey {
			t.Fatalf("replay %d: %+v, first %+v", i, again, first)
		}
	}
	// Another actor redelivering the same event gets the same answer too.
	again := v.mustEmit(wfKey, "e1", "bob")
	if !again.Replayed || again.InstanceKey != first.InstanceKey {
		t.Fatalf("replay by another actor: %+v", again)
	}
	v.sameCounts(before, "replays")
	// Data with its keys in another order and other spacing is the same payload.
	ev := event("e1")
	ev.Data = json.RawMessage(`{ "team" : "core" }`)
	r, err := v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: ev, Actor: "alice"})
	if err != nil || !r.Replayed {
		t.Fatalf("reformatted payload: %+v %v", r, err)
	}
	// Another source is another event.
	ev = event("e1")
	ev.Source = "elsewhere"
	r, err = v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: ev, Actor: "alice"})
	if err != nil || r.Replayed || r.InstanceKey == first.InstanceKey {
		t.Fatalf("same id, other source: %+v %v", r, err)
	}
	// The same event for another template is another instantiation.
	r = v.mustEmit(fileKey, "e1", "alice")
	if r.Replayed || r.Status != iu.StatusOK {
		t.Fatalf("same event, other template: %+v", r)
	}
})

var _ = register("IdempotencyConflictIsAnError", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	v.mustEmit(wfKey, "e1", "alice")
	before := v.counts()
	for name, mutate := range map[string]func(*iu.Event){
		"data":    func(e *iu.Event) { e.Data = json.RawMessage(`{"team":"other"}`) },
		"type":    func(e *iu.Event) { e.Type = "test.deleted" },
		"subject": func(e *iu.Event) { e.Subject = "Grace" },
	} {
		ev := event("e1")
		mutate(&ev)
		_, err := v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: ev, Actor: "alice"})
		if !errors.Is(err, iu.ErrIdempotencyConflict) || iu.ErrorCode(err) != iu.CodeConflict {
			t.Fatalf("other %s under the same id: %v, want ErrIdempotencyConflict", name, err)
		}
	}
	v.sameCounts(before, "conflicting emits")
})

var _ = register("ShadowModeLogsOnly", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.publish(template(t, wfKey, 8, iu.EmitShadow))
	v.gates(false, true) // shadow makes nothing, so the composer gate is not needed
	before := v.counts()
	r := v.mustEmit(wfKey, "s1", "alice")
	if r.Status != iu.StatusShadow || r.Replayed || !strings.HasPrefix(r.InstanceKey, "tpl-inst:auto:alice-") {
		t.Fatalf("shadow: %+v", r)
	}
	after := v.counts()
	if after["iu_auto_instantiate_event_log"] != before["iu_auto_instantiate_event_log"]+1 ||
		after["iu_piece_collection"] != before["iu_piece_collection"] ||
		after["iu_collection_template_instance_lineage"] != before["iu_collection_template_instance_lineage"] ||
		after["iu_collection_membership"] != before["iu_collection_membership"] {
		t.Fatalf("shadow wrote %v -> %v, want one log row only", before, after)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE status = 'shadow'"); n != 1 {
		t.Fatalf("shadow log rows: %d", n)
	}
	again := v.mustEmit(wfKey, "s1", "alice")
	if again.Status != iu.StatusShadow || !again.Replayed {
		t.Fatalf("shadow replay: %+v", again)
	}
	if rep := v.verify(""); rep.Total != 0 || !rep.OK() {
		t.Fatalf("verify after shadow: %+v", rep)
	}
})

var _ = register("InvalidRequestsWriteNothing", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	before := v.counts()
	bad := []struct {
		name string
		req  iu.EmitRequest
		want error
	}{
		{"unknown template", iu.EmitRequest{TemplateKey: "tpl:wf:nope/v1", Event: event("x"), Actor: "a"}, iu.ErrUnknownTemplate},
		{"malformed key", iu.EmitRequest{TemplateKey: "wf:onboarding", Event: event("x"), Actor: "a"}, iu.ErrInvalidTemplate},
		{"no id", iu.EmitRequest{TemplateKey: wfKey, Event: iu.Event{Source: "s", Type: "t"}, Actor: "a"}, iu.ErrInvalidEvent},
		{"no type", iu.EmitRequest{TemplateKey: wfKey, Event: iu.Event{ID: "x", Source: "s"}, Actor: "a"}, iu.ErrInvalidEvent},
		{"no source", iu.EmitRequest{TemplateKey: wfKey, Event: iu.Event{ID: "x", Type: "t"}, Actor: "a"}, iu.ErrInvalidEvent},
		{"bad data", iu.EmitRequest{TemplateKey: wfKey, Event: iu.Event{ID: "x", Source: "s", Type: "t", Data: json.RawMessage(`{`)}, Actor: "a"}, iu.ErrInvalidEvent},
		{"control char", iu.EmitRequest{TemplateKey: wfKey, Event: iu.Event{ID: "x\n", Source: "s", Type: "t"}, Actor: "a"}, iu.ErrInvalidEvent},
		{"no actor", iu.EmitRequest{TemplateKey: wfKey, Event: event("x")}, iu.ErrInvalidInput},
	}
	for _, b := range bad {
		_, err := v.e.Emit(v.ctx, b.req)
		if !errors.Is(err, b.want) {
			t.Errorf("%s: %v, want %v", b.name, err, b.want)
		}
	}
	v.sameCounts(before, "invalid emits")
})

var _ = register("EmitBatchIsolatesFailures", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	v.mustEmit(wfKey, "taken", "alice")
	conflicting := event("taken")
	conflicting.Data = json.RawMessage(`{"other":1}`)
	reqs := []iu.EmitRequest{
		{TemplateKey: wfKey, Event: event("b1"), Actor: "alice"},
		{TemplateKey: "tpl:wf:nope/v1", Event: event("b2"), Actor: "alice"},
		{TemplateKey: wfKey, Event: iu.Event{ID: "b3"}, Actor: "alice"},
		{TemplateKey: wfKey, Event: conflicting, Actor: "alice"},
		{TemplateKey: fileKey, Event: event("b5"), Actor: "alice"},
		{TemplateKey: wfKey, Event: event("b1"), Actor: "alice"}, // repeat within the batch
		{TemplateKey: wfKey, Event: event("taken"), Actor: "alice"},
	}
	outs, err := v.e.EmitBatch(v.ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		err      error
		replayed bool
	}{{nil, false}, {iu.ErrUnknownTemplate, false}, {iu.ErrInvalidEvent, false}, {iu.ErrIdempotencyConflict, false}, {nil, false}, {nil, true}, {nil, true}}
	for i, w := range want {
		if w.err != nil {
			if !errors.Is(outs[i].Err, w.err) {
				t.Errorf("request %d: %v, want %v", i, outs[i].Err, w.err)
			}
			continue
		}
		if outs[i].Err != nil || outs[i].Result.Status != iu.StatusOK || outs[i].Result.Replayed != w.replayed {
			t.Errorf("request %d: %+v %v, want ok replayed=%t", i, outs[i].Result, outs[i].Err, w.replayed)
		}
	}
	if outs[5].Result.InstanceKey != outs[0].Result.InstanceKey {
		t.Errorf("repeat within batch answered %s, first %s", outs[5].Result.InstanceKey, outs[0].Result.InstanceKey)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage"); n != 3 {
		t.Fatalf("lineage rows %d, want 3 (taken, b1, b5)", n)
	}
})

var _ = register("ComposeManual", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	wf, _ := v.seedTemplates()
	req := iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:manual:18000x-1", Actor: "alice"}
	before := v.counts()
	if _, err := v.e.Compose(v.ctx, req); !errors.Is(err, iu.ErrGateClosed) || !strings.Contains(err.Error(), iu.GateComposer) {
		t.Fatalf("compose with composer off: %v", err)
	}
	v.sameCounts(before, "gated compose")
	v.gates(true, false) // the manual path needs only the composer
	res, err := v.e.Compose(v.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != wf.Digest || res.Pieces != 8 {
		t.Fatalf("compose: %+v", res)
	}
	if n := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE mode = 'manual' AND actor = 'alice' AND event_id IS NULL AND template_digest = '" + wf.Digest.String() + "'"); n != 1 {
		t.Fatalf("manual lineage rows: %d", n)
	}
	before = v.counts()
	if _, err := v.e.Compose(v.ctx, req); !errors.Is(err, iu.ErrInstanceExists) {
		t.Fatalf("compose under a taken key: %v", err)
	}
	for _, bad := range []struct {
		req  iu.ComposeRequest
		want error
	}{
		{iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "tpl-inst:auto:x-1", Actor: "alice"}, iu.ErrInvalidInput},
		{iu.ComposeRequest{TemplateKey: wfKey, InstanceKey: "", Actor: "alice"}, iu.ErrInvalidInput},
		{iu.ComposeRequest{TemplateKey: "tpl:wf:nope/v1", InstanceKey: "m2", Actor: "alice"}, iu.ErrUnknownTemplate},
	} {
		if _, err := v.e.Compose(v.ctx, bad.req); !errors.Is(err, bad.want) {
			t.Fatalf("compose %+v: %v, want %v", bad.req, err, bad.want)
		}
	}
	v.sameCounts(before, "refused composes")
	rep := v.verify("alice")
	if rep.Total != 1 || rep.Matches != 1 {
		t.Fatalf("verify manual: %+v", rep)
	}
	// Manual instances are not auto instances: not in the views.
	page, err := v.e.Instances(v.ctx, iu.InstanceFilter{})
	if err != nil || len(page.Items) != 0 || page.Next != "" {
		t.Fatalf("instances view lists manual rows: %v %v", page, err)
	}
})

var _ = register("RenderFillsEventData", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	spec := &iu.TemplateSpec{Key: wfKey, Title: "Onboarding", Pieces: []iu.SlotSpec{
		{ID: "laptop", Kind: "step", Body: "Laptop for {{ .subject }} in {{ .data.team }}", After: []string{"welcome"}},
		{ID: "welcome", Kind: "step", Body: "Welcome {{ .subject }}"},
	}}
	tp, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	v.publish(tp)
	v.gates(true, true)
	r := v.mustEmit(wfKey, "r1", "alice")
	out, err := v.e.Render(v.ctx, r.InstanceKey)
	if err != nil {
		t.Fatal(err)
	}
	w, l := strings.Index(out.Text, "1. [ ] Welcome Ada"), strings.Index(out.Text, "2. [ ] Laptop for Ada in core")
	if out.Format != "checklist" || w < 0 || l < w {
		t.Fatalf("render:\n%s", out.Text)
	}
	if _, err := v.e.Render(v.ctx, "tpl-inst:auto:nope"); !errors.Is(err, iu.ErrNotFound) {
		t.Fatalf("render missing: %v", err)
	}
})

var _ = register("SummaryCountsLastHour", func(t *testing.T, h Harness) {
	old := newEnv(t, h, iu.WithClock(ago(2*time.Hour)))
	old.seedTemplates()
	old.gates(true, true)
	old.mustEmit(wfKey, "old-1", "alice")
	old.mustEmit(wfKey, "old-2", "alice")
	now := iu.NewEngine(old.s)
	for _, id := range []string{"new-1", "new-2", "new-3"} {
		if _, err := now.Emit(old.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event(id), Actor: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := now.Emit(old.ctx, iu.EmitRequest{TemplateKey: fileKey, Event: event("f"), Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	stats, err := now.Stats(old.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []iu.TemplateStat{
		{TemplateKey: fileKey, EmitMode: iu.EmitLive, InstanceCount: 1, InstancesLastHour: 1},
		{TemplateKey: wfKey, EmitMode: iu.EmitLive, InstanceCount: 5, InstancesLastHour: 3},
	}
	if len(stats) != 2 || stats[0] != want[0] || stats[1] != want[1] {
		t.Fatalf("stats %+v, want %+v", stats, want)
	}
	first, err := now.Instances(old.ctx, iu.InstanceFilter{TemplateKey: wfKey, PageRequest: iu.PageRequest{Limit: 1}})
	if err != nil || len(first.Items) != 1 || first.Items[0].EventID != "old-1" || first.Next == "" {
		t.Fatalf("first page: %+v %v", first, err)
	}
	page, err := now.Instances(old.ctx, iu.InstanceFilter{TemplateKey: wfKey, PageRequest: iu.PageRequest{After: first.Next, Limit: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rows := page.Items
	if len(rows) != 2 || rows[0].EventID != "old-2" || rows[1].EventID != "new-1" && rows[1].EventID != "new-2" && rows[1].EventID != "new-3" {
		t.Fatalf("paged instances: %+v", rows)
	}
	if !rows[0].CreatedAt.Before(rows[1].CreatedAt.Time) {
		t.Fatalf("instances not in time order: %v then %v", rows[0].CreatedAt, rows[1].CreatedAt)
	}
	page, err = now.Instances(old.ctx, iu.InstanceFilter{Actor: "bob"})
	if err != nil || len(page.Items) != 1 || page.Items[0].TemplateKey != fileKey || page.Next != "" {
		t.Fatalf("instances of bob: %+v %v", page, err)
	}
})

var _ = register("UnknownTemplateIsAnErrorEvenWhenGated", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	before := v.counts()
	if _, err := v.emit("tpl:wf:nope/v1", "g1", "alice"); !errors.Is(err, iu.ErrUnknownTemplate) {
		t.Fatalf("unknown template with the gates closed: %v, want ErrUnknownTemplate", err)
	}
	r := v.mustEmit(wfKey, "g1", "alice")
	if r.Status != iu.StatusGated || r.Gate != iu.GateAutoInstantiate {
		t.Fatalf("known template with the gates closed: %+v", r)
	}
	v.sameCounts(before, "gated and refused emits")
})

// withAnotherProcess returns a store with the seed's templates and both
// gates on, and an engine on a second handle of the same store, as another
// process would open it (skipping when the harness has none).
func withAnotherProcess(t *testing.T, h Harness) (*env, *iu.Engine) {
	t.Helper()
	if h.Reopen == nil {
		t.Skip("the harness opens no second handle")
	}
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	return v, iu.NewEngine(h.Reopen(t, v.s))
}

// A gate or an emit mode changed by another process is seen by the next
// emit here, single or batched, however this store caches what it read.
var _ = register("ChangesByAnotherProcessAreSeen", func(t *testing.T, h Harness) {
	v, other := withAnotherProcess(t, h)
	emit := func(id string) iu.Result {
		t.Helper()
		r, err := v.e.Emit(v.ctx, iu.EmitRequest{TemplateKey: wfKey, Event: event(id), Actor: "watcher"})
		if err != nil {
			t.Fatalf("emit %s: %v", id, err)
		}
		return r
	}
	batch := func(id string) iu.Result {
		t.Helper()
		outs, err := v.e.EmitBatch(v.ctx, []iu.EmitRequest{
			{TemplateKey: wfKey, Event: event(id + "-a"), Actor: "watcher"},
			{TemplateKey: wfKey, Event: event(id + "-b"), Actor: "watcher"},
		})
		if err != nil || outs[0].Err != nil || outs[1].Result.Status != outs[0].Result.Status {
			t.Fatalf("batch %s: %+v %v", id, outs, err)
		}
		return outs[0].Result
	}
	for _, send := range []func(string) iu.Result{emit, batch} {
		pre := fmt.Sprintf("%p-", send)
		if r := send(pre + "1"); !r.Created() {
			t.Fatalf("gates on: %+v", r)
		}
		if _, err := other.SetGates(v.ctx, iu.GateChange{iu.GateAutoInstantiate: false}, "other"); err != nil {
			t.Fatal(err)
		}
		if r := send(pre + "2"); r.Status != iu.StatusGated || r.Gate != iu.GateAutoInstantiate {
			t.Fatalf("after another process closed the gate: %+v, want gated", r)
		}
		if _, err := other.SetGates(v.ctx, iu.GateChange{iu.GateAutoInstantiate: true}, "other"); err != nil {
			t.Fatal(err)
		}
		if err := other.SetEmitMode(v.ctx, wfKey, iu.EmitShadow); err != nil {
			t.Fatal(err)
		}
		if r := send(pre + "3"); r.Status != iu.StatusShadow {
			t.Fatalf("after another process set shadow mode: %+v, want shadow", r)
		}
		if err := other.SetEmitMode(v.ctx, wfKey, iu.EmitLive); err != nil {
			t.Fatal(err)
		}
		if r := send(pre + "4"); !r.Created() {
			t.Fatalf("after another process set live mode again: %+v", r)
		}
	}
	if got := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'watcher'"); got != 6 {
		t.Fatalf("%d instances of the watcher, want 6 (two single emits, two batches of two)", got)
	}
})

// A gate closed by another process while emits race on: every answer is
// true to what was written (each "created" has its instance, no "gated"
// wrote anything), and every emit that starts after the close has returned
// is gated, single or batched.
var _ = register("GateClosedRacingEmits", func(t *testing.T, h Harness) {
	v, other := withAnotherProcess(t, h)
	// Each worker emits until it has made five emits that started after the
	// close; the gate closes once twenty instances exist.
	const workers, afterClose, beforeClose = 4, 5, 20
	var closed atomic.Bool
	var created, gated, lateOpen atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			late := 0
			for i := 0; late < afterClose && i < 10000; i++ {
				after := closed.Load()
				if after {
					late++
				}
				var rs []iu.Result
				id := fmt.Sprintf("race-%d-%d", w, i)
				if i%3 == 0 {
					outs, err := v.e.EmitBatch(v.ctx, []iu.EmitRequest{
						{TemplateKey: wfKey, Event: event(id + "-a"), Actor: "racer"},
						{TemplateKey: fileKey, Event: event(id + "-b"), Actor: "racer"},
					})
					if err != nil {
						t.Errorf("batch %s: %v", id, err)
						return
					}
					for _, o := range outs {
						if o.Err != nil {
							t.Errorf("batch %s: %v", id, o.Err)
							return
						}
						rs = append(rs, o.Result)
					}
				} else {
					r, err := v.emit(wfKey, id, "racer")
					if err != nil {
						t.Errorf("emit %s: %v", id, err)
						return
					}
					rs = append(rs, r)
				}
				for _, r := range rs {
					switch {
					case r.Created():
						created.Add(1)
						if after {
							lateOpen.Add(1)
						}
					case r.Status == iu.StatusGated:
						gated.Add(1)
					default:
						t.Errorf("%s: %+v", id, r)
					}
				}
			}
		}()
	}
	for created.Load() < beforeClose && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	closing := time.Now()
	if _, err := other.SetGates(v.ctx, iu.GateChange{iu.GateAutoInstantiate: false}, "other"); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	took := time.Since(closing)
	wg.Wait()
	if n := lateOpen.Load(); n != 0 {
		t.Fatalf("%d emits that started after the gate was closed created instances", n)
	}
	if got := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = 'racer'"); got != created.Load() {
		t.Fatalf("%d log rows, but %d emits answered created (%d gated)", got, created.Load(), gated.Load())
	}
	if got := v.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'racer'"); got != created.Load() {
		t.Fatalf("%d instances, but %d emits answered created", got, created.Load())
	}
	if gated.Load() < workers*afterClose {
		t.Fatalf("%d emits gated, want at least %d", gated.Load(), workers*afterClose)
	}
	t.Logf("%d created, %d gated; closing the gate took %v", created.Load(), gated.Load(), took)
})
