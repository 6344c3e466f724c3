package iu

import (
	"context"
	"errors"
	"slices"
)

// InstanceMigration is the record of one instance moved between versions
// of a template, in iu_instance_migration.
type InstanceMigration struct {
	Seq         int64  `json:"-"`
	InstanceKey string `json:"instance_key"`
	FromKey     string `json:"from_key"`
	FromDigest  Digest `json:"from_digest"`
	ToKey       string `json:"to_key"`
	ToDigest    Digest `json:"to_digest"`
	At          Time   `json:"at"`
	By          string `json:"by"`
	Claimed     string `json:"claimed_actor,omitempty"`
}

// MigrateRequest asks to move the instances of one version of a template
// to another version of it: every instance (auto and manual) of From, or
// those of Actor, or those whose keys are under the instance prefix Prefix.
// Apply false is a dry run.
type MigrateRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Actor  string `json:"actor,omitempty"`  // only this actor's instances
	Prefix string `json:"prefix,omitempty"` // only instances under AutoInstancePrefix(Prefix)
	Apply  bool   `json:"apply"`
	// Batch is how many instances one transaction moves: 0 for the
	// engine's (DefaultMigrateBatch), at most MaxMigrateBatch.
	Batch int `json:"batch,omitempty"`
	// Claimed is an actor the caller names, recorded beside the principal.
	Claimed string `json:"-"`
}

// MigrationSelector is what a store needs to find the instances a
// migration moves.
type MigrationSelector struct {
	From   string
	Actor  string
	Prefix string // an instance prefix, as in InstanceFilter
}

// GraphDiff is how two versions of a template differ, slot by slot.
type GraphDiff struct {
	Added   []string     `json:"added"`   // slots only the target has
	Removed []string     `json:"removed"` // slots only the source has
	Changed []SlotChange `json:"changed"` // slots both have, with another piece or other edges
	Same    int          `json:"same"`    // slots alike in both
}

// SlotChange is one slot that both versions have, changed.
type SlotChange struct {
	Slot        string   `json:"slot"`
	FromPiece   Digest   `json:"from_piece"`
	ToPiece     Digest   `json:"to_piece"`
	FromAfter   []string `json:"from_after,omitempty"`
	ToAfter     []string `json:"to_after,omitempty"`
	PieceChange bool     `json:"piece_changed"`
	EdgesChange bool     `json:"edges_changed"`
}

// DiffGraphs compares two templates' graphs.
func DiffGraphs(from, to *Template) GraphDiff {
	d := GraphDiff{Added: []string{}, Removed: []string{}, Changed: []SlotChange{}}
	old := make(map[string]Slot, len(from.Slots))
	for _, s := range from.Slots {
		old[s.ID] = s
	}
	now := make(map[string]bool, len(to.Slots))
	for _, s := range to.Slots {
		now[s.ID] = true
		o, ok := old[s.ID]
		if !ok {
			d.Added = append(d.Added, s.ID)
			continue
		}
		oe, ne := slices.Sorted(slices.Values(o.After)), slices.Sorted(slices.Values(s.After))
		c := SlotChange{Slot: s.ID, FromPiece: o.Piece, ToPiece: s.Piece, FromAfter: o.After, ToAfter: s.After,
			PieceChange: o.Piece != s.Piece, EdgesChange: !slices.Equal(oe, ne)}
		if c.PieceChange || c.EdgesChange {
			d.Changed = append(d.Changed, c)
		} else {
			d.Same++
		}
	}
	for _, s := range from.Slots {
		if !now[s.ID] {
			d.Removed = append(d.Removed, s.ID)
		}
	}
	return d
}

// MigrationPlan is what moving an instance between two versions of a
// template writes into its memberships: the slots only the source has are
// deleted, and the slots the target adds or changes (another piece, other
// edges, another position) are written as the target has them. The slots
// both versions have alike are left as they are: versions share most of
// their slots, and reading and comparing every row of every instance made
// a migration half again as slow. So an instance whose graph was altered
// outside iu keeps the alteration where the versions agree, and iu verify
// still names it: a migration does not launder a tampered instance.
type MigrationPlan struct {
	To     *Template
	Remove []string     // slots only the source has
	Put    []PlacedSlot // slots the target adds or changes, as the target has them
}

// PlacedSlot is a slot with its position (declaration order) in its
// template.
type PlacedSlot struct {
	Slot
	Position int
}

// PlanMigration compares two versions' graphs as stored (a slot's piece,
// its edges as written, its position) and says what moving an instance
// from one to the other writes.
func PlanMigration(from, to *Template) MigrationPlan {
	p := MigrationPlan{To: to}
	type placed struct {
		pos   int
		piece Digest
		edges string
	}
	old := make(map[string]placed, len(from.Slots))
	for i, s := range from.Slots {
		old[s.ID] = placed{i, s.Piece, EdgesText(s.After)}
	}
	kept := make(map[string]bool, len(to.Slots))
	for i, s := range to.Slots {
		kept[s.ID] = true
		if old[s.ID] != (placed{i, s.Piece, EdgesText(s.After)}) {
			p.Put = append(p.Put, PlacedSlot{Slot: s, Position: i})
		}
	}
	for _, s := range from.Slots {
		if !kept[s.ID] {
			p.Remove = append(p.Remove, s.ID)
		}
	}
	return p
}

