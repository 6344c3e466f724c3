package iu

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// DefaultSource is the event source used when a caller gives none (the
// command line and bulk plans).
const DefaultSource = "iu:cli"

// Engine applies iu's rules over a Store. It is safe for concurrent use and
// holds no state of its own besides configuration: several engines (or
// processes) may share one store.
type Engine struct {
	store        Store
	now          func() time.Time
	maxRetries   int
	chunk        int
	migrateBatch int
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock sets the clock stamped on every row (UTC, millisecond precision).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithMaxRetries bounds how often a transaction that failed transiently is
// run again before the failure is returned.
func WithMaxRetries(n int) Option { return func(e *Engine) { e.maxRetries = n } }

// WithBulkChunk sets how many events a bulk run hands the store at once.
func WithBulkChunk(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.chunk = n
		}
	}
}

// WithMigrateBatch sets how many instances one transaction of a migration
// moves.
func WithMigrateBatch(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.migrateBatch = n
		}
	}
}

// NewEngine returns an engine over store.
func NewEngine(store Store, opts ...Option) *Engine {
	e := &Engine{store: store, now: time.Now, maxRetries: 8, chunk: 512, migrateBatch: DefaultMigrateBatch}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Store returns the engine's store.
func (e *Engine) Store() Store { return e.store }

func (e *Engine) clock() time.Time { return e.now().UTC().Truncate(time.Millisecond) }

// update runs fn in a write transaction, again from the start when the store
// reports a transient failure, with bounded, jittered exponential backoff.
// fn must be safe to run more than once.
func (e *Engine) update(ctx context.Context, fn func(Tx) error) error {
	backoff := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := e.store.Update(ctx, fn)
		if err == nil || !errors.Is(err, ErrRetryable) {
			return err
		}
		if attempt >= e.maxRetries {
			return Errorf(ErrUnavailable, "gave up after %d attempts: %v", attempt+1, err)
		}
		sleep := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
