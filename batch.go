package iu

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of BatchOptions.
const (
	DefaultBatchEvents = 256
	DefaultBatchWait   = 2 * time.Millisecond
)

// BatchOptions bound group commit.
type BatchOptions struct {
	// MaxEvents bounds the requests of one transaction (default 256). A unit
	// larger than that (one event fanned out to many templates) still goes
	// in one transaction, alone.
	MaxEvents int
	// MaxWait bounds how long the first request of a batch waits for others
	// to join it (default 2 ms); a batch as large as the one before it does
	// not wait. When every transaction slot is busy the batch keeps filling
	// until one frees up.
	MaxWait time.Duration
	// Workers is how many transactions may be in flight at once (default 1:
	// SQLite has one writer; PostgreSQL gains from a few).
	Workers int
	// Observe, if set, is told of each transaction: how many requests it
	// held, how long it took, and its error (nil once committed).
	Observe func(events int, took time.Duration, err error)
}

// Batcher gathers concurrent emit requests into shared transactions (group
// commit): many producers pay for one commit. Each caller gets its own
// outcomes, only once the transaction that holds them has committed; a bad
// request fails alone (it is validated before the batch, and unknown
// templates and conflicts are per-request outcomes). A unit, the requests
// of one Submit call (one event fanned out to its templates), is never
// split across transactions.
type Batcher struct {
	e   *Engine
	opt BatchOptions
	in  chan *unit
	sem chan struct{}

	mu     sync.RWMutex // held for reading while sending on in; Close takes it to close in
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup

	pending atomic.Int64 // requests handed over and not yet in a transaction

	activity Activity // what the requests were answered, for the console
}

type unit struct {
	ps   []prepared // the requests that passed prepare
	outs []Outcome  // one per request of the unit; prepare's failures filled in
	idx  []int      // ps[i] answers outs[idx[i]]
	at   time.Time
	out  chan unitResult
}

// newUnit prepares reqs in the caller's goroutine, off the batch's critical
// path (hashing and canonical JSON), and fills in the answers of those that
// fail. A unit none of whose requests passed has no ps and needs no batch.
func newUnit(reqs []EmitRequest) *unit {
	u := &unit{outs: make([]Outcome, len(reqs)), at: time.Now(), out: make(chan unitResult, 1)}
	for i := range reqs {
		p, err := prepare(&reqs[i])
		if err != nil {
			u.outs[i].Err = err
			continue
		}
		u.ps = append(u.ps, p)
		u.idx = append(u.idx, i)
	}
	return u
}

type unitResult struct {
	outs []Outcome
	err  error
}

// NewBatcher starts a batcher over the engine. Close it to drain it.
func (e *Engine) NewBatcher(opt BatchOptions) *Batcher {
	if opt.MaxEvents <= 0 {
		opt.MaxEvents = DefaultBatchEvents
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = DefaultBatchWait
	}
	if opt.Workers <= 0 {
		opt.Workers = 1
	}
	b := &Batcher{
		e:    e,
		opt:  opt,
		in:   make(chan *unit, 4*opt.MaxEvents),
		sem:  make(chan struct{}, opt.Workers),
		done: make(chan struct{}),
	}
	go b.loop()
	return b
}

// Options returns the batcher's bounds, defaults filled in.
func (b *Batcher) Options() BatchOptions { return b.opt }

// Pending returns how many requests wait for a transaction: handed to the
// batcher and not yet in one (a queue that keeps growing is a store that
// does not keep up).
func (b *Batcher) Pending() int { return int(b.pending.Load()) }

// Activity returns what the batcher answered over the last hour, by
// outcome, with latencies from Submit to answer.
func (b *Batcher) Activity() ActivitySnapshot { return b.activity.Snapshot(time.Now()) }

// send hands u to the loop, counting it as pending first so that the count
// never goes below zero.
func (b *Batcher) send(ctx context.Context, u *unit) error {
	b.pending.Add(int64(len(u.ps)))
	select {
	case b.in <- u:
		return nil
	case <-ctx.Done():
		b.pending.Add(-int64(len(u.ps)))
		return ctx.Err()
	}
}

