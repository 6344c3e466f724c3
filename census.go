package iu

import "context"

// Actors returns up to limit actors that have auto instances, in byte
// order, those after after: the console's rollback page suggests them.
func (e *Engine) Actors(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []string
	err := e.store.View(ctx, func(tx Tx) (err error) {
		out, err = tx.ListActors(ctx, after, limit)
		return err
	})
	return out, err
}
