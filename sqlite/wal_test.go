package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/sqlite"
)

// Under a steady stream of commits, as iu serve's group commit makes, the
// WAL must be restarted from its beginning now and then rather than grow
// without end: a PASSIVE checkpoint alone never catches up with a writer
// that never pauses, and the WAL once grew by 100 MB a second.
func TestWALStaysBoundedUnderSteadyCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("commits 12,000 events")
	}
	// 16 MiB instead of 128, so that a few thousand events show it.
	t.Cleanup(sqlite.SetWALRestartFrames(2048)) // after the store closes
	path := filepath.Join(t.TempDir(), "iu.db")
	e, tps := readyEngine(t, path)
	ctx := context.Background()
	const events, perCommit = 12000, 64
	var largest int64
	start := time.Now()
	for n := 0; n < events; n += perCommit {
		reqs := make([]iu.EmitRequest, perCommit)
		for i := range reqs {
			reqs[i] = iu.EmitRequest{TemplateKey: tps[i%2].Key, Actor: "tester",
				Event: iu.Event{ID: fmt.Sprint("wal-", n+i), Source: "test", Type: "t"}}
		}
		outs, err := e.EmitBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		if !outs[0].Result.Created() {
			t.Fatalf("%+v %v", outs[0].Result, outs[0].Err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			largest = max(largest, fi.Size())
		}
	}
	// Each event writes a few pages to the WAL (its log, collection and
	// lineage rows, and a page of each of two hash-keyed indexes): far over
	// 200 MB for all of them when nothing restarts it.
	const bound = 96 << 20
	t.Logf("%d events in %v; the WAL reached %d MiB", events, time.Since(start).Round(time.Millisecond), largest>>20)
	if largest == 0 {
		t.Fatalf("never saw the WAL file %s-wal: the test did not watch it", path)
	}
	if largest > bound {
		t.Errorf("the WAL grew to %d MiB over %d commits, more than %d MiB: it is not being restarted", largest>>20, events/perCommit, bound>>20)
	}
}
