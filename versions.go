package iu

import (
	"cmp"
	"context"
	"slices"
	"strings"
)

// TemplateVersions lists the published versions of the template that key
// names: every tpl:<kind>:<name>/vN of its kind and name, key's own among
// them if it is published, by version number. The versions
// are one range of the template key index, so the cost is that of the
// versions, not of every template: the console asks on every visit of a
// template's page, to offer the versions its instances may migrate to.
func (e *Engine) TemplateVersions(ctx context.Context, key string) ([]TemplateInfo, error) {
	k, err := ParseTemplateKey(key)
	if err != nil {
		return nil, err
	}
	prefix := "tpl:" + k.Kind + ":" + k.Name + "/v"
	type version struct {
		n    int
		info TemplateInfo
	}
	var vs []version
	err = e.store.View(ctx, func(tx Tx) error {
		after := prefix // every version sorts after it, "/v" then digits
		for {
			rows, err := tx.ListTemplates(ctx, after, MaxPageSize)
			if err != nil {
				return err
			}
			for _, t := range rows {
				if !strings.HasPrefix(t.Key, prefix) {
					return nil
				}
				// A longer name in the same range (onboarding/vip/v1) is
				// another template.
				if o, err := ParseTemplateKey(t.Key); err == nil && o.Kind == k.Kind && o.Name == k.Name {
					vs = append(vs, version{o.Version, t})
				}
			}
			if len(rows) < MaxPageSize {
				return nil
			}
			after = rows[len(rows)-1].Key
		}
	})
	if err != nil {
		return nil, err
	}
	// Key order puts v10 before v2.
	slices.SortFunc(vs, func(a, b version) int { return cmp.Compare(a.n, b.n) })
	out := make([]TemplateInfo, len(vs))
	for i, v := range vs {
		out[i] = v.info
	}
	return out, nil
}
