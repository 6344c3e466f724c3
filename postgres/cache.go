package postgres

import (
	"slices"
	"sync"

	"github.com/iu-engine/iu"
)

// templateHead is what a write transaction reads of a recently used template
// together with the gates: the part that changes (emit mode) and the part
// that tells whether the cached graph is still the one stored (digest).
type templateHead struct {
	id     int64 // collection_id
	mode   iu.EmitMode
	digest string
}

// Bounds of templateCache.
const (
	maxCachedTemplates = 1024
	maxRecentTemplates = 8
)

// templateCache keeps published templates' graphs, which never change once
// published, and the keys of those used last.
type templateCache struct {
	mu    sync.Mutex
	byKey map[string]cachedTemplate
	keys  []string // recently used, newest last
}

// cachedTemplate is a template as stored, with its collection_id (a key
// published again after its rows were deleted by hand gets a new id).
type cachedTemplate struct {
	id int64
	tp *iu.Template // Slots are never handed out: get returns a copy
}

// get returns a copy of the cached template stored under collection_id id
// with digest, or nil.
func (c *templateCache) get(key string, id int64, digest string) *iu.Template {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct, ok := c.byKey[key]
	if !ok || ct.id != id || ct.tp.Digest.String() != digest {
		return nil
	}
	c.touch(key)
	cp := *ct.tp
	cp.Slots = slices.Clone(ct.tp.Slots)
	return &cp
}

// put caches tp, stored under collection_id id.
func (c *templateCache) put(id int64, tp *iu.Template) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || len(c.byKey) >= maxCachedTemplates {
		c.byKey = make(map[string]cachedTemplate)
	}
	cp := *tp
	cp.Slots, cp.Pieces = slices.Clone(tp.Slots), nil
	c.byKey[tp.Key] = cachedTemplate{id: id, tp: &cp}
	c.touch(tp.Key)
}

// touch makes key the most recently used; c.mu is held.
func (c *templateCache) touch(key string) {
	if n := len(c.keys); n > 0 && c.keys[n-1] == key {
		return
	}
	if i := slices.Index(c.keys, key); i >= 0 {
		c.keys = slices.Delete(c.keys, i, i+1)
	}
	c.keys = append(c.keys, key)
	if len(c.keys) > maxRecentTemplates {
		c.keys = slices.Delete(c.keys, 0, 1)
	}
}

// recent returns the keys of the templates used last.
func (c *templateCache) recent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.keys)
}
