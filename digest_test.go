package iu_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	"pgregory.net/rapid"
)

// genGraph draws a collection graph: 1 to 8 slots with distinct ids, each
// filled with a piece of a small kind and body, and edges to earlier slots
// (so the graph is acyclic, as a valid template's is). Ids and bodies come
// from small alphabets so that near-misses ("a" and "ab") are common.
func genGraph(t *rapid.T) []iu.Slot {
	ids := rapid.SliceOfNDistinct(rapid.StringMatching(`[ab.]{1,3}`), 1, 8, rapid.ID[string]).Draw(t, "ids")
	slots := make([]iu.Slot, len(ids))
	for i, id := range ids {
		kind := rapid.SampledFrom([]string{"step", "section", "text"}).Draw(t, "kind")
		body := rapid.StringMatching(`[xy ]{0,4}`).Draw(t, "body")
		slots[i] = iu.Slot{ID: id, Piece: iu.PieceID(kind, body)}
		if i > 0 {
			after := rapid.SliceOfDistinct(rapid.IntRange(0, i-1), rapid.ID[int]).Draw(t, "after")
			for _, j := range after {
				slots[i].After = append(slots[i].After, ids[j])
			}
		}
	}
	return slots
}

func cloneSlots(slots []iu.Slot) []iu.Slot {
	out := make([]iu.Slot, len(slots))
	for i, s := range slots {
		out[i] = iu.Slot{ID: s.ID, Piece: s.Piece, After: slices.Clone(s.After)}
	}
	return out
}

// canonicalGraph is the graph as a comparable string: slots sorted by id,
// edges sorted. Two graphs are the same graph exactly when these are equal.
func canonicalGraph(slots []iu.Slot) string {
	c := cloneSlots(slots)
	slices.SortFunc(c, func(a, b iu.Slot) int { return strings.Compare(a.ID, b.ID) })
	for i := range c {
		slices.Sort(c[i].After)
		if len(c[i].After) == 0 {
			c[i].After = nil // no edges, however spelled
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestGraphDigestIgnoresOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		slots := genGraph(t)
		want := iu.GraphDigest(slots)
		perm := rapid.Permutation(cloneSlots(slots)).Draw(t, "slot order")
		for i := range perm {
			perm[i].After = rapid.Permutation(perm[i].After).Draw(t, "edge order")
		}
		if got := iu.GraphDigest(perm); got != want {
			t.Fatalf("digest changed with the order of slots or edges: %s, want %s", got, want)
		}
	})
}

func TestGraphDigestDoesNotModifySlots(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		slots := genGraph(t)
		slices.Reverse(slots)
		for i := range slots {
			slices.Reverse(slots[i].After)
		}
		before := cloneSlots(slots)
		iu.GraphDigest(slots)
		if !slices.EqualFunc(slots, before, func(a, b iu.Slot) bool {
			return a.ID == b.ID && a.Piece == b.Piece && slices.Equal(a.After, b.After)
		}) {
			t.Fatalf("GraphDigest reordered its input:\n%v\nwas\n%v", slots, before)
		}
	})
}

// nearGraph returns a copy of slots, reordered, with up to two small random
// edits, each of which may happen to change nothing.
func nearGraph(t *rapid.T, slots []iu.Slot) []iu.Slot {
	b := rapid.Permutation(cloneSlots(slots)).Draw(t, "near order")
	for range rapid.IntRange(0, 2).Draw(t, "edits") {
		i := rapid.IntRange(0, len(b)-1).Draw(t, "edit slot")
		switch rapid.IntRange(0, 2).Draw(t, "edit") {
		case 0:
			b[i].Piece = iu.PieceID(rapid.SampledFrom([]string{"step", "text"}).Draw(t, "edit kind"), rapid.StringMatching(`[xy]{0,1}`).Draw(t, "edit body"))
		case 1:
			e := b[rapid.IntRange(0, len(b)-1).Draw(t, "edge to")].ID
			if k := slices.Index(b[i].After, e); k >= 0 {
				b[i].After = slices.Delete(b[i].After, k, k+1)
			} else {
				b[i].After = append(b[i].After, e)
			}
		case 2:
			id := rapid.StringMatching(`[ab]{1,2}`).Draw(t, "edit id")
			if !slices.ContainsFunc(b, func(s iu.Slot) bool { return s.ID == id }) || b[i].ID == id {
				b[i].ID = id
			}
		}
	}
	return b
}

