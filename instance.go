package iu

import (
	"context"
	"errors"
)

// GetInstance returns one instance with its lineage, or ErrNotFound.
func (e *Engine) GetInstance(ctx context.Context, key string) (*Instance, error) {
	var rec *Instance
	err := e.store.View(ctx, func(tx Tx) (err error) {
		rec, err = getInstance(ctx, tx, key)
		return err
	})
	return rec, err
}

// getInstance reads an instance, saying which one there is none of.
func getInstance(ctx context.Context, tx Tx, key string) (*Instance, error) {
	rec, err := tx.GetInstance(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(ErrNotFound, "no instance %q (iu instances lists them)", key)
	}
	return rec, err
}

// getTemplate reads a template, saying which one is not published.
func getTemplate(ctx context.Context, tx Tx, key string) (*Template, error) {
	t, err := tx.GetTemplate(ctx, key)
	if errors.Is(err, ErrUnknownTemplate) {
		return nil, unknownTemplate(key)
	}
	return t, err
}

// checkStoredDigest refuses to make or move instances from a template whose
// stored digest could not be read (StoredDigest read it as zero): copied
// into instances, it would spread the damage that verify reports.
func checkStoredDigest(t *Template) error {
	if t.Digest.IsZero() {
		return Errorf(ErrInvalidTemplate, "template %s: its stored digest is not a digest (was the store changed outside iu?): nothing is made from it; iu verify tells what else is damaged", t.Key)
	}
	return nil
}

func unknownTemplate(key string) error {
	return Errorf(ErrUnknownTemplate, "unknown template %q: publish it first (iu template publish FILE)", key)
}
