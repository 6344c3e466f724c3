package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/iu-engine/iu"
)

// What opening a store does to a place, on every backend: a place with no
// store is refused when the store must exist and made a store otherwise;
// a schema newer than this build is refused; tables that look like iu's
// but were not made by iu are refused and left alone; and several openers
// at once migrate a new place once.

var _ = register("OpenRefusesAMissingStoreWhenItMustExist", func(t *testing.T, h Harness) {
	loc := h.Blank(t)
	if _, err := loc.Open(true); !errors.Is(err, iu.ErrNoStore) || iu.ErrorCode(err) != iu.CodeNotFound || !strings.Contains(err.Error(), "no iu store") {
		t.Fatalf("open of nothing, must exist: %v, want ErrNoStore", err)
	}
	s, err := loc.Open(false)
	if err != nil {
		t.Fatalf("open of nothing: %v", err)
	}
	s.Close()
	if _, err := loc.Open(true); err != nil {
		t.Fatalf("open of the store made, must exist: %v", err)
	}
})

var _ = register("OpenRefusesANewerSchema", func(t *testing.T, h Harness) {
	loc := h.Blank(t)
	s, err := loc.Open(false)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := loc.Exec(`INSERT INTO iu_schema_version (version_id, is_applied) VALUES (99999, true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := loc.Open(false); !errors.Is(err, iu.ErrSchemaTooNew) || !strings.Contains(err.Error(), "99999") || !strings.Contains(err.Error(), "upgrade iu") {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew naming version 99999", err)
	}
})

var _ = register("OpenRefusesForeignTablesAndLeavesThem", func(t *testing.T, h Harness) {
	loc := h.Blank(t)
	if err := loc.Exec(`CREATE TABLE iu_gate (name text)`); err != nil {
		t.Fatal(err)
	}
	if err := loc.Exec(`INSERT INTO iu_gate (name) VALUES ('theirs')`); err != nil {
		t.Fatal(err)
	}
	if _, err := loc.Open(false); !errors.Is(err, iu.ErrNotStore) || !strings.Contains(err.Error(), "not an iu store") {
		t.Fatalf("open of a place with a stray iu_gate table: %v, want ErrNotStore", err)
	}
	// Left alone: their table as it was, no version table of iu's.
	if err := loc.Exec(`DELETE FROM iu_gate WHERE name = 'theirs' AND name IS NOT NULL`); err != nil {
		t.Fatalf("their table was changed: %v", err)
	}
	if err := loc.Exec(`SELECT count(*) FROM iu_schema_version`); err == nil {
		t.Fatal("the refused place got iu's version table")
	}
})

var _ = register("OpenConcurrentlyMigratesOnce", func(t *testing.T, h Harness) {
	loc := h.Blank(t)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]iu.Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = loc.Open(false)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("opener %d of %d: %v", i, n, err)
		}
	}
	v := &env{t: t, h: h, s: stores[0], e: iu.NewEngine(stores[0]), ctx: context.Background()}
	if twice := v.count(`SELECT count(*) - count(DISTINCT version_id) FROM iu_schema_version WHERE version_id > 0`); twice != 0 {
		t.Fatalf("%d migrations were applied more than once", twice)
	}
	// And the store works from every handle.
	for i, s := range stores {
		if _, err := iu.NewEngine(s).Gates(v.ctx); err != nil {
			t.Fatalf("handle %d: %v", i, err)
		}
	}
})
