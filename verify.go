package iu

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// VerifySummary is the digest-match invariant in three numbers.
type VerifySummary struct {
	Matches  int64 `json:"matches"`
	Diverges int64 `json:"diverges"`
	Total    int64 `json:"total"`
}

// Divergence names one instance that failed verification and why.
type Divergence struct {
	InstanceKey string   `json:"instance_key"`
	TemplateKey string   `json:"template_key,omitempty"`
	Reasons     []string `json:"reasons"`
}

// MaxDivergingListed bounds the divergences a report lists; the counts are
// always complete.
const MaxDivergingListed = 1000

// VerifyReport proves (or disproves) the digest-match and shared-graph
// invariants for every instance.
type VerifyReport struct {
	VerifySummary
	Diverging []Divergence `json:"diverging"`
	Orphans   Orphans      `json:"orphans"`
}

// OK reports whether nothing diverges and nothing is orphaned.
func (r *VerifyReport) OK() bool { return r.Diverges == 0 && r.Orphans.Total() == 0 }

// Verify recomputes every instance's digest (those of actor, if given) from
// its stored membership rows and the stored piece bodies, and compares it
// with the template's digest, the digest recorded in lineage and the
// instance's own stored digest. It also checks the shared-graph invariant
// (each slot holds the template's own piece, with the template's edges) and
// counts orphan rows across the store.
func (e *Engine) Verify(ctx context.Context, actor string) (*VerifyReport, error) {
	return e.verify(ctx, actor, true)
}

// VerifyProgress is Verify for a caller that shows progress: progress is
// called first with how many instances there are to check, then every few
// thousand instances and at the end with how many were checked. It runs in the caller's goroutine, inside the
// read transaction: it must return quickly.
func (e *Engine) VerifyProgress(ctx context.Context, actor string, progress func(checked, total int64)) (*VerifyReport, error) {
	return e.verifyWith(ctx, actor, true, progress)
}

// verify is Verify; the orphan count, a scan of every table, is skipped
// when orphans is false (a bulk report shows only the digest invariant).
func (e *Engine) verify(ctx context.Context, actor string, orphans bool) (*VerifyReport, error) {
	return e.verifyWith(ctx, actor, orphans, nil)
}

// verifyProgressEvery is how many instances verify checks between two
// calls of its progress function.
const verifyProgressEvery = 4096

