package sqlite_test

import (
	"context"
	"database/sql"
	"os"
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
		DownTo: func(t *testing.T, s iu.Store, version int64) {
			t.Helper()
			if err := sqlite.DownTo(context.Background(), s.LocalPath(), version); err != nil {
				t.Fatalf("down to %d: %v", version, err)
			}
		},
		Blank: func(t *testing.T) storetest.Location {
			path := filepath.Join(t.TempDir(), "iu.db")
			return storetest.Location{
				Exec: func(query string) error {
					db, err := sql.Open("sqlite", path)
					if err != nil {
						return err
					}
					defer db.Close()
					_, err = db.Exec(query)
					return err
				},
				Open: func(mustExist bool) (iu.Store, error) {
					s, err := sqlite.Open(context.Background(), path, sqlite.Options{MustExist: mustExist})
					if err == nil {
						t.Cleanup(func() { s.Close() })
					}
					return s, err
				},
			}
		},
	}
}

func TestConformance(t *testing.T) {
	storetest.Exercise(t, harness())
}

// A new store, and the WAL beside it, are readable by their owner alone:
// they hold the events' data and the tokens' hashes. An existing file keeps
// its mode.
func TestNewStoreIsPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "iu.db")
	s := open(t, path)
	if _, err := iu.NewEngine(s).SetGates(context.Background(), iu.GateChange{iu.GateComposer: true}, "tester"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want none for group and others", filepath.Base(f), fi.Mode().Perm())
		}
	}
	shared := filepath.Join(dir, "shared.db")
	if err := os.WriteFile(shared, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	open(t, shared)
	if fi, err := os.Stat(shared); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("an existing store's mode changed: %v %v", fi.Mode().Perm(), err)
	}
}
