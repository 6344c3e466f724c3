package sqlite_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/iu-engine/iu"
)

// BenchmarkEmitBatcher measures single events submitted concurrently through
// a Batcher, as iu serve's intakes do: 64 producers per core, group commit
// with the server's defaults. It is the path the console's activity ring is
// fed from, so a change there shows here.
func BenchmarkEmitBatcher(b *testing.B) {
	e := benchEngine(b)
	bt := e.NewBatcher(iu.BatchOptions{})
	defer bt.Close(context.Background())
	var next atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := next.Add(1)
			outs, err := bt.Submit(ctx, []iu.EmitRequest{{TemplateKey: "tpl:wf:onboarding/v2", Actor: "bench",
				Event: iu.Event{ID: fmt.Sprint("batcher-", id), Source: "bench", Type: "bench"}}})
			if err != nil || outs[0].Err != nil || !outs[0].Result.Created() {
				b.Errorf("event %d: %+v %v", id, outs, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
