package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

var _ = register("TriggersAddListRemove", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	hr, err := v.e.AddTrigger(v.ctx, iu.Trigger{Name: "hr", Type: "com.acme.hr.*", Template: wfKey, Actor: "hr-bot", Prefix: "hr"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if hr.CreatedBy != "alice" || hr.CreatedAt.IsZero() {
		t.Fatalf("added trigger %+v: want created by alice, with a time", hr)
	}
	anon, err := v.e.AddTrigger(v.ctx, iu.Trigger{Type: "pm.report.due", Source: "pm:tracker", Template: fileKey}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(anon.Name, "trg-") {
		t.Fatalf("a trigger without a name got %q, want a derived trg-... name", anon.Name)
	}
	list, err := v.e.Triggers(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "hr" || list[1].Name != anon.Name {
		t.Fatalf("list %+v: want hr and %s, by name", list, anon.Name)
	}
	got := list[0]
	if got.Type != "com.acme.hr.*" || got.Source != "" || got.Template != wfKey || got.Actor != "hr-bot" || got.Prefix != "hr" ||
		!got.CreatedAt.Equal(hr.CreatedAt.Time) || got.CreatedBy != "alice" {
		t.Fatalf("stored trigger %+v differs from the added %+v", got, hr)
	}
	if list[1].Source != "pm:tracker" {
		t.Fatalf("stored source %q", list[1].Source)
	}

	before := v.counts()
	triggers := v.count("SELECT count(*) FROM iu_trigger")
	// The same name, or the same route under another name, is refused.
	for _, dup := range []iu.Trigger{
		{Name: "hr", Type: "other.type", Template: fileKey},
		{Name: "hr-again", Type: "com.acme.hr.*", Template: wfKey},
		{Type: "pm.report.due", Source: "pm:tracker", Template: fileKey},
	} {
		_, err := v.e.AddTrigger(v.ctx, dup, "alice")
		if !errors.Is(err, iu.ErrTriggerExists) || iu.ErrorCode(err) != iu.CodeConflict {
			t.Fatalf("adding %+v again: %v, want ErrTriggerExists", dup, err)
		}
	}
	// Unknown templates and malformed fields are refused.
	for _, bad := range []struct {
		tr   iu.Trigger
		want error
	}{
		{iu.Trigger{Type: "x", Template: "tpl:wf:missing/v1"}, iu.ErrUnknownTemplate},
		{iu.Trigger{Type: "", Template: wfKey}, iu.ErrInvalidInput},
		{iu.Trigger{Type: "a.*.b", Template: wfKey}, iu.ErrInvalidInput},
		{iu.Trigger{Type: ".*", Template: wfKey}, iu.ErrInvalidInput},
		{iu.Trigger{Type: "x", Template: "not-a-key"}, iu.ErrInvalidInput},
		{iu.Trigger{Type: "x", Template: wfKey, Actor: "has space"}, iu.ErrInvalidInput},
		{iu.Trigger{Name: "bad name", Type: "x", Template: wfKey}, iu.ErrInvalidInput},
	} {
		if _, err := v.e.AddTrigger(v.ctx, bad.tr, "alice"); !errors.Is(err, bad.want) {
			t.Fatalf("adding %+v: %v, want %v", bad.tr, err, bad.want)
		}
	}
	if n := v.count("SELECT count(*) FROM iu_trigger"); n != triggers {
		t.Fatalf("refused triggers were written: %d rows, want %d", n, triggers)
	}
	v.sameCounts(before, "refused triggers")

	removed, err := v.e.RemoveTrigger(v.ctx, "hr")
	if err != nil || removed.Name != "hr" || removed.Template != wfKey {
		t.Fatalf("remove hr: %+v, %v", removed, err)
	}
	if _, err := v.e.RemoveTrigger(v.ctx, "hr"); !errors.Is(err, iu.ErrNotFound) {
		t.Fatalf("removing hr twice: %v, want ErrNotFound", err)
	}
	if list, _ := v.e.Triggers(v.ctx); len(list) != 1 {
		t.Fatalf("after remove: %+v", list)
	}
})

var _ = register("TriggersRouteEvents", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	for _, tr := range []iu.Trigger{
		{Name: "hr-any", Type: "com.acme.hr.*", Template: wfKey},
		{Name: "hired-report", Type: "com.acme.hr.hired", Template: fileKey, Actor: "reporter", Prefix: "rep"},
	} {
		if _, err := v.e.AddTrigger(v.ctx, tr, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	triggers, err := v.e.Triggers(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := event("hire-1")
	ev.Type = "com.acme.hr.hired"
	reqs, err := iu.Route(ev, iu.Routing{}, triggers, "producer")
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[0].TemplateKey != fileKey || reqs[0].Actor != "reporter" || reqs[0].Prefix != "rep" ||
		reqs[1].TemplateKey != wfKey || reqs[1].Actor != "producer" {
		t.Fatalf("routes %+v: want the exact trigger first, then the prefix one with the producer as actor", reqs)
	}
	// Both templates in one transaction, each with its own key.
	outs, err := v.e.EmitBatch(v.ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0].Err != nil || outs[1].Err != nil || !outs[0].Result.Created() || !outs[1].Result.Created() ||
		outs[0].Result.IdempotencyKey == outs[1].Result.IdempotencyKey {
		t.Fatalf("fan-out outcomes %+v", outs)
	}
	if n := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE event_id = 'hire-1'"); n != 2 {
		t.Fatalf("%d log rows for the fanned-out event, want 2", n)
	}
	ev.Type = "com.acme.sales.won"
	if _, err := iu.Route(ev, iu.Routing{}, triggers, "producer"); !errors.Is(err, iu.ErrUnmatched) {
		t.Fatalf("an unmatched event: %v, want ErrUnmatched", err)
	}
})

var _ = register("TokensCreateAuthenticateRevoke", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	nt, err := v.e.CreateToken(v.ctx, "ci", iu.ScopeIngest, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nt.Secret, "iu_") || nt.Hash != iu.HashToken(nt.Secret) || nt.Scope != iu.ScopeIngest {
		t.Fatalf("new token %+v", nt)
	}
	// Only the hash is stored.
	if n := v.count("SELECT count(*) FROM iu_token WHERE token_hash = '" + nt.Hash + "'"); n != 1 {
		t.Fatalf("%d rows with the token's hash", n)
	}
	if n := v.count("SELECT count(*) FROM iu_token WHERE token_hash LIKE '%" + nt.Secret[3:] + "%' OR name LIKE '%" + nt.Secret[3:] + "%'"); n != 0 {
		t.Fatalf("the secret is stored")
	}
	tk, err := v.e.Authenticate(v.ctx, nt.Secret)
	if err != nil || tk.Name != "ci" || tk.Scope != iu.ScopeIngest || tk.CreatedBy != "alice" {
		t.Fatalf("authenticate: %+v, %v", tk, err)
	}
	for _, bad := range []string{"", "iu_", nt.Secret + "x", strings.ToUpper(nt.Secret), "Bearer " + nt.Secret, nt.Hash} {
		if _, err := v.e.Authenticate(v.ctx, bad); !errors.Is(err, iu.ErrUnauthorized) || strings.Contains(err.Error(), nt.Secret) {
			t.Fatalf("authenticate %q: %v, want ErrUnauthorized", bad, err)
		}
	}
	anon, err := v.e.CreateToken(v.ctx, "", iu.ScopeRead, "alice")
	if err != nil || !strings.HasPrefix(anon.Name, "read-") {
		t.Fatalf("a token without a name: %+v, %v", anon, err)
	}
	if _, err := v.e.CreateToken(v.ctx, "ci", iu.ScopeAdmin, "alice"); !errors.Is(err, iu.ErrTokenExists) {
		t.Fatalf("a second token named ci: %v, want ErrTokenExists", err)
	}
	if _, err := v.e.CreateToken(v.ctx, "x", iu.Scope("root"), "alice"); !errors.Is(err, iu.ErrInvalidInput) {
		t.Fatalf("an unknown scope: %v", err)
	}
	tokens, err := v.e.ListTokens(v.ctx, iu.PageRequest{})
	if list := tokens.Items; err != nil || len(list) != 2 || list[0].Name != "ci" || list[0].Revoked() {
		t.Fatalf("list: %+v, %v", tokens, err)
	}
	rv, err := v.e.RevokeToken(v.ctx, "ci")
	if err != nil || !rv.Revoked() {
		t.Fatalf("revoke: %+v, %v", rv, err)
	}
	time.Sleep(5 * time.Millisecond)
	again, err := v.e.RevokeToken(v.ctx, "ci")
	if err != nil || !again.RevokedAt.Equal(rv.RevokedAt.Time) {
		t.Fatalf("revoking twice moved the time: %v -> %v, %v", rv.RevokedAt, again.RevokedAt, err)
	}
	if _, err := v.e.Authenticate(v.ctx, nt.Secret); !errors.Is(err, iu.ErrUnauthorized) {
		t.Fatalf("a revoked token authenticates: %v", err)
	}
	if _, err := v.e.RevokeToken(v.ctx, "nobody"); !errors.Is(err, iu.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
})

var _ = register("SchemaIsCurrentAndReady", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	if err := v.e.Ready(v.ctx); err != nil {
		t.Fatalf("a fresh store is not ready: %v", err)
	}
	v.h.Exec(t, v.s, `INSERT INTO iu_schema_version (version_id, is_applied) VALUES (99999, true)`)
	err := v.e.Ready(v.ctx)
	if !errors.Is(err, iu.ErrSchemaTooNew) || !strings.Contains(err.Error(), "99999") {
		t.Fatalf("ready with a newer schema: %v", err)
	}
})

// The batcher answers each caller on its own: duplicates in one batch are
// replays, a bad request fails alone, a fanned-out event is one unit.
var _ = register("BatcherGroupsAndIsolates", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	var sizes []int
	var mu sync.Mutex
	b := v.e.NewBatcher(iu.BatchOptions{MaxEvents: 64, MaxWait: 20 * time.Millisecond, Observe: func(n int, _ time.Duration, _ error) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	const n = 40
	type answer struct {
		outs []iu.Outcome
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var reqs []iu.EmitRequest
			switch {
			case i%10 == 3: // invalid: no type
				ev := event("bad")
				ev.Type = ""
				reqs = []iu.EmitRequest{{TemplateKey: wfKey, Event: ev, Actor: "batch"}}
			case i%10 == 5: // unknown template
				reqs = []iu.EmitRequest{{TemplateKey: "tpl:wf:missing/v1", Event: event("m"), Actor: "batch"}}
			case i%2 == 0: // duplicates of one event
				reqs = []iu.EmitRequest{{TemplateKey: wfKey, Event: event("dup"), Actor: "batch"}}
			default: // fan-out to both templates
				ev := event(fmt.Sprintf("e-%d", i))
				reqs = []iu.EmitRequest{{TemplateKey: wfKey, Event: ev, Actor: "batch"}, {TemplateKey: fileKey, Event: ev, Actor: "batch"}}
			}
			outs, err := b.Submit(v.ctx, reqs)
			answers[i] = answer{outs, err}
		}()
	}
	wg.Wait()
	if err := b.Close(v.ctx); err != nil {
		t.Fatal(err)
	}
	created := 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("request %d: batch error %v", i, a.err)
		}
		switch {
		case i%10 == 3:
			if !errors.Is(a.outs[0].Err, iu.ErrInvalidEvent) {
				t.Fatalf("request %d: %+v, want invalid", i, a.outs)
			}
		case i%10 == 5:
			if !errors.Is(a.outs[0].Err, iu.ErrUnknownTemplate) {
				t.Fatalf("request %d: %+v, want unknown template", i, a.outs)
			}
		case i%2 == 0:
			if a.outs[0].Err != nil {
				t.Fatalf("request %d: %v", i, a.outs[0].Err)
			}
			if a.outs[0].Result.Created() {
				created++
			}
		default:
			if len(a.outs) != 2 || !a.outs[0].Result.Created() || !a.outs[1].Result.Created() {
				t.Fatalf("fan-out %d: %+v", i, a.outs)
			}
		}
	}
	if created != 1 {
		t.Fatalf("the duplicated event was created %d times, want once", created)
	}
	if got := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE event_id = 'dup'"); got != 1 {
		t.Fatalf("%d log rows for the duplicated event", got)
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	if len(sizes) >= n || total < n {
		t.Fatalf("batches %v: want fewer transactions than requests", sizes)
	}
	// Closed: new requests are refused, nothing lost.
	if _, err := b.Submit(v.ctx, []iu.EmitRequest{{TemplateKey: wfKey, Event: event("late"), Actor: "batch"}}); !errors.Is(err, iu.ErrUnavailable) {
		t.Fatalf("submit after close: %v, want ErrUnavailable", err)
	}
})

// Data that a store cannot keep (\u0000, which PostgreSQL's jsonb refuses;
// half a surrogate pair, no character at all) is refused up front on every
// store, so it fails alone: its neighbours in the batch commit, where the
// database's refusal would have failed the transaction they share.
var _ = register("BatcherRefusesUnstorableDataAlone", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)
	b := v.e.NewBatcher(iu.BatchOptions{MaxEvents: 64, MaxWait: 50 * time.Millisecond})
	bad := map[int]string{2: `{"a": "\u0000"}`, 5: `{"n": "\ud800"}`}
	units := make([][]iu.EmitRequest, 8)
	for i := range units {
		ev := event(fmt.Sprintf("nul-%d", i))
		if d, ok := bad[i]; ok {
			ev.Data = []byte(d)
		}
		units[i] = []iu.EmitRequest{{TemplateKey: wfKey, Event: ev, Actor: "nul"}}
	}
	res := b.SubmitAll(v.ctx, units)
	if err := b.Close(v.ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("request %d: %v", i, r.Err)
		}
		err := r.Outcomes[0].Err
		if _, isBad := bad[i]; isBad {
			if !errors.Is(err, iu.ErrInvalidEvent) {
				t.Fatalf("the request with %s: %+v, want ErrInvalidEvent", bad[i], r.Outcomes[0])
			}
			continue
		}
		if err != nil || !r.Outcomes[0].Result.Created() {
			t.Fatalf("neighbour %d of a refused request: %+v", i, r.Outcomes[0])
		}
	}
	want := int64(6)
	for _, table := range []string{"iu_auto_instantiate_event_log", "iu_collection_template_instance_lineage"} {
		if n := v.count("SELECT count(*) FROM " + table + " WHERE actor = 'nul'"); n != want {
			t.Fatalf("%d rows in %s, want %d", n, table, want)
		}
	}
})
