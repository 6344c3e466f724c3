package iu

import "context"

// GetInstance returns one instance with its lineage, or ErrNotFound.
func (e *Engine) GetInstance(ctx context.Context, key string) (*Instance, error) {
	var rec *Instance
	err := e.store.View(ctx, func(tx Tx) (err error) {
		rec, err = tx.GetInstance(ctx, key)
		return err
	})
	return rec, err
}