// TestGraphDigestIsInjective checks, over pairs of random graphs, that the
// digests are equal exactly when the graphs are. Small alphabets make equal
// pairs and near-misses frequent.
func TestGraphDigestIsInjective(t *testing.T) {
	seen := map[bool]int{}
	rapid.Check(t, func(t *rapid.T) {
		a := genGraph(t)
		b := nearGraph(t, a)
		if rapid.Bool().Draw(t, "independent") {
			b = genGraph(t)
		}
		same := canonicalGraph(a) == canonicalGraph(b)
		seen[same]++
		if (iu.GraphDigest(a) == iu.GraphDigest(b)) != same {
			t.Fatalf("same graph: %v, but digests equal: %v\n%s\n%s", same, !same, canonicalGraph(a), canonicalGraph(b))
		}
	})
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("pairs drawn: %d equal, %d different; want both", seen[true], seen[false])
	}
}

func TestGraphDigestChangesWithAnyChange(t *testing.T) {
	type change struct {
		name string
		// apply changes slots in place; it returns false if it does not
		// apply to this graph.
		apply func(t *rapid.T, slots []iu.Slot) bool
	}
	ids := func(slots []iu.Slot) map[string]bool {
		m := make(map[string]bool)
		for _, s := range slots {
			m[s.ID] = true
		}
		return m
	}
	newID := func(t *rapid.T, slots []iu.Slot) string {
		taken := ids(slots)
		return rapid.StringMatching(`[abc.]{1,4}`).Filter(func(s string) bool { return !taken[s] }).Draw(t, "new id")
	}
	changes := []change{
		{"rename a slot (edges left pointing at the old id)", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			slots[i].ID = newID(t, slots)
			return true
		}},
		{"rename a slot and every edge to it", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			old, id := slots[i].ID, newID(t, slots)
			slots[i].ID = id
			for j := range slots {
				for k, a := range slots[j].After {
					if a == old {
						slots[j].After[k] = id
					}
				}
			}
			return true
		}},
		{"change a piece's kind", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			slots[i].Piece = iu.PieceID("field", "xy") // genGraph never draws kind field
			return true
		}},
		{"change a piece's body", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			slots[i].Piece = iu.PieceID("step", "zzzzz") // genGraph draws bodies of x, y and space
			return true
		}},
		{"swap the pieces of two slots", func(t *rapid.T, slots []iu.Slot) bool {
			if len(slots) < 2 {
				return false
			}
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "i")
			j := rapid.IntRange(0, len(slots)-1).Draw(t, "j")
			if slots[i].Piece == slots[j].Piece {
				return false
			}
			slots[i].Piece, slots[j].Piece = slots[j].Piece, slots[i].Piece
			return true
		}},
		{"add an edge", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "from")
			j := rapid.IntRange(0, len(slots)-1).Draw(t, "to")
			if slices.Contains(slots[i].After, slots[j].ID) {
				return false
			}
			slots[i].After = append(slots[i].After, slots[j].ID)
			return true
		}},
		{"remove an edge", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			if len(slots[i].After) == 0 {
				return false
			}
			k := rapid.IntRange(0, len(slots[i].After)-1).Draw(t, "edge")
			slots[i].After = slices.Delete(slots[i].After, k, k+1)
			return true
		}},
		{"point an edge at another slot", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "slot")
			if len(slots[i].After) == 0 {
				return false
			}
			k := rapid.IntRange(0, len(slots[i].After)-1).Draw(t, "edge")
			j := rapid.IntRange(0, len(slots)-1).Draw(t, "to")
			if slices.Contains(slots[i].After, slots[j].ID) {
				return false
			}
			slots[i].After[k] = slots[j].ID
			return true
		}},
		{"move an edge to another slot", func(t *rapid.T, slots []iu.Slot) bool {
			i := rapid.IntRange(0, len(slots)-1).Draw(t, "from slot")
			if len(slots[i].After) == 0 {
				return false
			}
			j := rapid.IntRange(0, len(slots)-1).Draw(t, "to slot")
			e := slots[i].After[0]
			if i == j || slices.Contains(slots[j].After, e) {
				return false
			}
			slots[i].After = slots[i].After[1:]
			slots[j].After = append(slots[j].After, e)
			return true
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			applied := 0
			rapid.Check(t, func(t *rapid.T) {
				slots := genGraph(t)
				before := iu.GraphDigest(slots)
				changed := cloneSlots(slots)
				if !c.apply(t, changed) {
					t.Skip("change does not apply")
				}
				applied++
				if iu.GraphDigest(changed) == before {
					t.Fatalf("digest unchanged:\n%s\n%s", canonicalGraph(slots), canonicalGraph(changed))
				}
			})
			if applied == 0 {
				t.Fatal("the change never applied: the generator does not exercise it")
			}
		})
	}
	t.Run("add or remove a slot", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			slots := genGraph(t)
			more := append(cloneSlots(slots), iu.Slot{ID: newID(t, slots), Piece: iu.PieceID("step", "x")})
			if iu.GraphDigest(more) == iu.GraphDigest(slots) {
				t.Fatal("adding a slot left the digest unchanged")
			}
			if len(slots) > 1 && iu.GraphDigest(slots[1:]) == iu.GraphDigest(slots) {
				t.Fatal("removing a slot left the digest unchanged")
			}
		})
	})
}

