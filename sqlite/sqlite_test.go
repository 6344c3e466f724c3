package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/sqlite"
	"github.com/iu-engine/iu/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func harness() storetest.Harness {
	return storetest.Harness{
		Open: func(t *testing.T) iu.Store { return open(t, filepath.Join(t.TempDir(), "iu.db")) },
		Exec: func(t *testing.T, s iu.Store, query string) {
			t.Helper()
			if err := sqlite.ExecRaw(context.Background(), s.(*sqlite.Store), query); err != nil {
				t.Fatalf("exec %q: %v", query, err)
			}
		},
		Count: func(t *testing.T, s iu.Store, query string) int64 {
			t.Helper()
			n, err := sqlite.CountRaw(context.Background(), s.(*sqlite.Store), query)
			if err != nil {
				t.Fatalf("count %q: %v", query, err)
			}
			return n
		},
		Reopen: func(t *testing.T, s iu.Store) iu.Store { return open(t, s.LocalPath()) },
	}
}

func TestConformance(t *testing.T) {
	storetest.Exercise(t, harness())
}
