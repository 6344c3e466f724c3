package console

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/iu-engine/iu"
)

// graph is a template's pieces laid out as a DAG, top to bottom: a slot
// sits one layer below the lowest slot it comes after. The template lays
// it out as SVG.
type graph struct {
	W, H  int
	Nodes []node
	Edges []edge
	Desc  string
}

type node struct {
	ID         string
	X, Y, W, H float64
	Label      string // the slot id, shortened to fit
	Kind       string
	Title      string // the whole slot id and body
}

type edge struct {
	Path  string
	Title string
}

const (
	nodeW, nodeH = 150.0, 40.0
	dummyW       = 12.0 // the width a long edge takes in a layer it passes
	gapX, gapY   = 24.0, 46.0
	margin       = 12.0
	maxLabel     = 20
)

// layoutGraph lays out slots (with pieces for their kind and body). An
// edge that spans several layers passes through a narrow placeholder in
// each layer between (as in Sugiyama's method), so that it is routed
// around the boxes there instead of through them. Cycles cannot be
// published; if one were stored, its slots would sit on the first layer
// rather than loop forever.
func layoutGraph(slots []iu.Slot, pieces map[iu.Digest]iu.Piece) graph {
	index := make(map[string]int, len(slots))
	for i, s := range slots {
		index[s.ID] = i
	}
	// Layer by longest path from a slot with no edges, in declaration
	// order so that the layout does not depend on map order.
	layer := make([]int, len(slots))
	state := make([]byte, len(slots)) // 0 new, 1 in progress, 2 done
	var visit func(i int) int
	visit = func(i int) int {
		switch state[i] {
		case 1:
			return 0
		case 2:
			return layer[i]
		}
		state[i] = 1
		l := 0
		for _, a := range slots[i].After {
			if j, ok := index[a]; ok {
				l = max(l, visit(j)+1)
			}
		}
		layer[i], state[i] = l, 2
		return l
	}
	depth := 0
	for i := range slots {
		depth = max(depth, visit(i)+1)
	}
	// Items are the slots, then the placeholders of long edges. preds
	// are each item's predecessors in the row above; chains are each
	// edge's items from source to target.
	type item struct {
		slot  int // -1 for a placeholder
		row   int
		preds []int
		x, w  float64
	}
	items := make([]item, len(slots))
	for i := range slots {
		items[i] = item{slot: i, row: layer[i], w: nodeW}
	}
	type chain struct {
		from, to string
		items    []int
	}
	var chains []chain
	for i, s := range slots {
		for _, a := range s.After {
			j, ok := index[a]
			if !ok || layer[j] >= layer[i] {
				continue
			}
			c := chain{from: a, to: s.ID, items: []int{j}}
			prev := j
			for r := layer[j] + 1; r < layer[i]; r++ {
				items = append(items, item{slot: -1, row: r, preds: []int{prev}, w: dummyW})
				prev = len(items) - 1
				c.items = append(c.items, prev)
			}
			items[i].preds = append(items[i].preds, prev)
			c.items = append(c.items, i)
			chains = append(chains, c)
		}
	}
	rows := make([][]int, depth)
	for k, it := range items {
		rows[it.row] = append(rows[it.row], k)
	}
	// Order each row by the mean position of its predecessors
	// (barycentre), a cheap pass that removes most crossings.
	pos := make([]float64, len(items))
	for r, row := range rows {
		if r > 0 {
			bary := func(k int) float64 {
				if len(items[k].preds) == 0 {
					return math.Inf(1)
				}
				sum := 0.0
				for _, p := range items[k].preds {
					sum += pos[p]
				}
				return sum / float64(len(items[k].preds))
			}
			sort.SliceStable(row, func(a, b int) bool { return bary(row[a]) < bary(row[b]) })
		}
		for n, k := range row {
			pos[k] = float64(n)
		}
	}
	rowW := func(row []int) float64 {
		w := float64(max(len(row)-1, 0)) * gapX
		for _, k := range row {
			w += items[k].w
		}
		return w
	}
	widest := 0.0
	for _, row := range rows {
		widest = max(widest, rowW(row))
	}
	g := graph{
		W: int(2*margin + widest),
		H: int(2*margin + float64(depth)*nodeH + float64(max(depth-1, 0))*gapY),
	}
	top := func(r int) float64 { return margin + float64(r)*(nodeH+gapY) }
	for _, row := range rows {
		x := (float64(g.W) - rowW(row)) / 2 // centre each row
		for _, k := range row {
			items[k].x = x
			x += items[k].w + gapX
		}
	}
	for _, row := range rows {
		for _, k := range row {
			it := items[k]
			if it.slot < 0 {
				continue
			}
			s := slots[it.slot]
			p := pieces[s.Piece]
			g.Nodes = append(g.Nodes, node{
				ID: s.ID, X: it.x, Y: top(it.row), W: nodeW, H: nodeH,
				Label: ellipsis(s.ID, maxLabel), Kind: p.Kind, Title: s.ID + ": " + p.Body,
			})
		}
	}
	for _, c := range chains {
		// Down from the source's bottom, through each placeholder (a
		// straight drop through its row), to just above the target's top
		// (room for the arrowhead); a smooth curve between rows.
		centre := func(k int) float64 { return items[k].x + items[k].w/2 }
		first := c.items[0]
		x, y := centre(first), top(items[first].row)+nodeH
		var b strings.Builder
		fmt.Fprintf(&b, "M%s,%s", f1(x), f1(y))
		for _, k := range c.items[1:] {
			x2, y2 := centre(k), top(items[k].row)
			if k == c.items[len(c.items)-1] {
				y2 -= 4
			}
			my := (y + y2) / 2
			fmt.Fprintf(&b, " C%s,%s %s,%s %s,%s", f1(x), f1(my), f1(x2), f1(my), f1(x2), f1(y2))
			x, y = x2, y2
			if items[k].slot < 0 {
				y = top(items[k].row) + nodeH
				fmt.Fprintf(&b, " L%s,%s", f1(x), f1(y))
			}
		}
		g.Edges = append(g.Edges, edge{Path: b.String(), Title: c.from + " → " + c.to})
	}
	g.Desc = fmt.Sprintf("%d slots in %d layers with %d edges; the list beside it has the same slots in order.", len(slots), depth, len(chains))
	return g
}

func f1(v float64) string { return trimFloat(round1(v)) }

// ellipsis shortens s to at most n runes.
func ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
