// Package migrations holds what the stores share about their embedded
// schema migrations (goose files named NNNNN_name.sql, numbered alike in
// both dialects).
package migrations

import (
	"io/fs"
	"strconv"
	"strings"
)

// Newest returns the highest version among the .sql files of fsys's root:
// the schema version a build knows, which a store must be at to be ready.
func Newest(fsys fs.FS) int64 {
	var v int64
	names, _ := fs.Glob(fsys, "*.sql")
	for _, n := range names {
		num, _, _ := strings.Cut(n, "_")
		if x, err := strconv.ParseInt(num, 10, 64); err == nil && x > v {
			v = x
		}
	}
	return v
}
