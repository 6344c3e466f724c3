package console

import (
	"context"
	"sync"
	"time"

	"github.com/iu-engine/iu"
)

// The per-template summary (view iu_auto_instantiate_template_summary)
// counts every auto instance, and those of the last hour, on each read: at
// a million instances that is an index scan of two million entries, over
// 100 ms on SQLite. The overview refreshes itself every few seconds in
// every open browser, and the template pages show the same counts; they
// must not each pay for it. So the console keeps the last summary it read
// for a few seconds and answers from it, and when it is older, answers from
// it once more while one background read refreshes it. A change made here
// (a rollback, an emit mode) forgets it, so that its effect shows at once.

// maxStale bounds how old a summary may be answered while a refresh runs:
// past it (a store so slow that refreshes fall behind) a page waits for a
// fresh read instead.
const maxStale = time.Minute

type summaryCache struct {
	ttl        time.Duration
	mu         sync.Mutex
	stats      []iu.TemplateStat
	at         time.Time // when stats were read
	refreshing bool
	gen        uint64 // bumped by forget: a read started before is not kept
}

// get returns the summary and when it was read.
func (sc *summaryCache) get(ctx context.Context, bg context.Context, e *iu.Engine, now time.Time) ([]iu.TemplateStat, time.Time, error) {
	sc.mu.Lock()
	age := now.Sub(sc.at)
	if sc.stats != nil && age >= 0 && age < maxStale {
		stats, at := sc.stats, sc.at
		if age >= sc.ttl && !sc.refreshing {
			sc.refreshing = true
			go sc.refresh(bg, e, sc.gen)
		}
		sc.mu.Unlock()
		return stats, at, nil
	}
	gen := sc.gen
	sc.mu.Unlock()
	stats, err := e.Stats(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	sc.keep(stats, now, gen)
	return stats, now, nil
}

func (sc *summaryCache) refresh(ctx context.Context, e *iu.Engine, gen uint64) {
	ctx, cancel := context.WithTimeout(ctx, maxStale)
	defer cancel()
	start := time.Now()
	stats, err := e.Stats(ctx)
	sc.mu.Lock()
	sc.refreshing = false
	sc.mu.Unlock()
	if err == nil {
		sc.keep(stats, start, gen)
	}
}

// keep stores stats read at at, unless the cache was forgotten since the
// read began or holds a newer read.
func (sc *summaryCache) keep(stats []iu.TemplateStat, at time.Time, gen uint64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if gen == sc.gen && !at.Before(sc.at) {
		sc.stats, sc.at = stats, at
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
// when it was read.
func (c *Console) stats(ctx context.Context) ([]iu.TemplateStat, time.Time, error) {
	return c.summary.get(ctx, c.jobs.ctx, c.e, c.opt.Now())
}
