package iu_test

import (
	"maps"
	"testing"

	"github.com/iu-engine/iu"
	"pgregory.net/rapid"
)

// row is a membership row as a store keeps it: what a migration compares.
type row struct {
	pos   int
	piece iu.Digest
	edges string
}

func rows(slots []iu.Slot) map[string]row {
	m := make(map[string]row, len(slots))
	for i, s := range slots {
		m[s.ID] = row{i, s.Piece, iu.EdgesText(s.After)}
	}
	return m
}

// An instance with the source's rows, with the plan applied, holds exactly
// the target's rows; and the plan writes no slot the versions have alike.
func TestPlanMigrationMakesTheTargetsRows(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		from := &iu.Template{Key: "tpl:wf:x/v1", Slots: genGraph(t)}
		to := &iu.Template{Key: "tpl:wf:x/v2", Slots: genGraph(t)}
		plan := iu.PlanMigration(from, to)
		if plan.To != to {
			t.Fatalf("the plan is not to the target")
		}
		inst := rows(from.Slots)
		for _, id := range plan.Remove {
			if _, ok := inst[id]; !ok {
				t.Fatalf("removes %q, which the source lacks", id)
			}
			delete(inst, id)
		}
		for _, s := range plan.Put {
			r := row{s.Position, s.Piece, iu.EdgesText(s.After)}
			if inst[s.ID] == r {
				t.Fatalf("writes %q, alike in both versions", s.ID)
			}
			inst[s.ID] = r
		}
		if want := rows(to.Slots); !maps.Equal(inst, want) {
			t.Fatalf("after the plan: %v, want %v", inst, want)
		}
	})
}

// Moving a slot down the declaration order changes its position, which is
// not part of any digest: the plan still writes it, so that an instance
// renders in the target's order.
func TestPlanMigrationWritesPositions(t *testing.T) {
	a, b := iu.PieceID("step", "a"), iu.PieceID("step", "b")
	from := &iu.Template{Slots: []iu.Slot{{ID: "a", Piece: a}, {ID: "b", Piece: b}}}
	to := &iu.Template{Slots: []iu.Slot{{ID: "b", Piece: b}, {ID: "a", Piece: a}}}
	plan := iu.PlanMigration(from, to)
	if len(plan.Remove) != 0 || len(plan.Put) != 2 || plan.Put[0].ID != "b" || plan.Put[0].Position != 0 || plan.Put[1].Position != 1 {
		t.Fatalf("plan for a swap: %+v", plan)
	}
	if same := iu.PlanMigration(from, from); len(same.Put)+len(same.Remove) != 0 {
		t.Fatalf("plan between alike graphs writes: %+v", same)
	}
}
