package iu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// Rendered is an instance as its user reads it.
type Rendered struct {
	InstanceKey string `json:"instance_key"`
	TemplateKey string `json:"template_key"`
	Format      string `json:"format"` // "markdown" or "checklist"
	Text        string `json:"text"`
}

// Render shows an instance with its event's subject and data filled in at
// read time; the stored graph is not changed. A file template renders as a
// Markdown document, a wf template as an ordered checklist that respects
// the dependencies. Placeholders: {{ .subject }}, {{ .data.NAME }},
// {{ .event.id }} (type, source, time), {{ .instance }}, {{ .template }},
// {{ .actor }}.
func (e *Engine) Render(ctx context.Context, key string) (*Rendered, error) {
	var rec *Instance
	var pieces map[Digest]Piece
	err := e.store.View(ctx, func(tx Tx) (err error) {
		if rec, err = getInstance(ctx, tx, key); err != nil {
			return err
		}
		ids := make([]Digest, len(rec.Slots))
		for i, s := range rec.Slots {
			ids[i] = s.Piece
		}
		pieces, err = tx.GetPieces(ctx, ids)
		return err
	})
	if err != nil {
		return nil, err
	}
	return renderInstance(ctx, rec, pieces)
}

// RenderInstance renders a loaded instance; see Engine.Render.
func RenderInstance(rec *Instance, pieces map[Digest]Piece) (*Rendered, error) {
	return renderInstance(context.Background(), rec, pieces)
}

func renderInstance(ctx context.Context, rec *Instance, pieces map[Digest]Piece) (*Rendered, error) {
	vars := map[string]any{"instance": rec.Key, "template": rec.TemplateKey, "actor": rec.Actor, "subject": "", "data": map[string]any{}}
	if ev := rec.Event; ev != nil {
		vars["subject"] = ev.Subject
		ea := map[string]any{"id": ev.ID, "type": ev.Type, "source": ev.Source, "subject": ev.Subject}
		if !ev.Time.IsZero() {
			ea["time"] = ev.Time
		}
		vars["event"] = ea
		if len(ev.Data) > 0 {
			var d any
			dec := json.NewDecoder(bytes.NewReader(ev.Data))
			dec.UseNumber()
			if err := dec.Decode(&d); err == nil && d != nil {
				vars["data"] = d
			}
		}
	}
	kind := ""
	if k, err := ParseTemplateKey(rec.TemplateKey); err == nil {
		kind = k.Kind
	}
	out := &Rendered{InstanceKey: rec.Key, TemplateKey: rec.TemplateKey, Format: "markdown"}
	var b strings.Builder
	title := rec.Title
	if title == "" {
		title = rec.TemplateKey
	}
	if s, _ := vars["subject"].(string); s != "" {
		title += ": " + s
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	order := TopoOrder(rec.Slots)
	number := make(map[string]int, len(order))
	for n, i := range order {
		number[rec.Slots[i].ID] = n + 1
	}
	if kind == "wf" {
		out.Format = "checklist"
	}
	var unfilled []string
	budget := &renderBudget{ctx: ctx, bytes: MaxRenderBytes, steps: MaxRenderSteps}
	for n, i := range order {
		s := rec.Slots[i]
		p, ok := pieces[s.Piece]
		if !ok {
			return nil, Errorf(ErrNotFound, "instance %s: piece %s of slot %q is missing from the store (run iu verify)", rec.Key, s.Piece, s.ID)
		}
		text, err := fill(s.ID, p.Body, vars, &unfilled, budget)
		if err != nil {
			return nil, budget.explain(rec.Key, err)
		}
		if kind == "wf" {
			fmt.Fprintf(&b, "%d. [ ] %s", n+1, indent(strings.TrimSpace(text), "       "))
			if len(s.After) > 0 {
				nums := make([]int, len(s.After))
				for j, a := range s.After {
					nums[j] = number[a]
				}
				slices.Sort(nums)
				deps := make([]string, len(nums))
				for j, n := range nums {
					deps[j] = strconv.Itoa(n)
				}
				fmt.Fprintf(&b, " _(after %s)_", strings.Join(deps, ", "))
			}
			b.WriteString("\n")
			continue
		}
		b.WriteString(strings.TrimSpace(text))
		b.WriteString("\n\n")
	}
	if kind == "wf" {
		b.WriteString("\n")
	}
	if len(unfilled) > 0 {
		fmt.Fprintf(&b, "_Not filled in, for want of a value in the event: %s (shown as written)_\n\n", strings.Join(unfilled, ", "))
	}
	fmt.Fprintf(&b, "---\n_%s, from %s (%s)_\n", rec.Key, rec.TemplateKey, rec.Digest)
	out.Text = b.String()
	return out, nil
}

// Rendering runs text that a template's author wrote over data that
// producers sent, so it is bounded: a piece may not define or call
// templates, nor use print, printf or println (a width in a format
// allocates at will), and one rendering loops at most MaxRenderSteps times
// in all and writes at most MaxRenderBytes.
const (
	MaxRenderBytes = 1 << 20
	MaxRenderSteps = 100_000
)

// renderStep is the function each range loop's body calls first, to spend
// a step of the budget.
const renderStep = "iu_render_step"

var forbiddenFuncs = map[string]string{
	"print":   "print",
	"printf":  "printf",
	"println": "println",
	"call":    "call",
}

// parsePiece parses a piece's body and checks it keeps to what rendering
// allows.
func parsePiece(name, body string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=default").
		Funcs(template.FuncMap{renderStep: func() (string, error) { return "", nil }}).Parse(body)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("defines a template ({{define}} or {{block}}): a piece is one body")
	}
	if err := checkNodes(t.Tree.Root); err != nil {
		return nil, err
	}
	return t, nil
}

