package postgres_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/postgres"
)

// The benchmarks run against IU_TEST_POSTGRES, each in a fresh schema, over
// the seed's two 8-piece templates (examples/templates). They report
// events/s; bench/pg-vs-seed.sh sets them beside the seed design's figures.

// benchStore opens a fresh store with the example templates published and
// both gates on.
func benchStore(b testing.TB, opt postgres.Options) (*postgres.Store, *iu.Engine, []string) {
	b.Helper()
	return readyStore(b, freshSchema(b), opt)
}

// readyStore opens the store at dsn and returns it with an engine over it,
// the example templates published (their keys returned) and both gates on.
func readyStore(t testing.TB, dsn string, opt postgres.Options) (*postgres.Store, *iu.Engine, []string) {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := iu.NewEngine(s)
	tps, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tp := range tps {
		keys = append(keys, tp.Key)
	}
	ctx := context.Background()
	if _, err := e.PublishTemplates(ctx, tps, "bench"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "bench"); err != nil {
		t.Fatal(err)
	}
	return s, e, keys
}

// benchEvents streams n events, one template in three the second one, as
// the seed's bulk_n.sql does.
func benchEvents(n int, run string, keys []string) iter.Seq2[iu.BulkEvent, error] {
	return func(yield func(iu.BulkEvent, error) bool) {
		for i := 1; i <= n; i++ {
			tpl := keys[0]
			if i%3 == 0 {
				tpl = keys[1]
			}
			be := iu.BulkEvent{Template: tpl, Where: "bench", Event: iu.Event{
				ID: "bulk-" + run + "-" + strconv.Itoa(i), Source: iu.DefaultSource, Type: "bulk.scaleout"}}
			if !yield(be, nil) {
				return
			}
		}
	}
}

// benchN is the events per bulk operation: 30,000 as the seed comparison,
// or IU_BENCH_EVENTS.
func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("IU_BENCH_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 30000
}

// BenchmarkBulk runs Engine.Bulk of 30,000 events in one transaction per
// operation and reports two rates: events/s for the whole run (the report's
// reads, the transaction, the fresh-connection read-back and verify), as
// `iu bulk` does after parsing its plan, and tx-events/s for the
// transaction alone, which is what the seed's bulk_n.sql times.
func BenchmarkBulk(b *testing.B) {
	s, _, keys := benchStore(b, postgres.Options{})
	e := iu.NewEngine(s)
	n := benchN()
	ctx := context.Background()
	run := 0
	start := time.Now()
	var inTx time.Duration
	for b.Loop() {
		run++
		// A new actor per operation: the report's verify covers one run.
		plan := &iu.BulkPlan{Actor: fmt.Sprintf("bench-bulk-%d", run), InstancePrefix: fmt.Sprintf("bench-%d", run),
			Gates: iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}}
		rep, err := e.Bulk(ctx, plan, benchEvents(n, strconv.Itoa(run), keys), nil)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Counts.OK != int64(n) {
			b.Fatalf("bulk: %+v", rep.Counts)
		}
		inTx += rep.Committing
	}
	b.ReportMetric(float64(run*n)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(run*n)/inTx.Seconds(), "tx-events/s")
}

// BenchmarkConcurrentEmit has 16 goroutines emit one event each per
// transaction through Engine.Emit.
func BenchmarkConcurrentEmit(b *testing.B) {
	const workers = 16
	var opt postgres.Options
	if v, err := strconv.Atoi(os.Getenv("IU_BENCH_CONNS")); err == nil {
		opt.MaxConns = int32(v)
	}
	_, e, keys := benchStore(b, opt)
	ctx := context.Background()
	var next atomic.Int64
	start := time.Now()
	for b.Loop() {
		// One operation is 16 × 64 events, so that each b.N step keeps all
		// workers busy and b.Loop's own overhead stays out of the figure.
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 64 {
					i := next.Add(1)
					_, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: keys[int(i)%2], Actor: "bench-emit",
						Event: iu.Event{ID: fmt.Sprintf("emit-%d-%d", w, i), Source: "bench", Type: "bench.event"}})
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(next.Load())/time.Since(start).Seconds(), "events/s")
}
