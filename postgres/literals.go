package postgres

import (
	"strconv"
	"strings"
	"sync"

	"github.com/iu-engine/iu"
)

// slotLiterals are a template's slots as PostgreSQL array literals (int[]
// positions, text[] slot ids, piece ids and edges), sent as text and parsed
// by the server. They are built once per template instead of once per
// instance: encoding the four arrays was a third of what a single emit
// allocated.
type slotLiterals struct{ pos, slot, piece, after string }

// noSlots are the literals of no slots.
var noSlots = &slotLiterals{pos: "{}", slot: "{}", piece: "{}", after: "{}"}

// literalCache holds the slot literals of the templates used, by template
// key and digest (a published template's slots never change; the digest
// alone would not do, as it leaves out the slots' declaration order).
type literalCache struct {
	mu sync.Mutex
	m  map[string]*slotLiterals
}

func (c *literalCache) get(key string, digest iu.Digest, slots []iu.Slot) *slotLiterals {
	k := key + "\x00" + string(digest[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.m[k]; ok {
		return l
	}
	if c.m == nil || len(c.m) >= maxCachedTemplates {
		c.m = make(map[string]*slotLiterals)
	}
	l := &slotLiterals{
		pos:   arrayLiteral(len(slots), func(i int) string { return strconv.Itoa(i) }, false),
		slot:  arrayLiteral(len(slots), func(i int) string { return slots[i].ID }, true),
		piece: arrayLiteral(len(slots), func(i int) string { return slots[i].Piece.String() }, true),
		after: arrayLiteral(len(slots), func(i int) string { return iu.EdgesText(slots[i].After) }, true),
	}
	c.m[k] = l
	return l
}

// arrayLiteral writes n elements as an array literal, each quoted when
// quote is set (an unquoted element could read as NULL, or split at a
// space).
func arrayLiteral(n int, elem func(int) string, quote bool) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		e := elem(i)
		if !quote {
			b.WriteString(e)
			continue
		}
		b.WriteByte('"')
		for j := 0; j < len(e); j++ {
			if e[j] == '"' || e[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(e[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
