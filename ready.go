package iu

// What a load balancer and an operator ask of a running iu: is the store there, and is its schema the one this build knows.

import (
	"context"
)

// SchemaVersion returns the version the store's schema is at.
func (e *Engine) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := e.store.View(ctx, func(tx Tx) (err error) {
		v, _, err = tx.SchemaVersion(ctx)
		return err
	})
	return v, err
}

// Ready reports whether the store answers and its schema is the one this
// build knows: what a load balancer's readiness probe asks.
func (e *Engine) Ready(ctx context.Context) error {
	return e.store.View(ctx, func(tx Tx) error {
		cur, known, err := tx.SchemaVersion(ctx)
		if err != nil {
			return err
		}
		switch {
		case cur > known:
			return Errorf(ErrSchemaTooNew, "the store's schema is at version %d, newer than this iu knows (%d): upgrade iu", cur, known)
		case cur < known:
			return Errorf(ErrUnavailable, "the store's schema is at version %d, this iu needs %d: restart iu to migrate it", cur, known)
		}
		return nil
	})
}
