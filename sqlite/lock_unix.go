//go:build unix

package sqlite

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// fileLock is an exclusive flock on the database file itself. SQLite uses
// POSIX record locks, which are independent of flock on Linux and the BSDs,
// so it does not interfere with SQLite's own locking, and it leaves no lock
// file behind. It serves twice:
//
//   - opening a store: one process at a time looks at, sets up and migrates
//     the file (see migrate);
//   - writing: writers of different processes take turns, holding it around
//     each write transaction. SQLite's own busy handler polls with sleeps of
//     up to 100 ms, and a process that commits without pause takes the lock
//     again between two polls of another, so a waiting writer (an operator
//     closing a gate from the command line while iu serve takes events)
//     waited for seconds. A process blocked in flock is woken as soon as the
//     lock is free.
type fileLock struct {
	f  *os.File
	mu sync.Mutex // held while a flock is pending in a goroutine
}

// openFileLock opens the database file, creating it if need be: a new
// store is readable by its owner alone (it holds the events' data and the
// tokens' hashes), and SQLite gives its -wal and -shm files the same mode.
// An existing file keeps the mode it has.
func openFileLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &fileLock{f: f}, nil
}

// take waits for the lock until ctx ends or deadline (none if zero). It
// reports whether it has the lock; false with a nil error is the deadline.
func (l *fileLock) take(ctx context.Context, deadline time.Time) (bool, error) {
	l.mu.Lock()
	fd := int(l.f.Fd())
	err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		l.mu.Unlock()
		return true, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		l.mu.Unlock()
		return false, err
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(fd, syscall.LOCK_EX) }()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case err := <-done:
		l.mu.Unlock()
		return err == nil, err
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = nil
	}
	// The flock cannot be interrupted: give the lock back once it comes,
	// and take no other until then.
	go func() {
		if <-done == nil {
			syscall.Flock(fd, syscall.LOCK_UN)
		}
		l.mu.Unlock()
	}()
	return false, err
}

func (l *fileLock) give() { syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) }

func (l *fileLock) close() error { return l.f.Close() }