func TestPieceIDChangesWithKindOrBody(t *testing.T) {
	seen := map[bool]int{}
	rapid.Check(t, func(t *rapid.T) {
		// Small alphabets, including the separators a naive encoding would
		// confuse: "ab"+"c" and "a"+"bc" must differ.
		gen := rapid.StringMatching(`[ab\x00:]{0,3}`)
		k1, b1 := gen.Draw(t, "kind1"), gen.Draw(t, "body1")
		k2, b2 := k1, b1
		if rapid.Bool().Draw(t, "other kind") {
			k2 = gen.Draw(t, "kind2")
		}
		if rapid.Bool().Draw(t, "other body") {
			b2 = gen.Draw(t, "body2")
		}
		same := k1 == k2 && b1 == b2
		seen[same]++
		if (iu.PieceID(k1, b1) == iu.PieceID(k2, b2)) != same {
			t.Fatalf("PieceID(%q, %q) vs PieceID(%q, %q): equal ids for different pieces or the reverse", k1, b1, k2, b2)
		}
		if (iu.Piece{Kind: k1, Body: b1}).ID() != iu.PieceID(k1, b1) {
			t.Fatal("Piece.ID differs from PieceID")
		}
	})
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("pairs drawn: %d equal, %d different; want both", seen[true], seen[false])
	}
	for _, p := range [][2][2]string{
		{{"ab", "c"}, {"a", "bc"}},
		{{"step", ""}, {"", "step"}},
		{{"a\x00", "b"}, {"a", "\x00b"}},
	} {
		if iu.PieceID(p[0][0], p[0][1]) == iu.PieceID(p[1][0], p[1][1]) {
			t.Errorf("PieceID%q == PieceID%q", p[0], p[1])
		}
	}
}

// The canonical encodings are a contract (a backend may compute them in SQL,
// and stored digests must stay valid across releases). These models follow
// the documentation in digest.go, independently of its code.

func modelLP(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func modelPieceID(kind, body string) iu.Digest {
	b := []byte("iu/piece/v1\x00")
	b = modelLP(b, kind)
	b = modelLP(b, body)
	return sha256.Sum256(b)
}

func modelGraphDigest(slots []iu.Slot) iu.Digest {
	c := cloneSlots(slots)
	slices.SortFunc(c, func(a, b iu.Slot) int { return strings.Compare(a.ID, b.ID) })
	b := []byte("iu/collection/v1\x00")
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, s := range c {
		b = modelLP(b, s.ID)
		b = append(b, s.Piece[:]...)
		slices.Sort(s.After)
		b = binary.AppendUvarint(b, uint64(len(s.After)))
		for _, e := range s.After {
			b = modelLP(b, e)
		}
	}
	return sha256.Sum256(b)
}

func TestDigestsFollowTheDocumentedEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		slots := genGraph(t)
		if got, want := iu.GraphDigest(slots), modelGraphDigest(slots); got != want {
			t.Fatalf("GraphDigest = %s, the documented encoding gives %s", got, want)
		}
		kind, body := rapid.String().Draw(t, "kind"), rapid.String().Draw(t, "body")
		if got, want := iu.PieceID(kind, body), modelPieceID(kind, body); got != want {
			t.Fatalf("PieceID = %s, the documented encoding gives %s", got, want)
		}
	})
}