// MigrateReport says what a migration moved, or would move.
type MigrateReport struct {
	From       string    `json:"from"`
	FromDigest Digest    `json:"from_digest"`
	To         string    `json:"to"`
	ToDigest   Digest    `json:"to_digest"`
	DryRun     bool      `json:"dry_run"`
	Instances  int64     `json:"instances"` // to move (dry run), or left to move when the run began
	Moved      int64     `json:"moved"`
	Batches    int       `json:"batches"`
	Diff       GraphDiff `json:"diff"`
}

// MigrateProgress is told after each batch how many instances have moved
// of how many there were to move.
type MigrateProgress func(moved, total int64)

// migratedModes are the instances a migration moves, in the order it
// moves them: every one, auto and manual.
var migratedModes = []Mode{ModeAuto, ModeManual}

// DefaultMigrateBatch is how many instances one transaction of a migration
// moves, and MaxMigrateBatch the most a request may ask for: a batch's
// instances are held in memory and its transaction holds their rows.
const (
	DefaultMigrateBatch = 1000
	MaxMigrateBatch     = 100_000
)

// Migrate moves instances from one version of a template to another
// version of the same template (tpl:<kind>:<name>): each instance's
// memberships become the target's graph (its own piece ids, shared, as at
// instantiation), its digest and title the target's, its lineage's
// template key and digest follow, and the move is recorded in
// iu_instance_migration under the principal. The log entries keep the
// template their events were claimed for, so a redelivered event of the
// source version is still a replay, and answers the migrated instance.
//
// It moves the instances in batches, each one transaction, in creation
// order, so that memory stays bounded and an instance is never half moved.
// A run that stops (killed, interrupted) is finished by running it again:
// the instances already on the target are no longer the source's. Without
// Apply it only counts and compares the graphs.
func (e *Engine) Migrate(ctx context.Context, req MigrateRequest, progress MigrateProgress) (*MigrateReport, error) {
	w, err := claimIfApplied(ctx, req.Claimed, req.Apply)
	if err != nil {
		return nil, err
	}
	fk, err := ParseTemplateKey(req.From)
	if err != nil {
		return nil, err
	}
	tk, err := ParseTemplateKey(req.To)
	if err != nil {
		return nil, err
	}
	if fk.Kind != tk.Kind || fk.Name != tk.Name {
		return nil, Errorf(ErrInvalidInput, "migrate %s to %s: instances move only between versions of one template (tpl:%s:%s/vN)", req.From, req.To, fk.Kind, fk.Name)
	}
	if req.From == req.To {
		return nil, Errorf(ErrInvalidInput, "migrate %s to itself: name another version", req.From)
	}
	if req.Actor != "" {
		if err := CheckActor(req.Actor); err != nil {
			return nil, err
		}
	}
	if req.Prefix != "" {
		if err := CheckPrefix(req.Prefix); err != nil {
			return nil, err
		}
	}
	batch := e.migrateBatch
	switch {
	case req.Batch < 0 || req.Batch > MaxMigrateBatch:
		return nil, Errorf(ErrInvalidInput, "migrate: batch %d: want 1 to %d instances per transaction (or none, for %d)", req.Batch, MaxMigrateBatch, DefaultMigrateBatch)
	case req.Batch > 0:
		batch = req.Batch
	}
	sel := MigrationSelector{From: req.From, Actor: req.Actor, Prefix: req.Prefix}
	rep := &MigrateReport{From: req.From, To: req.To, DryRun: !req.Apply}
	var from, to *Template
	err = e.store.View(ctx, func(tx Tx) error {
		if from, err = getTemplate(ctx, tx, req.From); err != nil {
			return err
		}
		if to, err = tx.GetTemplate(ctx, req.To); err != nil {
			if errors.Is(err, ErrUnknownTemplate) {
				return Errorf(ErrUnknownTemplate, "unknown template %q: publish the version to migrate to first (iu template publish FILE)", req.To)
			}
			return err
		}
		if err := checkStoredDigest(to); err != nil {
			return err
		}
		for _, mode := range migratedModes {
			n, err := tx.CountMigration(ctx, sel, mode)
			if err != nil {
				return err
			}
			rep.Instances += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.FromDigest, rep.ToDigest, rep.Diff = from.Digest, to.Digest, DiffGraphs(from, to)
	if !req.Apply {
		return rep, nil
	}
	// The run is audited once, in the first transaction that moves
	// something (each instance's move is in iu_instance_migration).
	audited := false
	plan := PlanMigration(from, to)
	for _, mode := range migratedModes {
		var after int64
		for {
			var moved, seen int
			var last int64
			err := e.update(ctx, func(tx Tx) (err error) {
				moved, seen, last, err = tx.MigrateInstances(ctx, sel, mode, after, batch, plan,
					InstanceMigration{FromKey: from.Key, ToKey: to.Key, ToDigest: to.Digest, At: TimeOf(e.clock()), By: w.By, Claimed: w.Claimed})
				if err != nil || moved == 0 || audited {
					return err
				}
				return e.audit(ctx, tx, w, AuditMigrate, req.From, "to %s (%s): %d instances selected (actor %q, prefix %q)", to.Key, to.Digest, rep.Instances, req.Actor, req.Prefix)
			})
			if err != nil {
				return rep, err
			}
			audited = audited || moved > 0
			rep.Moved += int64(moved)
			if moved > 0 {
				rep.Batches++
			}
			if progress != nil {
				progress(rep.Moved, rep.Instances)
			}
			if seen < batch {
				break
			}
			after = last
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}
