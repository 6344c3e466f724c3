//go:build !unix

package sqlite

import (
	"context"
	"time"
)

// fileLock does nothing where flock is missing: SQLite's own locking still
// keeps each migration atomic and serializes writers, without the turns
// (see lock_unix.go).
type fileLock struct{}

func openFileLock(string) (*fileLock, error) { return &fileLock{}, nil }

func (*fileLock) take(context.Context, time.Time) (bool, error) { return true, nil }
func (*fileLock) give()                                         {}
func (*fileLock) close() error                                  { return nil }
