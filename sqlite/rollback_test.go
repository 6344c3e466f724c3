package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/sqlite"
)

// TestRollbackDeletesChunkByChunk: a rollback deletes a chunk of rows per
// statement (one statement over a million instances held its undo journal,
// 2 GiB, in memory); across chunk boundaries it still deletes the actor's
// rows, all of them, and nobody else's.
func TestRollbackDeletesChunkByChunk(t *testing.T) {
	defer sqlite.SetRollbackChunk(3)()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "iu.db"))
	e := iu.NewEngine(s)
	tpls, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PublishTemplates(ctx, tpls, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "tester"); err != nil {
		t.Fatal(err)
	}
	for i := range 14 {
		actor := "doomed"
		if i%7 == 0 {
			actor = "kept"
		}
		ev := iu.Event{ID: fmt.Sprintf("e-%d", i), Source: "test", Type: "t"}
		if _, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: tpls[0].Key, Event: ev, Actor: actor}); err != nil {
			t.Fatal(err)
		}
	}
	// Every instance migrated to v3 and back: two records each, of which a
	// rollback deletes its instances'.
	v3 := publishV3(t, e)
	for _, m := range []iu.MigrateRequest{{From: tpls[0].Key, To: v3.Key}, {From: v3.Key, To: tpls[0].Key}} {
		m.Apply, m.Claimed = true, "tester"
		if rep, err := e.Migrate(ctx, m, nil); err != nil || rep.Moved != 14 {
			t.Fatalf("migrate %s to %s: %+v %v", m.From, m.To, rep, err)
		}
	}
	rep, err := e.Rollback(ctx, "doomed", true)
	if err != nil || rep.LogRows != 12 || rep.Instances != 12 || rep.Memberships != 12*8 {
		t.Fatalf("rollback: %+v %v", rep, err)
	}
	for table, want := range map[string]int64{
		"iu_auto_instantiate_event_log":                          2,
		"iu_collection_template_instance_lineage":                2,
		"iu_piece_collection WHERE collection_kind = 'instance'": 2,
		"iu_instance_migration":                                  2 * 2,
		"iu_collection_membership m JOIN iu_piece_collection c ON c.collection_id = m.collection_id WHERE c.collection_kind = 'instance'": 16,
	} {
		if n, err := sqlite.CountRaw(ctx, s, "SELECT count(*) FROM "+table); err != nil || n != want {
			t.Errorf("%s: %d rows (%v), want %d", table, n, err, want)
		}
	}
	if v, err := e.Verify(ctx, ""); err != nil || !v.OK() || v.Total != 2 {
		t.Fatalf("verify after: %+v %v", v, err)
	}
}
