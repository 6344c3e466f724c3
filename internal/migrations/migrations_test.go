package migrations

import (
	"testing"
	"testing/fstest"
)

func TestNewest(t *testing.T) {
	fsys := fstest.MapFS{
		"00001_init.sql":     {},
		"00003_audit.sql":    {},
		"00002_tokens.sql":   {},
		"notes.txt":          {},
		"x_not_a_number.sql": {},
	}
	if v := Newest(fsys); v != 3 {
		t.Fatalf("Newest = %d, want 3", v)
	}
	if v := Newest(fstest.MapFS{}); v != 0 {
		t.Fatalf("Newest of nothing = %d", v)
	}
}
