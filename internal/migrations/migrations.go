// Package migrations holds what the stores share about their embedded
// schema migrations (goose files named NNNNN_name.sql, numbered alike in
// both dialects).
package migrations

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/iu-engine/iu"
	"github.com/pressly/goose/v3"
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

// Up brings the schema at where up to the newest migration p knows,
// refusing a schema newer than that (iu.ErrSchemaTooNew): an older iu must
// not write to a store a newer one has changed. translate turns the
// driver's errors into the store's.
func Up(ctx context.Context, p *goose.Provider, where string, translate func(error) error) error {
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("%s: read schema version: %w", where, translate(err))
	}
	if current > target {
		return iu.Errorf(iu.ErrSchemaTooNew, "%s has schema version %d, newer than this iu knows (%d): upgrade iu", where, current, target)
	}
	if current == target {
		return nil
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("%s: migrate: %w", where, translate(err))
	}
	return nil
}
