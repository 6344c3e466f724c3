package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// The batcher counts every answer it gives, once, by outcome: a new
// instance, a redelivery, a shadow template, a closed gate, and refusals
// both before the transaction (an invalid event) and inside it (an unknown
// template). The console's overview reads these counts.
var _ = register("BatcherActivityCountsEveryAnswer", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	if err := v.e.SetEmitMode(v.ctx, fileKey, iu.EmitShadow); err != nil {
		t.Fatal(err)
	}
	v.gates(true, true)
	b := v.e.NewBatcher(iu.BatchOptions{})
	defer b.Close(context.Background())
	if got := b.Activity().LastHour; got != (iu.OutcomeCounts{}) {
		t.Fatalf("a new batcher has counted %+v", got)
	}
	submit := func(reqs ...iu.EmitRequest) {
		t.Helper()
		if _, err := b.Submit(v.ctx, reqs); err != nil {
			t.Fatalf("submit: %v", err)
		}
	}
	req := func(tpl, id string) iu.EmitRequest {
		return iu.EmitRequest{TemplateKey: tpl, Event: event(id), Actor: "activity"}
	}
	submit(req(wfKey, "a-1"))                                                               // ok
	submit(req(wfKey, "a-1"))                                                               // replayed
	submit(req(wfKey, "a-2"), req(fileKey, "a-2"))                                          // ok, shadow
	submit(req("tpl:wf:nowhere/v1", "a-3"))                                                 // refused inside the transaction
	submit(iu.EmitRequest{TemplateKey: wfKey, Actor: "activity"})                           // refused before it: no event id
	res := b.SubmitAll(v.ctx, [][]iu.EmitRequest{{req(wfKey, "a-4")}, {req(wfKey, "a-1")}}) // ok, replayed
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	v.gates(false, false)
	submit(req(wfKey, "a-5")) // gated

	s := b.Activity()
	want := iu.OutcomeCounts{OK: 3, Replayed: 2, Shadow: 1, Gated: 1, Refused: 2}
	if s.LastHour != want {
		t.Errorf("last hour %+v, want %+v", s.LastHour, want)
	}
	counts, _, p99 := s.Summary(time.Minute)
	if counts != want {
		t.Errorf("last minute %+v, want %+v", counts, want)
	}
	if p99 <= 0 || p99 > time.Minute {
		t.Errorf("p99 %v: want the time the answers took", p99)
	}
})
