//go:build unix

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
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

// writerTurn queues write transactions across processes: an exclusive flock
// on the database file, held around each one. SQLite's own busy handler
// polls with sleeps of up to 100 ms, and a process that commits without
// pause takes the lock again between two polls of another, so a waiting
// writer (an operator closing a gate from the command line while iu serve
// takes events) could wait for seconds. A process blocked in flock is woken
// as soon as the lock is free.
type writerTurn struct {
	f  *os.File
	mu sync.Mutex // held while a flock is pending in a goroutine
}

func openWriterTurn(path string) (*writerTurn, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &writerTurn{f: f}, nil
}

// take waits for the turn until deadline or ctx ends.
func (w *writerTurn) take(ctx context.Context, deadline time.Time) (bool, error) {
	w.mu.Lock()
	fd := int(w.f.Fd())
	err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		w.mu.Unlock()
		return true, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		w.mu.Unlock()
		return false, err
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(fd, syscall.LOCK_EX) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case err := <-done:
		w.mu.Unlock()
		return err == nil, err
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
	}
	// The flock cannot be interrupted: give the turn back once it comes,
	// and take no other until then.
	go func() {
		if <-done == nil {
			syscall.Flock(fd, syscall.LOCK_UN)
		}
		w.mu.Unlock()
	}()
	return false, err
}

func (w *writerTurn) give() { syscall.Flock(int(w.f.Fd()), syscall.LOCK_UN) }

func (w *writerTurn) close() error { return w.f.Close() }
