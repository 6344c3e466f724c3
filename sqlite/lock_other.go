//go:build !unix

package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// fileLocker does nothing where flock is missing; SQLite's own locking
// still keeps each migration atomic.
type fileLocker struct{ path string }

func (l *fileLocker) Lock(context.Context, *sql.DB) error   { return nil }
func (l *fileLocker) Unlock(context.Context, *sql.DB) error { return nil }

// writerTurn is SQLite's own locking alone where flock is missing.
type writerTurn struct{}

func openWriterTurn(string) (*writerTurn, error) { return &writerTurn{}, nil }

func (*writerTurn) take(context.Context, time.Time) (bool, error) { return true, nil }
func (*writerTurn) give()                                         {}
func (*writerTurn) close() error                                  { return nil }
