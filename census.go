package iu

import "context"

// Census is a Tx that can say who has instances and how many there are,
// cheaply at a million instances. The console's rollback page suggests
// actors from it, and its verify page shows progress against the count.
// Both stores implement it; a Tx that does not makes Actors answer
// nothing and progress have no total.
type Census interface {
	// ListActors returns the actors that have auto instances (what a
	// rollback removes), in byte order, those after after ("" from the
	// first), at most limit.
	ListActors(ctx context.Context, after string, limit int) ([]string, error)
	// CountInstances counts instance collections, those of actor when it
	// is not empty: what Verify checks.
	CountInstances(ctx context.Context, actor string) (int64, error)
}

// Actors returns up to limit actors that have auto instances, in byte
// order, those after after.
func (e *Engine) Actors(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []string
	err := e.store.View(ctx, func(tx Tx) (err error) {
		if c, ok := tx.(Census); ok {
			out, err = c.ListActors(ctx, after, limit)
		}
		return err
	})
	return out, err
}
