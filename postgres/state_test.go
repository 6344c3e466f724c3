package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/postgres"
)

// A repeatable transaction assumes the gates its store read last, and when
// another process has changed them since, it is run again on what is
// stored: nothing done on the assumption is committed, even writes that
// were only held back until COMMIT.
func TestRepeatableTransactionRunsAgainOnStaleGates(t *testing.T) {
	dsn := freshSchema(t)
	s := open(t, dsn)
	ctx := context.Background()
	e := iu.NewEngine(s)
	tpl := template8(t)
	if _, err := e.PublishTemplates(ctx, []*iu.Template{tpl}, "tester"); err != nil {
		t.Fatal(err)
	}
	on := iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}
	if _, err := e.SetGates(ctx, on, "tester"); err != nil {
		t.Fatal(err)
	}
	other := iu.NewEngine(open(t, dsn)) // another process

	// seen runs fn's transaction and returns the gates of each run.
	seen := func(write func(iu.Tx, iu.Gates) error) []iu.Gates {
		t.Helper()
		var runs []iu.Gates
		err := s.Update(ctx, func(tx iu.Tx) error {
			g, err := tx.Gates(ctx)
			if err != nil {
				return err
			}
			runs = append(runs, g)
			if write != nil {
				return write(tx, g)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return runs
	}
	bothOn := iu.Gates{ComposerEnabled: true, AutoInstantiateEnabled: true}
	if runs := seen(nil); len(runs) != 1 || runs[0] != bothOn {
		t.Fatalf("first transaction: runs %+v", runs)
	}
	if runs := seen(nil); len(runs) != 1 || runs[0] != bothOn {
		t.Fatalf("nothing changed: runs %+v, want one", runs)
	}

	// A held-back write on a stale assumption: an instance, sent only with
	// COMMIT.
	instance := func(tx iu.Tx, g iu.Gates) error {
		if !g.AutoInstantiateEnabled {
			return nil
		}
		return tx.InsertInstances(ctx, []iu.Instance{{
			Key: "tpl-inst:auto:stale-1", Title: tpl.Title, TemplateKey: tpl.Key, TemplateDigest: tpl.Digest, Digest: tpl.Digest,
			Actor: "stale", Mode: iu.ModeAuto, Event: &iu.Event{ID: "e1", Source: "test", Type: "test"}, Slots: tpl.Slots,
			CreatedAt: iu.TimeOf(time.Now()),
		}})
	}
	if _, err := other.SetGates(ctx, iu.GateChange{iu.GateAutoInstantiate: false}, "other"); err != nil {
		t.Fatal(err)
	}
	runs := seen(instance)
	closed := iu.Gates{ComposerEnabled: true}
	if len(runs) != 2 || runs[0] != bothOn || runs[1] != closed {
		t.Fatalf("after another process closed a gate: runs %+v, want the assumed state and then the stored one", runs)
	}
	if n, err := postgres.CountRaw(ctx, s, "SELECT count(*) FROM iu_piece_collection WHERE collection_key = 'tpl-inst:auto:stale-1'"); err != nil || n != 0 {
		t.Fatalf("the write made on the stale assumption was committed: %d rows, %v", n, err)
	}

	// A write sent before the check's answer is read (SetGates goes out at
	// once, in the check's round trip) is rolled back too.
	if _, err := other.SetGates(ctx, iu.GateChange{iu.GateAutoInstantiate: true}, "other"); err != nil {
		t.Fatal(err)
	}
	runs = seen(func(tx iu.Tx, g iu.Gates) error {
		if g.AutoInstantiateEnabled {
			return nil
		}
		return tx.SetGates(ctx, iu.GateChange{iu.GateComposer: false}, iu.Who{By: "stale"}, time.Now().UTC())
	})
	if len(runs) != 2 || runs[0] != closed || runs[1] != bothOn {
		t.Fatalf("after another process opened the gate: runs %+v", runs)
	}
	if g, err := e.Gates(ctx); err != nil || g != bothOn {
		t.Fatalf("gates %+v, %v: the write made on the stale assumption was committed", g, err)
	}
}