func checkNodes(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNodes(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkNodes(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.TemplateNode:
		return fmt.Errorf("calls template %q: a piece is one body", n.Name)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				if err := checkNodes(a); err != nil {
					return err
				}
			}
		}
	case *parse.ChainNode:
		return checkNodes(n.Node)
	case *parse.IdentifierNode:
		if f, ok := forbiddenFuncs[n.Ident]; ok {
			return fmt.Errorf("uses %s, which rendering does not offer: write the placeholder alone, {{ .data.NAME }}", f)
		}
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	for _, n := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if err := checkNodes(n); err != nil {
			return err
		}
	}
	return nil
}

// stepEachLoop makes each range loop's body spend a step first.
func stepEachLoop(n parse.Node, step *parse.ActionNode) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			stepEachLoop(c, step)
		}
	case *parse.IfNode:
		stepEachLoop(n.List, step)
		stepEachLoop(n.ElseList, step)
	case *parse.WithNode:
		stepEachLoop(n.List, step)
		stepEachLoop(n.ElseList, step)
	case *parse.RangeNode:
		stepEachLoop(n.List, step)
		stepEachLoop(n.ElseList, step)
		n.List.Nodes = append([]parse.Node{step}, n.List.Nodes...)
	}
}

// renderBudget is what is left of one rendering's bounds.
type renderBudget struct {
	ctx   context.Context
	bytes int
	steps int
}

var (
	errRenderBytes = errors.New("render: output bound")
	errRenderSteps = errors.New("render: loop bound")
)

func (b *renderBudget) step() (string, error) {
	if b.steps--; b.steps < 0 {
		return "", errRenderSteps
	}
	return "", b.ctx.Err()
}

func (b *renderBudget) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if len(p) > b.bytes {
			return 0, errRenderBytes
		}
		b.bytes -= len(p)
		return w.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// explain words a rendering stopped by its bounds.
func (b *renderBudget) explain(key string, err error) error {
	switch {
	case errors.Is(err, errRenderBytes):
		return Errorf(ErrInvalidInput, "instance %s: rendering stopped at %d bytes of text, the most one rendering writes: its pieces repeat more of the event's data than that", key, MaxRenderBytes)
	case errors.Is(err, errRenderSteps):
		return Errorf(ErrInvalidInput, "instance %s: rendering stopped after %d loop iterations, the most one rendering runs: its pieces loop over more of the event's data than that", key, MaxRenderSteps)
	}
	if cerr := b.ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return cerr
	}
	return err
}

// fill fills a piece's placeholders, adding to unfilled (once each) those
// it has no value for.
func fill(slot, body string, vars map[string]any, unfilled *[]string, budget *renderBudget) (string, error) {
	t, err := parsePiece(slot, body)
	if err != nil {
		return "", Errorf(ErrInvalidTemplate, "slot %q: %v", slot, err)
	}
	keepUnfilled(t.Tree.Root, vars, unfilled)
	step, err := template.New("").Funcs(template.FuncMap{renderStep: budget.step}).Parse("{{" + renderStep + "}}")
	if err != nil {
		return "", err
	}
	stepEachLoop(t.Tree.Root, step.Tree.Root.Nodes[0].(*parse.ActionNode))
	t.Funcs(template.FuncMap{renderStep: budget.step})
	var b bytes.Buffer
	if err := t.Execute(budget.writer(&b), vars); err != nil {
		if errors.Is(err, errRenderBytes) || errors.Is(err, errRenderSteps) || budget.ctx.Err() != nil {
			return "", err
		}
		return "", Errorf(ErrInvalidInput, "slot %q: filling in placeholders: %v", slot, err)
	}
	return b.String(), nil
}

// keepUnfilled replaces each simple placeholder ({{ .data.manager }}) that
// the instance has no value for with its own text, so that a reader sees
// what is missing instead of Go's "<no value>" or a silent gap, and lists
// it in unfilled. Inside range and with blocks the dot changes, so they are
// left alone.
func keepUnfilled(list *parse.ListNode, vars map[string]any, unfilled *[]string) {
	if list == nil {
		return
	}
	for i, n := range list.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if path, ok := fieldPath(n.Pipe); ok && !filled(vars, path) {
				text := n.String()
				list.Nodes[i] = &parse.TextNode{NodeType: parse.NodeText, Pos: n.Pos, Text: []byte(text)}
				if !slices.Contains(*unfilled, text) {
					*unfilled = append(*unfilled, text)
				}
			}
		case *parse.IfNode:
			keepUnfilled(n.List, vars, unfilled)
			keepUnfilled(n.ElseList, vars, unfilled)
		}
	}
}

// fieldPath returns the field chain of a pipeline that is just {{ .a.b }}.
func fieldPath(p *parse.PipeNode) ([]string, bool) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return nil, false
	}
	f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
	return f.Ident, ok
}

// filled reports whether path leads to a value that is neither missing,
// null nor an empty string.
func filled(vars map[string]any, path []string) bool {
	var cur any = vars
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[k]; !ok || cur == nil {
			return false
		}
	}
	if s, ok := cur.(string); ok && s == "" {
		return false
	}
	return true
}

func indent(s, pad string) string { return strings.ReplaceAll(s, "\n", "\n"+pad) }
