//go:build !unix

package sqlite

import (
	"context"
	"database/sql"
)

// fileLocker does nothing where flock is missing; SQLite's own locking
// still keeps each migration atomic.
type fileLocker struct{ path string }

func (l *fileLocker) Lock(context.Context, *sql.DB) error   { return nil }
func (l *fileLocker) Unlock(context.Context, *sql.DB) error { return nil }
