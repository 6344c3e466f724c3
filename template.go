package iu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// EmitMode says what an event does to a template: live templates are
// instantiated, shadow templates only log what would have been made.
type EmitMode string

const (
	EmitLive   EmitMode = "live"
	EmitShadow EmitMode = "shadow"
)

// ParseEmitMode accepts "live" and "shadow".
func ParseEmitMode(s string) (EmitMode, error) {
	switch m := EmitMode(s); m {
	case EmitLive, EmitShadow:
		return m, nil
	}
	return "", Errorf(ErrInvalidInput, "unknown emit mode %q: want live or shadow", s)
}

// TemplateKey is a parsed template key "tpl:<kind>:<name>/v<N>".
type TemplateKey struct {
	Kind    string // wf, file, or any [a-z][a-z0-9-]*
	Name    string
	Version int
}

func (k TemplateKey) String() string {
	return "tpl:" + k.Kind + ":" + k.Name + "/v" + strconv.Itoa(k.Version)
}

// ParseTemplateKey parses and checks a template key.
func ParseTemplateKey(s string) (TemplateKey, error) {
	kind, name, version, ok := splitTemplateKey(s)
	if !ok {
		return TemplateKey{}, Errorf(ErrInvalidTemplate,
			"malformed template key %q: want tpl:<kind>:<name>/v<N>, e.g. tpl:wf:onboarding/v2 (kind and name in lower case, N a positive integer)", s)
	}
	v, err := strconv.Atoi(version)
	if err != nil || v <= 0 {
		return TemplateKey{}, Errorf(ErrInvalidTemplate, "malformed template key %q: version out of range", s)
	}
	return TemplateKey{Kind: kind, Name: name, Version: v}, nil
}

