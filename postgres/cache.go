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
	byKey map[string]*iu.Template
	keys  []string // recently used, newest last
}

// get returns a copy of the cached template with digest, or nil.
func (c *templateCache) get(key, digest string) *iu.Template {
	c.mu.Lock()
	defer c.mu.Unlock()
	tp, ok := c.byKey[key]
	if !ok || tp.Digest.String() != digest {
		return nil
	}
	c.touch(key)
	cp := *tp
	cp.Slots = slices.Clone(tp.Slots)
	return &cp
}

func (c *templateCache) put(tp *iu.Template) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || len(c.byKey) >= maxCachedTemplates {
		c.byKey = make(map[string]*iu.Template)
	}
	cp := *tp
	cp.Slots, cp.Pieces = slices.Clone(tp.Slots), nil
	c.byKey[tp.Key] = &cp
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