// TestDigestKnownAnswers pins the encodings to values computed outside Go
// (Python's hashlib over the documented byte layout), so that a change to
// the code and the model above together is still caught.
func TestDigestKnownAnswers(t *testing.T) {
	welcome := iu.PieceID("step", "Say hello")
	laptop := iu.PieceID("step", "Provision a laptop")
	for _, tc := range []struct {
		name string
		got  iu.Digest
		want string
	}{
		{"piece", laptop, "sha256:4709fa103cd00b44158ae56c87c07674b3d1f3d9e62fcb34ace3b07d0f105454"},
		{"piece with a two-byte length", iu.PieceID("section", strings.Repeat("x", 200)), "sha256:9250cf43b54fbb4ae01f2d1bad104f9d8eadd38314d6fc3a436b3880dd5873e2"},
		{"graph", iu.GraphDigest([]iu.Slot{{ID: "welcome", Piece: welcome}, {ID: "laptop", Piece: laptop, After: []string{"welcome"}}}),
			"sha256:ee5e3de87882a4fad98e7d45e906f3f3ed3f61580c8d748e2b96c28b07f4de2f"},
		{"empty graph", iu.GraphDigest(nil), "sha256:ba24ede1058f944a38e7c184c8533e342230c8f195739c9036a5102c229b4a44"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}

func TestDigestText(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var d iu.Digest
		copy(d[:], rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(t, "bytes"))
		if d.IsZero() {
			t.Skip("zero digest")
		}
		s := d.String()
		if !strings.HasPrefix(s, "sha256:") || len(s) != len("sha256:")+64 || s[len("sha256:"):] != d.Hex() {
			t.Fatalf("String() = %q, Hex() = %q", s, d.Hex())
		}
		p, err := iu.ParseDigest(s)
		if err != nil || p != d {
			t.Fatalf("ParseDigest(%q) = %v, %v", s, p, err)
		}
		b, err := json.Marshal(map[string]iu.Digest{"d": d})
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]iu.Digest
		if err := json.Unmarshal(b, &back); err != nil || back["d"] != d {
			t.Fatalf("JSON round trip of %s: %v, %v", d, back, err)
		}
		if _, err := iu.ParseDigest(strings.ToUpper(s[:7]) + s[7:]); err == nil {
			t.Fatal("an upper-case prefix was accepted")
		}
		if up := "sha256:" + strings.ToUpper(d.Hex()); up != s {
			if _, err := iu.ParseDigest(up); err == nil {
				t.Fatalf("upper-case hex %q was accepted: digests must have one spelling", up)
			}
		}
	})
}

func TestParseDigestRejects(t *testing.T) {
	valid := iu.PieceID("step", "x").String()
	for _, s := range []string{
		"",
		"sha256:",
		valid[len("sha256:"):],                  // no prefix
		"md5:" + valid[len("sha256:"):],         // other prefix
		valid[:len(valid)-1],                    // 63 hex
		valid + "0",                             // 65 hex
		valid[:len(valid)-1] + "g",              // not hex
		"sha256: " + valid[len("sha256:")+1:],   // a space
		"SHA256:" + valid[len("sha256:"):],      // upper-case prefix
		"sha256:" + strings.Repeat("A", 64),     // upper-case hex
		valid[:len(valid)-2] + "\x00\x00",       // NULs
		strings.Replace(valid, "sha256", "", 1), // ":hex"
	} {
		if d, err := iu.ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) = %s, want an error", s, d)
		}
	}
	var zero iu.Digest
	if !zero.IsZero() || zero.String() != "" {
		t.Errorf("zero digest: IsZero %v, String %q", zero.IsZero(), zero.String())
	}
}
