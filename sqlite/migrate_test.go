package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/iu-engine/iu/sqlite"
)

// Migration 5 rebuilds the event log to widen its status CHECK (SQLite
// cannot alter one in place): the rebuilt table keeps every index the
// migrations before it made.
func TestRebuiltEventLogKeepsItsIndexes(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "iu.db"))
	for _, name := range []string{"iu_event_log_actor", "iu_event_log_status"} {
		n, err := sqlite.CountRaw(context.Background(), s, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ? AND tbl_name = 'iu_auto_instantiate_event_log'`, name)
		if err != nil || n != 1 {
			t.Errorf("index %s on the event log: %d, %v", name, n, err)
		}
	}
	n, err := sqlite.CountRaw(context.Background(), s, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'iu_auto_instantiate_event_log' AND name LIKE 'sqlite_autoindex_%'`)
	if err != nil || n != 1 {
		t.Errorf("the UNIQUE index of the idempotency key: %d, %v", n, err)
	}
}