func (e *Engine) verifyWith(ctx context.Context, actor string, orphans bool, progress func(checked, total int64)) (*VerifyReport, error) {
	rep := &VerifyReport{Diverging: []Divergence{}}
	err := e.store.View(ctx, func(tx Tx) error {
		// Orphans are what a pass over every instance does not reach: the
		// tables' row counts less the rows reached. The store counts while
		// the instances are checked. A verify of one actor's instances so
		// reads them all, and checks the actor's.
		scanActor := actor
		var countRows func() (GraphRowCounts, error)
		if orphans {
			scanActor = ""
			countRows = tx.CountGraphRows(ctx)
		}
		var total int64
		if progress != nil {
			var err error
			if total, err = tx.CountInstances(ctx, actor); err != nil {
				return err
			}
			progress(0, total)
		}
		templates, err := tx.ListTemplateGraphs(ctx)
		if err != nil {
			return err
		}
		stored, err := tx.ListPieces(ctx)
		if err != nil {
			return err
		}
		recompute := recomputer(stored)
		templateWhy := templateProblems(templates, recompute)
		missing := func(slots []Slot) (n int64) {
			for _, s := range slots {
				if _, ok := stored[s.Piece]; !ok {
					n++
				}
			}
			return n
		}
		var reached reachedRows
		for _, t := range templates {
			reached.memberships += int64(len(t.Slots))
			reached.missingPieces += missing(t.Slots)
		}
		// Stores may hand instances whose membership rows are the same the
		// very same slots slice; such a graph is checked once.
		type graphID struct {
			first *Slot
			n     int
			tkey  string
			td, d Digest
			has   bool
		}
		type verdict struct {
			why     []string
			missing int64
		}
		checked := make(map[graphID]verdict)
		err = tx.ScanInstanceGraphs(ctx, scanActor, func(g *InstanceGraph) error {
			var v verdict
			if len(g.Slots) > 0 {
				id := graphID{&g.Slots[0], len(g.Slots), g.TemplateKey, g.TemplateDigest, g.Digest, g.HasLineage}
				var ok bool
				if v, ok = checked[id]; !ok {
					v = verdict{checkInstance(g, templates, templateWhy, recompute), missing(g.Slots)}
					if len(checked) < 10000 {
						checked[id] = v
					}
				}
			} else {
				v.why = checkInstance(g, templates, templateWhy, recompute)
			}
			reached.add(g, v.missing)
			if actor != "" && g.Actor != actor {
				return nil
			}
			rep.Total++
			if progress != nil && rep.Total%verifyProgressEvery == 0 {
				progress(rep.Total, total)
			}
			if len(v.why) == 0 {
				rep.Matches++
				return nil
			}
			rep.Diverges++
			if len(rep.Diverging) < MaxDivergingListed {
				rep.Diverging = append(rep.Diverging, Divergence{InstanceKey: g.Key, TemplateKey: g.TemplateKey, Reasons: v.why})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if progress != nil {
			progress(rep.Total, total)
		}
		if !orphans {
			return nil
		}
		counts, err := countRows()
		rep.Orphans = reached.orphans(counts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// reachedRows tallies the rows a pass over every instance reaches from the
// collections, and those it reaches that are orphans.
type reachedRows struct {
	memberships   int64 // under a collection's id
	strays        int64 // of those, naming another collection's key
	missingPieces int64 // of the others, naming a piece that is missing
	lineage       int64 // naming an instance's id
	lineageStrays int64 // of those, naming another key
	noLineage     int64 // instances without a lineage row
}

func (r *reachedRows) add(g *InstanceGraph, missingPieces int64) {
	r.memberships += int64(len(g.Slots)) + g.Strays
	r.strays += g.Strays
	r.missingPieces += missingPieces
	switch {
	case !g.HasLineage:
		r.noLineage++
	case !g.LineageKeyOK:
		r.lineage++
		r.lineageStrays++
	default:
		r.lineage++
	}
}

// orphans: a membership row is an orphan when no collection has its id
// and key, or its piece is missing; a lineage row when no instance has its
// id and key; an instance when no lineage row has its id.
func (r *reachedRows) orphans(all GraphRowCounts) Orphans {
	return Orphans{
		Memberships: all.Memberships - r.memberships + r.strays + r.missingPieces,
		Lineage:     all.Lineage - r.lineage + r.lineageStrays,
		EventLog:    all.OrphanLogRows,
		Instances:   r.noLineage,
	}
}

// recomputer returns a function that recomputes a graph's digest from the
// stored pieces' real content, saying which pieces are missing or do not
// match their ids. Each stored piece is hashed once.
func recomputer(stored map[Digest]Piece) func([]Slot) (Digest, []string) {
	real := make(map[Digest]Digest, len(stored))
	for id, p := range stored {
		real[id] = p.ID()
	}
	return func(slots []Slot) (Digest, []string) {
		var why []string
		rs := make([]Slot, len(slots))
		for i, s := range slots {
			rs[i] = s
			r, ok := real[s.Piece]
			switch {
			case !ok:
				why = append(why, fmt.Sprintf("slot %q: piece %s is missing", s.ID, s.Piece))
			case r != s.Piece:
				why = append(why, fmt.Sprintf("slot %q: piece %s does not match its stored content (hashes to %s)", s.ID, s.Piece, r))
			}
			rs[i].Piece = r
		}
		return GraphDigest(rs), why
	}
}

// storedText shows a stored digest in a reason: one that could not be
// read (StoredDigest) is named as such rather than printed empty.
func storedText(d Digest) string {
	if d.IsZero() {
		return "(unreadable: not a sha256 digest)"
	}
	return d.String()
}

// templateProblems checks each template's own graph: what is wrong with a
// template is wrong with every instance of it.
func templateProblems(templates map[string]*Template, recompute func([]Slot) (Digest, []string)) map[string][]string {
	out := make(map[string][]string, len(templates))
	for k, t := range templates {
		d, why := recompute(t.Slots)
		if d != t.Digest {
			why = append(why, fmt.Sprintf("template %s: stored graph hashes to %s, not its digest %s", k, d, storedText(t.Digest)))
		}
		out[k] = why
	}
	return out
}

// VerifyInstance checks one instance as Verify checks each: its digest
// recomputed from its stored membership rows and piece bodies, against the
// template's digest, the one lineage recorded and its own stored digest,
// and the shared graph. It returns why it diverges, nothing when it
// matches; ErrNotFound if there is no such instance.
func (e *Engine) VerifyInstance(ctx context.Context, key string) ([]string, error) {
	var why []string
	err := e.store.View(ctx, func(tx Tx) error {
		rec, err := tx.GetInstance(ctx, key)
		if err != nil {
			return err
		}
		templates := map[string]*Template{}
		ids := make([]Digest, 0, 2*len(rec.Slots))
		for _, s := range rec.Slots {
			ids = append(ids, s.Piece)
		}
		if rec.TemplateKey != "" {
			t, err := tx.GetTemplate(ctx, rec.TemplateKey)
			switch {
			case err == nil:
				templates[t.Key] = t
				for _, s := range t.Slots {
					ids = append(ids, s.Piece)
				}
			case !errors.Is(err, ErrUnknownTemplate):
				return err
			}
		}
		stored, err := tx.GetPieces(ctx, ids)
		if err != nil {
			return err
		}
		recompute := recomputer(stored)
		g := &InstanceGraph{Key: rec.Key, Digest: rec.Digest, HasLineage: rec.TemplateKey != "",
			TemplateKey: rec.TemplateKey, TemplateDigest: rec.TemplateDigest, Slots: rec.Slots}
		why = checkInstance(g, templates, templateProblems(templates, recompute), recompute)
		return nil
	})
	return why, err
}

func checkInstance(g *InstanceGraph, templates map[string]*Template, templateWhy map[string][]string, recompute func([]Slot) (Digest, []string)) []string {
	var why []string
	if !g.HasLineage {
		return []string{"no lineage row: the instance's origin is unknown"}
	}
	t, ok := templates[g.TemplateKey]
	if !ok {
		return []string{fmt.Sprintf("template %s is missing", g.TemplateKey)}
	}
	why = append(why, templateWhy[g.TemplateKey]...)
	d, pieceWhy := recompute(g.Slots)
	why = append(why, pieceWhy...)
	if d != t.Digest {
		why = append(why, fmt.Sprintf("recomputed digest %s differs from the template's %s", d, storedText(t.Digest)))
	}
	if g.TemplateDigest != t.Digest {
		why = append(why, fmt.Sprintf("lineage records template digest %s, the template has %s", storedText(g.TemplateDigest), storedText(t.Digest)))
	}
	if g.Digest != d {
		why = append(why, fmt.Sprintf("stored instance digest %s differs from the recomputed %s", storedText(g.Digest), d))
	}
	why = append(why, sharedGraph(g.Slots, t.Slots)...)
	return why
}

// sharedGraph checks that an instance's slots are exactly the template's:
// the same slot ids, each holding the template's own piece id, with the
// same edges. Content addressing means a copied piece would have to be a
// different id; this names it.
func sharedGraph(inst, tpl []Slot) []string {
	var why []string
	want := make(map[string]Slot, len(tpl))
	for _, s := range tpl {
		want[s.ID] = s
	}
	seen := make(map[string]bool, len(inst))
	for _, s := range inst {
		seen[s.ID] = true
		w, ok := want[s.ID]
		if !ok {
			why = append(why, fmt.Sprintf("slot %q is not in the template", s.ID))
			continue
		}
		if s.Piece != w.Piece {
			why = append(why, fmt.Sprintf("slot %q holds piece %s, not the template's %s (the graph is not shared)", s.ID, s.Piece, w.Piece))
		}
		a, b := slices.Clone(s.After), slices.Clone(w.After)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			why = append(why, fmt.Sprintf("slot %q: edges %v differ from the template's %v", s.ID, a, b))
		}
	}
	for _, s := range tpl {
		if !seen[s.ID] {
			why = append(why, fmt.Sprintf("slot %q of the template is missing", s.ID))
		}
	}
	return why
}
