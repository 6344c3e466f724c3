package iu

import (
	"context"
	"errors"
	"fmt"
)

// PublishTemplates publishes templates in one transaction: all or none.
// Publishing identical content again is a no-op (Created false); the same key
// with other content is ErrTemplateExists.
func (e *Engine) PublishTemplates(ctx context.Context, templates []*Template, actor string) ([]PublishResult, error) {
	w, err := claim(ctx, actor)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]*Template)
	for _, t := range templates {
		if t.Digest != GraphDigest(t.Slots) {
			return nil, Errorf(ErrInvalidTemplate, "template %s: digest does not match its graph", t.Key)
		}
		for _, s := range t.Slots {
			if _, ok := t.Pieces[s.Piece]; !ok {
				return nil, Errorf(ErrInvalidTemplate, "template %s: slot %q: piece %s has no content", t.Key, s.ID, s.Piece)
			}
		}
		if o, dup := seen[t.Key]; dup && !o.SameContent(t) {
			return nil, Errorf(ErrTemplateExists, "template %s is given twice with different content", t.Key)
		}
		seen[t.Key] = t
	}
	var results []PublishResult
	err = e.update(ctx, func(tx Tx) error {
		results = results[:0]
		at := e.clock()
		for _, t := range templates {
			r := PublishResult{Key: t.Key, Digest: t.Digest, Pieces: len(t.Slots)}
			stored, err := tx.GetTemplate(ctx, t.Key)
			switch {
			case err == nil:
				if !stored.SameContent(t) {
					next := t.Key
					if k, err := ParseTemplateKey(t.Key); err == nil {
						k.Version++
						next = k.String()
					}
					what := fmt.Sprintf("other content (stored %s, given %s)", stored.Digest, t.Digest)
					switch {
					case stored.Digest == t.Digest && stored.Title != t.Title:
						what = fmt.Sprintf("another title (stored %q, given %q)", stored.Title, t.Title)
					case stored.Digest == t.Digest:
						what = "its pieces in another order"
					}
					return Errorf(ErrTemplateExists,
						"template %s is already published with %s; templates are immutable: publish the change as a new version, e.g. %s",
						t.Key, what, next)
				}
			case errors.Is(err, ErrUnknownTemplate):
				c := *t
				c.Actor, c.CreatedAt = w.By, TimeOf(at)
				if c.EmitMode == "" {
					c.EmitMode = EmitLive
				}
				if err := tx.InsertTemplate(ctx, &c); err != nil {
					return err
				}
				if err := e.audit(ctx, tx, w, AuditPublish, t.Key, "%s, %d pieces, emit mode %s", t.Digest, len(t.Slots), c.EmitMode); err != nil {
					return err
				}
				r.Created = true
			default:
				return err
			}
			results = append(results, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// GetTemplate returns a template with its piece bodies.
func (e *Engine) GetTemplate(ctx context.Context, key string) (*Template, error) {
	var t *Template
	err := e.store.View(ctx, func(tx Tx) error {
		var err error
		if t, err = getTemplate(ctx, tx, key); err != nil {
			return err
		}
		ids := make([]Digest, len(t.Slots))
		for i, s := range t.Slots {
			ids[i] = s.Piece
		}
		t.Pieces, err = tx.GetPieces(ctx, ids)
		return err
	})
	return t, err
}

// ListTemplates lists templates by key, a page at a time.
func (e *Engine) ListTemplates(ctx context.Context, r PageRequest) (Page[TemplateInfo], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[TemplateInfo]{}, err
	}
	after, err := parseKeyCursor(r.After)
	if err != nil {
		return Page[TemplateInfo]{}, err
	}
	var rows []TemplateInfo
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListTemplates(ctx, after, limit+1)
		return err
	})
	return pageOf(rows, limit, func(t *TemplateInfo) string { return keyCursor(t.Key) }), err
}

// SetEmitMode switches a template between live and shadow, audited under
// the principal. Setting the mode it has changes nothing and records
// nothing.
func (e *Engine) SetEmitMode(ctx context.Context, key string, mode EmitMode) error {
	if _, err := ParseEmitMode(string(mode)); err != nil {
		return err
	}
	w := who(ctx, "")
	return e.update(ctx, func(tx Tx) error {
		t, err := getTemplate(ctx, tx, key)
		if err != nil {
			return err
		}
		if t.EmitMode == mode {
			return nil
		}
		if err := tx.SetEmitMode(ctx, key, mode); err != nil {
			return err
		}
		return e.audit(ctx, tx, w, AuditEmitMode, key, "%s -> %s", t.EmitMode, mode)
	})
}

// PublishResult says what publishing one template did.
type PublishResult struct {
	Key     string `json:"key"`
	Digest  Digest `json:"digest"`
	Pieces  int    `json:"pieces"`
	Created bool   `json:"created"`
}