// Submit applies reqs in one transaction shared with other callers' and
// returns their outcomes in order. The error is for the transaction as a
// whole (the store failed, or the batcher is closed: ErrUnavailable), and
// then nothing of reqs was written. If ctx ends first Submit returns its
// error, but requests already handed over may still commit.
func (b *Batcher) Submit(ctx context.Context, reqs []EmitRequest) ([]Outcome, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	u := newUnit(reqs)
	if len(u.ps) == 0 {
		b.activity.recordUnits(time.Now(), []*unit{u}, nil)
		return u.outs, nil
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, errClosed()
	}
	err := b.send(ctx, u)
	b.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-u.out:
		return r.outs, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// UnitResult answers one unit of SubmitAll.
type UnitResult struct {
	Outcomes []Outcome
	Err      error
}

// SubmitAll submits several units at once (the events of one request, each
// with its fan-out) and waits for all of them. Units may land in different
// transactions; each unit lands in one. Nil units are skipped and answered
// with nothing.
func (b *Batcher) SubmitAll(ctx context.Context, units [][]EmitRequest) []UnitResult {
	out := make([]UnitResult, len(units))
	pending := make([]*unit, len(units))
	b.mu.RLock()
	for i, reqs := range units {
		if len(reqs) == 0 {
			continue
		}
		if b.closed {
			out[i].Err = errClosed()
			continue
		}
		u := newUnit(reqs)
		if len(u.ps) == 0 {
			b.activity.recordUnits(time.Now(), []*unit{u}, nil)
			out[i].Outcomes = u.outs
			continue
		}
		if err := b.send(ctx, u); err != nil {
			out[i].Err = err
			continue
		}
		pending[i] = u
	}
	b.mu.RUnlock()
	for i, u := range pending {
		if u == nil {
			continue
		}
		select {
		case r := <-u.out:
			out[i] = UnitResult{Outcomes: r.outs, Err: r.err}
		case <-ctx.Done():
			out[i].Err = ctx.Err()
		}
	}
	return out
}

func errClosed() error {
	return Errorf(ErrShuttingDown, "the server is shutting down and takes no more events: send them again to another server or later")
}

// Close stops taking requests, commits those already taken and waits for
// them, or for ctx to end. Safe to call twice.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop gathers units into batches: a batch is sealed when it holds
// MaxEvents requests, or when a transaction slot is free and the batch is
// ready: its first unit has waited MaxWait, or it already holds as many
// requests as the batch sent before it. Under a steady load the batches
// then go as soon as they are as large as the load makes them, instead of
// every batch waiting out MaxWait; a load that falls off shrinks them, one
// MaxWait at a time.
func (b *Batcher) loop() {
	defer close(b.done)
	var carry *unit
	open := true
	last := 0 // requests in the batch sent last
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for open || carry != nil {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-b.in; !ok {
				break
			}
		}
		batch := []*unit{first}
		n := len(first.ps)
		timer.Reset(time.Until(first.at.Add(b.opt.MaxWait)))
		var slot chan struct{} // nil (disabled) until the batch is ready
		if n >= last {
			slot = b.sem
		}
		dispatched := false
		// add takes u into the batch, or carries it to the next one when
		// it would not fit; it reports whether the batch is full.
		add := func(u *unit) bool {
			if n+len(u.ps) > b.opt.MaxEvents {
				carry = u
				return true
			}
			batch = append(batch, u)
			n += len(u.ps)
			if n >= last {
				slot = b.sem
			}
			return n >= b.opt.MaxEvents
		}
	gather:
		for n < b.opt.MaxEvents && open {
			select {
			case u, ok := <-b.in:
				if !ok {
					open = false
					break gather
				}
				if add(u) {
					break gather
				}
			case <-timer.C:
				slot = b.sem
			case slot <- struct{}{}:
				dispatched = true
				// Take what is already queued: the slot was won against
				// receiving it, by chance.
			drain:
				for n < b.opt.MaxEvents && carry == nil {
					select {
					case u, ok := <-b.in:
						if !ok {
							open = false
							break drain
						}
						add(u)
					default:
						break drain
					}
				}
				break gather
			}
		}
		timer.Stop()
		last = n
		if !dispatched {
			b.sem <- struct{}{}
		}
		b.pending.Add(-int64(n))
		b.wg.Add(1)
		go b.run(batch, n)
	}
	b.wg.Wait()
}

// run applies one batch and answers its units.
func (b *Batcher) run(batch []*unit, n int) {
	defer b.wg.Done()
	defer func() { <-b.sem }()
	b.apply(batch, n)
}

// apply runs batch in one transaction. If the database refuses the
// transaction as a whole for a bad input that the engine could not foresee
// (an error of code invalid, such as PostgreSQL refusing \u0000 in event
// data), the batch is split in halves and each is tried on its own, so that
// the request at fault fails alone. Other failures (the store unavailable,
// or broken) answer every request of the batch with the error: splitting
// would only multiply the load on a store in trouble.
func (b *Batcher) apply(batch []*unit, n int) {
	ps := make([]prepared, 0, n)
	for _, u := range batch {
		ps = append(ps, u.ps...)
	}
	// The transaction belongs to no one caller: a caller that goes away
	// must not roll back its neighbours.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	start := time.Now()
	outs, err := b.e.emitPrepared(ctx, ps)
	cancel()
	if b.opt.Observe != nil {
		b.opt.Observe(len(ps), time.Since(start), err)
	}
	if err != nil && len(batch) > 1 && ErrorCode(err) == CodeInvalid {
		half := len(batch) / 2
		b.apply(batch[:half], count(batch[:half]))
		b.apply(batch[half:], count(batch[half:]))
		return
	}
	if err == nil {
		off := 0
		for _, u := range batch {
			for i, k := range u.idx {
				u.outs[k] = outs[off+i]
			}
			off += len(u.ps)
		}
	}
	// Counted before anyone is answered, so that a caller who reads the
	// activity after its answer finds itself in it.
	b.activity.recordUnits(time.Now(), batch, err)
	for _, u := range batch {
		if err != nil {
			u.out <- unitResult{err: err}
			continue
		}
		u.out <- unitResult{outs: u.outs}
	}
}

func count(batch []*unit) int {
	n := 0
	for _, u := range batch {
		n += len(u.ps)
	}
	return n
}
