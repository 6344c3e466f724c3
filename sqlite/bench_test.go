package sqlite_test

import (
	"context"
	"flag"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
)

var bulkEvents = flag.Int("bulk.events", 20000, "events per bulk run in BenchmarkBulk")

// benchEngine returns an engine over a new store with the example
// templates published and both gates on.
func benchEngine(b *testing.B) *iu.Engine {
	e, _ := readyEngine(b, filepath.Join(b.TempDir(), "bench.db"))
	return e
}

// readyEngine opens the store at path and returns an engine over it, with
// the example templates published (and returned) and both gates on.
func readyEngine(t testing.TB, path string) (*iu.Engine, []*iu.Template) {
	t.Helper()
	e := iu.NewEngine(open(t, path))
	tps, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.PublishTemplates(ctx, tps, "bench"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "bench"); err != nil {
		t.Fatal(err)
	}
	return e, tps
}

// benchEvents streams n events over the two 8-piece templates, two thirds
// onboarding and one third status reports, as the seed's anchor does.
func benchEvents(run string, n int) iter.Seq2[iu.BulkEvent, error] {
	return func(yield func(iu.BulkEvent, error) bool) {
		for i := 0; i < n; i++ {
			tpl := "tpl:wf:onboarding/v2"
			if i%3 == 0 {
				tpl = "tpl:file:status-report/v2"
			}
			ev := iu.Event{ID: fmt.Sprintf("bulk-%s-%d", run, i), Source: "bench", Type: "bulk.scaleout", Subject: "Person",
				Data: []byte(`{"manager":"M","team":"T","start_date":"2025-01-01"}`)}
			if !yield(iu.BulkEvent{Template: tpl, Event: ev, Where: "bench"}, nil) {
				return
			}
		}
	}
}

// BenchmarkBulk measures a streamed bulk of -bulk.events events in one
// transaction, through commit (the post-commit verify is included, as a
// user of iu bulk waits for it too). Target: 100,000 events at >= 20,000/s:
//
//	go test ./sqlite -run '^$' -bench Bulk -benchtime 1x -bulk.events 100000
func BenchmarkBulk(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var inTx time.Duration
	for i := 0; i < b.N; i++ {
		rep, err := e.Bulk(ctx, &iu.BulkPlan{Actor: fmt.Sprintf("bench-%d", i)}, benchEvents(fmt.Sprint(i), *bulkEvents), nil)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Counts.OK != int64(*bulkEvents) || rep.Digest.Matches != int64(*bulkEvents) {
			b.Fatalf("report %+v", rep)
		}
		inTx += rep.Committing
	}
	b.ReportMetric(float64(b.N**bulkEvents)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N**bulkEvents)/inTx.Seconds(), "tx-events/s")
}

// BenchmarkEmit measures single events, each its own transaction (fsync
// per commit: synchronous=FULL).
func BenchmarkEmit(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: "tpl:wf:onboarding/v2", Actor: "bench",
			Event: iu.Event{ID: fmt.Sprint("emit-", i), Source: "bench", Type: "bench"}})
		if err != nil || !r.Created() {
			b.Fatalf("%+v %v", r, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEmitBatch measures group commit as iu serve does it: each op is
// one transaction of 32 requests, about 10% of them redeliveries of events
// already committed.
func BenchmarkEmitBatch(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	const size = 32
	reqs := make([]iu.EmitRequest, size)
	var dup [size]bool
	next := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range reqs {
			id := next
			if dup[j] = j%10 == 9 && next > size; dup[j] {
				id = (next * 7919) % (next - size) // an earlier, committed event
			} else {
				next++
			}
			reqs[j] = iu.EmitRequest{TemplateKey: "tpl:wf:onboarding/v2", Actor: "bench",
				Event: iu.Event{ID: fmt.Sprint("batch-", id), Source: "bench", Type: "bench"}}
		}
		outs, err := e.EmitBatch(ctx, reqs)
		if err != nil {
			b.Fatal(err)
		}
		for j, o := range outs {
			if o.Err != nil || o.Result.Status != iu.StatusOK || o.Result.Replayed != dup[j] {
				b.Fatalf("request %d of batch %d: %+v %v", j, i, o.Result, o.Err)
			}
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
}

var migrateInstances = flag.Int("migrate.instances", 20000, "instances BenchmarkMigrate moves")

// BenchmarkMigrate measures iu migrate --apply of -migrate.instances
// instances of tpl:wf:onboarding/v2 to v3 (one step added), made by one
// bulk run before the timer starts; each op moves them all, in the
// engine's batches, one way then back. Target: >= 20,000 instances/s:
//
//	go test ./sqlite -run '^$' -bench Migrate -benchtime 2x -migrate.instances 100000
func BenchmarkMigrate(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	v3 := publishV3(b, e)
	events := func(yield func(iu.BulkEvent, error) bool) {
		for ev, err := range benchEvents("migrate", *migrateInstances) {
			ev.Template = "tpl:wf:onboarding/v2"
			if !yield(ev, err) {
				return
			}
		}
	}
	if _, err := e.Bulk(ctx, &iu.BulkPlan{Actor: "bench"}, events, nil); err != nil {
		b.Fatal(err)
	}
	versions := [2]string{"tpl:wf:onboarding/v2", v3.Key}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := e.Migrate(iu.NewContextWithPrincipal(ctx, "bench"), iu.MigrateRequest{From: versions[i%2], To: versions[(i+1)%2], Apply: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Moved != int64(*migrateInstances) {
			b.Fatalf("moved %d of %d", rep.Moved, *migrateInstances)
		}
	}
	b.ReportMetric(float64(b.N**migrateInstances)/b.Elapsed().Seconds(), "instances/s")
}

// publishV3 publishes onboarding v3 (examples/lifecycle: v2 with a step
// added) and returns it.
func publishV3(t testing.TB, e *iu.Engine) *iu.Template {
	t.Helper()
	data, err := os.ReadFile("../examples/lifecycle/onboarding-v3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v3, err := iu.ParseTemplateFile("onboarding-v3.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PublishTemplates(context.Background(), []*iu.Template{v3}, "tester"); err != nil {
		t.Fatal(err)
	}
	return v3
}
