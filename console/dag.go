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
	gapX, gapY   = 24.0, 46.0
	margin       = 12.0
	maxLabel     = 20
)

// layoutGraph lays out slots (with pieces for their kind and body). Cycles
// cannot be published; if one were stored, its slots would sit on the
// first layer rather than loop forever.
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
	rows := make([][]int, depth)
	for i := range slots {
		rows[layer[i]] = append(rows[layer[i]], i)
	}
	// Order each row by the mean position of its parents (barycentre), a
	// cheap pass that removes most crossings in checklists.
	pos := make([]float64, len(slots))
	for r, row := range rows {
		if r > 0 {
			bary := func(i int) float64 {
				sum, n := 0.0, 0
				for _, a := range slots[i].After {
					if j, ok := index[a]; ok {
						sum += pos[j]
						n++
					}
				}
				if n == 0 {
					return math.Inf(1)
				}
				return sum / float64(n)
			}
			sort.SliceStable(row, func(a, b int) bool { return bary(row[a]) < bary(row[b]) })
		}
		for k, i := range row {
			pos[i] = float64(k)
		}
	}
	widest := 0
	for _, row := range rows {
		widest = max(widest, len(row))
	}
	g := graph{
		W: int(2*margin + float64(widest)*nodeW + float64(max(widest-1, 0))*gapX),
		H: int(2*margin + float64(depth)*nodeH + float64(max(depth-1, 0))*gapY),
	}
	at := make([]node, len(slots))
	for r, row := range rows {
		// Centre each row.
		rowW := float64(len(row))*nodeW + float64(len(row)-1)*gapX
		x0 := (float64(g.W) - rowW) / 2
		for k, i := range row {
			s := slots[i]
			p := pieces[s.Piece]
			at[i] = node{
				ID: s.ID, X: x0 + float64(k)*(nodeW+gapX), Y: margin + float64(r)*(nodeH+gapY), W: nodeW, H: nodeH,
				Label: ellipsis(s.ID, maxLabel), Kind: p.Kind, Title: s.ID + ": " + p.Body,
			}
		}
	}
	for _, row := range rows {
		for _, i := range row {
			g.Nodes = append(g.Nodes, at[i])
		}
	}
	edges := 0
	for i, s := range slots {
		for _, a := range s.After {
			j, ok := index[a]
			if !ok {
				continue
			}
			from, to := at[j], at[i]
			x1, y1 := from.X+from.W/2, from.Y+from.H
			x2, y2 := to.X+to.W/2, to.Y-4 // leave room for the arrowhead
			my := (y1 + y2) / 2
			g.Edges = append(g.Edges, edge{
				Path:  fmt.Sprintf("M%s,%s C%s,%s %s,%s %s,%s", f1(x1), f1(y1), f1(x1), f1(my), f1(x2), f1(my), f1(x2), f1(y2)),
				Title: a + " → " + s.ID,
			})
			edges++
		}
	}
	g.Desc = fmt.Sprintf("%d slots in %d layers with %d edges; the list beside it has the same slots in order.", len(slots), depth, edges)
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
