package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// Group commit does not make a steady load wait out MaxWait: with a wait of
// a minute, one caller after another still gets its answer at once (each
// batch is as large as the one before it), and requests that queue while
// the transaction slot is busy all go in the next transaction.
var _ = register("GroupCommitSendsReadyBatchesWithoutWaiting", func(t *testing.T, h Harness) {
	v := newEnv(t, h)
	v.seedTemplates()
	v.gates(true, true)

	var mu sync.Mutex
	var sizes []int
	hold := make(chan struct{}) // closed to let the held transaction answer
	held := make(chan struct{}) // closed once one transaction is being held
	holdNext := false
	b := v.e.NewBatcher(iu.BatchOptions{MaxWait: time.Minute, Workers: 1, Observe: func(n int, _ time.Duration, err error) {
		if err != nil {
			t.Errorf("batch of %d: %v", n, err)
		}
		mu.Lock()
		sizes = append(sizes, n)
		wait := holdNext
		holdNext = false
		mu.Unlock()
		if wait { // keeps the only transaction slot busy
			close(held)
			<-hold
		}
	}})
	defer b.Close(context.Background())

	submit := func(id string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(v.ctx, 20*time.Second) // well under MaxWait
		defer cancel()
		outs, err := b.Submit(ctx, []iu.EmitRequest{{TemplateKey: wfKey, Event: event(id), Actor: "batcher"}})
		if err != nil {
			t.Errorf("submit %s: %v", id, err)
			return
		}
		if outs[0].Err != nil || outs[0].Result.Status != iu.StatusOK {
			t.Errorf("submit %s: %+v", id, outs[0])
		}
	}
	for i := range 3 {
		submit(fmt.Sprintf("one-by-one-%d", i))
	}
	mu.Lock()
	if fmt.Sprint(sizes) != "[1 1 1]" {
		t.Fatalf("one caller after another: transactions of %v requests, want [1 1 1]", sizes)
	}
	holdNext = true
	mu.Unlock()

	// One request takes the slot and is held there; ten more queue behind it.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); submit("held") }()
	<-held
	const queued = 10
	for i := range queued {
		wg.Add(1)
		go func() { defer wg.Done(); submit(fmt.Sprintf("queued-%d", i)) }()
	}
	for b.Pending() < queued {
		select {
		case <-v.ctx.Done():
			t.Fatalf("%d requests pending, want %d", b.Pending(), queued)
		case <-time.After(time.Millisecond):
		}
	}
	close(hold)
	wg.Wait()
	if t.Failed() {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	after := sizes[3:]
	total := 0
	for _, n := range after {
		total += n
	}
	if total != 1+queued || after[0] != 1 || len(after) != 2 || after[1] != queued {
		t.Fatalf("ten requests queued behind a busy slot went in transactions of %v requests (after the held one), want them together", after[1:])
	}
	if n := b.Pending(); n != 0 {
		t.Errorf("%d requests pending once every one is answered", n)
	}
	if got := v.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); got != 3+1+queued {
		t.Fatalf("%d log rows, want %d", got, 3+1+queued)
	}
})