// splitTemplateKey splits "tpl:<kind>:<name>/v<N>" where kind is
// [a-z][a-z0-9-]*, name is segments [a-z0-9][a-z0-9._-]* joined by "/", and
// N is [1-9][0-9]*. It is the regular expression in its test, by hand: every
// event is checked with it, and the expression was 4% of iu serve's CPU.
func splitTemplateKey(s string) (kind, name, version string, ok bool) {
	rest, ok := strings.CutPrefix(s, "tpl:")
	if !ok {
		return "", "", "", false
	}
	if kind, rest, ok = strings.Cut(rest, ":"); !ok || kind == "" || !isLower(kind[0]) {
		return "", "", "", false
	}
	for i := 1; i < len(kind); i++ {
		if c := kind[i]; !isLower(c) && !isDigit(c) && c != '-' {
			return "", "", "", false
		}
	}
	// The version is digits only, so the last "/v" starts it.
	i := strings.LastIndex(rest, "/v")
	if i < 0 {
		return "", "", "", false
	}
	name, version = rest[:i], rest[i+2:]
	if version == "" || version[0] == '0' {
		return "", "", "", false
	}
	for j := 0; j < len(version); j++ {
		if !isDigit(version[j]) {
			return "", "", "", false
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || (!isLower(seg[0]) && !isDigit(seg[0])) {
			return "", "", "", false
		}
		for j := 1; j < len(seg); j++ {
			if c := seg[j]; !isLower(c) && !isDigit(c) && c != '.' && c != '_' && c != '-' {
				return "", "", "", false
			}
		}
	}
	return kind, name, version, true
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Slot is one node of a collection's graph: the piece that fills it and the
// slots it comes after (its edges).
type Slot struct {
	ID    string
	Piece Digest
	After []string
}

// Piece is an immutable unit of content. Its id is PieceID(Kind, Body).
type Piece struct {
	Kind string
	Body string
}

// ID returns the piece's content address.
func (p Piece) ID() Digest { return PieceID(p.Kind, p.Body) }

// Template is a published collection: a graph of slots over pieces. Slots are
// in declaration order, which is presentation only (render order among
// unordered slots); the digest covers the graph alone.
type Template struct {
	Key       string
	Title     string
	EmitMode  EmitMode
	Digest    Digest
	Slots     []Slot
	Pieces    map[Digest]Piece // bodies; may be nil when only the graph was loaded
	Actor     string
	CreatedAt Time
}

// Kind returns the template kind from its key ("wf", "file", ...).
func (t *Template) Kind() string {
	k, err := ParseTemplateKey(t.Key)
	if err != nil {
		return ""
	}
	return k.Kind
}

// SameContent reports whether two templates would be the same publication:
// the same graph, title and declaration order. Emit mode is a setting, not
// content.
func (t *Template) SameContent(o *Template) bool {
	if t.Digest != o.Digest || t.Title != o.Title || len(t.Slots) != len(o.Slots) {
		return false
	}
	for i := range t.Slots {
		if t.Slots[i].ID != o.Slots[i].ID {
			return false
		}
	}
	return true
}

// TemplateInfo is a template's row in a listing.
type TemplateInfo struct {
	Key       string   `json:"key"`
	Title     string   `json:"title"`
	EmitMode  EmitMode `json:"emit_mode"`
	Digest    Digest   `json:"digest"`
	Pieces    int      `json:"pieces"`
	Actor     string   `json:"actor"`
	CreatedAt Time     `json:"created_at"`
}

var (
	slotIDRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	pieceKindRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
)

// Limits on template content; generous for real documents, and they keep a
// careless publish from filling the store.
const (
	MaxSlots     = 4096
	MaxBodyBytes = 64 << 10
	MaxTitle     = 512
)

// SlotSpec is one piece as declared in a template file.
type SlotSpec struct {
	ID    string
	Kind  string
	Body  string
	After []string
	Line  int // line in the source file, 0 if unknown
}

// TemplateSpec is a template as declared by its author, before validation.
type TemplateSpec struct {
	Key      string
	Title    string
	EmitMode string
	Pieces   []SlotSpec
	Line     int // line of the pieces list, 0 if unknown
}

// Build validates the spec and returns the template it declares, with piece
// ids and digest computed. Every problem is reported with the slot and line
// it concerns.
func (s *TemplateSpec) Build() (*Template, error) {
	if _, err := ParseTemplateKey(s.Key); err != nil {
		if s.Key == "" {
			return nil, Errorf(ErrInvalidTemplate, "missing key: every template needs key: tpl:<kind>:<name>/v<N>")
		}
		return nil, err
	}
	mode := EmitLive
	if s.EmitMode != "" {
		m, err := ParseEmitMode(s.EmitMode)
		if err != nil {
			return nil, Errorf(ErrInvalidTemplate, "emit_mode: %v", err)
		}
		mode = m
	}
	if len(s.Title) > MaxTitle {
		return nil, Errorf(ErrInvalidTemplate, "title is longer than %d bytes", MaxTitle)
	}
	if len(s.Pieces) == 0 {
		return nil, Errorf(ErrInvalidTemplate, "%sno pieces: a template needs at least one piece", at(s.Line))
	}
	if len(s.Pieces) > MaxSlots {
		return nil, Errorf(ErrInvalidTemplate, "%d pieces: at most %d are allowed", len(s.Pieces), MaxSlots)
	}
	t := &Template{Key: s.Key, Title: s.Title, EmitMode: mode, Pieces: make(map[Digest]Piece, len(s.Pieces))}
	index := make(map[string]int, len(s.Pieces))
	for i, p := range s.Pieces {
		where := fmt.Sprintf("%spiece %d", at(p.Line), i+1)
		if p.ID == "" {
			return nil, Errorf(ErrInvalidTemplate, "%s: missing id", where)
		}
		where = fmt.Sprintf("%spiece %q", at(p.Line), p.ID)
		if !slotIDRE.MatchString(p.ID) {
			return nil, Errorf(ErrInvalidTemplate, "%s: malformed id: use letters, digits, '_', '.' and '-' (at most 128)", where)
		}
		if j, dup := index[p.ID]; dup {
			return nil, Errorf(ErrInvalidTemplate, "%s: duplicate slot id (first declared as piece %d)", where, j+1)
		}
		index[p.ID] = i
		if p.Kind == "" {
			return nil, Errorf(ErrInvalidTemplate, "%s: missing kind (step, section, text, field, ...)", where)
		}
		if !pieceKindRE.MatchString(p.Kind) {
			return nil, Errorf(ErrInvalidTemplate, "%s: malformed kind %q: use lower-case letters, digits, '_' and '-'", where, p.Kind)
		}
		if strings.TrimSpace(p.Body) == "" {
			return nil, Errorf(ErrInvalidTemplate, "%s: empty body", where)
		}
		if len(p.Body) > MaxBodyBytes {
			return nil, Errorf(ErrInvalidTemplate, "%s: body is longer than %d bytes", where, MaxBodyBytes)
		}
		if _, err := parsePiece(p.ID, p.Body); err != nil {
			return nil, Errorf(ErrInvalidTemplate, "%s: body placeholder: %v", where, err)
		}
		piece := Piece{Kind: p.Kind, Body: p.Body}
		id := piece.ID()
		t.Pieces[id] = piece
		t.Slots = append(t.Slots, Slot{ID: p.ID, Piece: id})
	}
	for i, p := range s.Pieces {
		where := fmt.Sprintf("%spiece %q", at(p.Line), p.ID)
		seen := make(map[string]bool, len(p.After))
		for _, a := range p.After {
			j, ok := index[a]
			switch {
			case !ok:
				return nil, Errorf(ErrInvalidTemplate, "%s: after: unknown slot %q", where, a)
			case j == i:
				return nil, Errorf(ErrInvalidTemplate, "%s: after: a piece cannot come after itself", where)
			case seen[a]:
				return nil, Errorf(ErrInvalidTemplate, "%s: after: %q listed twice", where, a)
			}
			seen[a] = true
		}
		t.Slots[i].After = append([]string(nil), p.After...)
	}
	if cycle := findCycle(t.Slots); cycle != nil {
		return nil, Errorf(ErrInvalidTemplate, "%spieces form a cycle: %s", at(s.Pieces[index[cycle[0]]].Line), strings.Join(cycle, " -> "))
	}
	t.Digest = GraphDigest(t.Slots)
	return t, nil
}

func at(line int) string {
	if line <= 0 {
		return ""
	}
	return fmt.Sprintf("line %d: ", line)
}

// findCycle returns one cycle of the after-graph as a path that starts and
// ends at the same slot, or nil if the graph is acyclic.
func findCycle(slots []Slot) []string {
	index := make(map[string]int, len(slots))
	for i, s := range slots {
		index[s.ID] = i
	}
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(slots))
	var stack []string
	var visit func(i int) []string
	visit = func(i int) []string {
		color[i] = grey
		stack = append(stack, slots[i].ID)
		for _, a := range slots[i].After {
			j, ok := index[a]
			if !ok {
				continue
			}
			switch color[j] {
			case grey:
				for k, id := range stack {
					if id == a {
						return append(append([]string(nil), stack[k:]...), a)
					}
				}
			case white:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return nil
	}
	for i := range slots {
		if color[i] == white {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// TopoOrder returns slot indexes in an order that respects every edge, taking
// among the ready slots the one declared first. It assumes an acyclic graph;
// slots caught in a cycle (only possible in a corrupted store) come last in
// declaration order.
func TopoOrder(slots []Slot) []int {
	index := make(map[string]int, len(slots))
	for i, s := range slots {
		index[s.ID] = i
	}
	indeg := make([]int, len(slots))
	next := make([][]int, len(slots))
	for i, s := range slots {
		for _, a := range s.After {
			if j, ok := index[a]; ok {
				indeg[i]++
				next[j] = append(next[j], i)
			}
		}
	}
	done := make([]bool, len(slots))
	order := make([]int, 0, len(slots))
	for len(order) < len(slots) {
		pick := -1
		for i := range slots {
			if !done[i] && indeg[i] == 0 {
				pick = i
				break
			}
		}
		if pick < 0 { // cycle: emit the rest as declared
			for i := range slots {
				if !done[i] {
					order = append(order, i)
					done[i] = true
				}
			}
			break
		}
		done[pick] = true
		order = append(order, pick)
		for _, j := range next[pick] {
			indeg[j]--
		}
	}
	return order
}
