package console

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/iu-engine/iu"
)

// The per-template summary (view iu_auto_instantiate_template_summary)
// counts every auto instance, and those of the last hour, on each read: at
// a million instances that is an index scan of two million entries, 0.2 s
// on SQLite and more on PostgreSQL. The overview refreshes itself every
// few seconds in every open browser, and the template pages show the same
// counts; they must not each pay for it. So the console keeps the last
// summary it read for a few seconds and answers from it; when it is older,
// it answers from it once more while one background read refreshes it.
// With no summary at all (the first visit, or after a quiet minute) the
// overview waits a moment for the read and, if it is not done, answers
// without the counts, which its next refresh brings. A change made here (a
// rollback, an emit mode) forgets the summary, so that its effect shows at
// once.

// maxStale bounds how old a summary may be answered while a refresh runs:
// past it a page waits for a fresh read instead.
const maxStale = time.Minute

// errCounting says that the summary is being read and was not ready in the
// time a page was willing to wait.
var errCounting = errors.New("the instances are being counted")

type summaryCache struct {
	ttl      time.Duration
	mu       sync.Mutex
	stats    []iu.TemplateStat
	at       time.Time     // when stats were read
	err      error         // of the last read, when it failed
	inflight chan struct{} // closed when the running read ends; nil when none runs
	gen      uint64        // bumped by forget: a read started before is not kept
}

// start begins a read unless one runs, and returns the channel closed when
// it ends. sc.mu is held.
func (sc *summaryCache) start(bg context.Context, e *iu.Engine, now time.Time) chan struct{} {
	if sc.inflight != nil {
		return sc.inflight
	}
	done := make(chan struct{})
	sc.inflight = done
	gen := sc.gen
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(bg, maxStale)
		stats, err := e.Stats(ctx)
		cancel()
		sc.mu.Lock()
		defer sc.mu.Unlock()
		sc.inflight, sc.err = nil, err
		if err == nil && gen == sc.gen && !now.Before(sc.at) {
			sc.stats, sc.at = stats, now
		}
	}()
	return done
}

// get returns the summary and when it was read. A fresh enough one is
// answered at once; otherwise get waits for a read, at most wait (0: as
// long as it takes), and then answers errCounting.
func (sc *summaryCache) get(ctx, bg context.Context, e *iu.Engine, now time.Time, wait time.Duration) ([]iu.TemplateStat, time.Time, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		sc.mu.Lock()
		age := now.Sub(sc.at)
		if sc.stats != nil && age >= 0 && age < maxStale {
			stats, at := sc.stats, sc.at
			if age >= sc.ttl {
				sc.start(bg, e, now)
			}
			sc.mu.Unlock()
			return stats, at, nil
		}
		done := sc.start(bg, e, now)
		sc.mu.Unlock()
		select {
		case <-done:
		case <-timeout:
			return nil, time.Time{}, errCounting
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
		sc.mu.Lock()
		err := sc.err
		sc.mu.Unlock()
		if err != nil {
			return nil, time.Time{}, err
		}
		// Done: the loop answers it, or reads again if it was forgotten
		// meanwhile.
	}
}

// forget drops the summary: the next page reads it afresh.
func (sc *summaryCache) forget() {
	sc.mu.Lock()
	sc.stats, sc.at = nil, time.Time{}
	sc.gen++
	sc.mu.Unlock()
}

// stats returns the per-template summary, at most a few seconds old, and
// when it was read, waiting for a read at most wait (0: as long as it
// takes).
func (c *Console) stats(ctx context.Context, wait time.Duration) ([]iu.TemplateStat, time.Time, error) {
	return c.summary.get(ctx, c.jobs.ctx, c.e, c.opt.Now(), wait)
}
