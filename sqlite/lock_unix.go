//go:build unix

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"syscall"
)

// fileLocker is goose's migration lock for SQLite: an exclusive flock on the
// database file itself. SQLite uses POSIX record locks, which are
// independent of flock on Linux and the BSDs, so this does not interfere
// with SQLite's own locking, and it leaves no lock file behind.
type fileLocker struct {
	path string
	f    *os.File
}

func (l *fileLocker) Lock(ctx context.Context, _ *sql.DB) error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s for migration: %w", l.path, err)
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return fmt.Errorf("lock %s for migration: %w", l.path, err)
		}
	case <-ctx.Done():
		f.Close()
		return ctx.Err()
	}
	l.f = f
	return nil
}

func (l *fileLocker) Unlock(context.Context, *sql.DB) error {
	if l.f == nil {
		return nil
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
	return err
}
