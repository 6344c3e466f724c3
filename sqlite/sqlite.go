// Package sqlite is iu's embedded store: one SQLite file, opened with
// modernc.org/sqlite (pure Go, no cgo).
//
// The file is in WAL mode with synchronous=FULL, so a committed instance
// survives power loss, and foreign keys are on. Within one process all writes
// go through a single connection; across processes writers take turns on a
// flock of the file (lock_unix.go), and BEGIN IMMEDIATE with a busy timeout
// makes them queue instead of failing, so several iu processes can share one
// file.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsFS is the migrations directory, and knownVersion the newest
// migration in it: the schema version this build knows.
var (
	migrationsFS, _ = fs.Sub(migrationFiles, "migrations")
	knownVersion    = migrations.Newest(migrationsFS)
)

// versionTable is goose's bookkeeping table; its presence marks an iu store.
const versionTable = "iu_schema_version"

// Options tune a Store. The zero value is sensible.
type Options struct {
	// BusyWait bounds how long a write waits for another process that holds
	// the write lock before ErrStoreBusy (default 2 minutes: a large bulk in
	// another process holds the lock that long).
	BusyWait time.Duration
	// Readers is the size of the read pool (default 4).
	Readers int
	// MustExist refuses to create a store: Open answers iu.ErrNoStore
	// where there is none (commands that only read).
	MustExist bool
}

// Store is an iu.Store on one SQLite file.
type Store struct {
	path      string
	mustExist bool
	w         *sql.DB // the single writer connection
	r         *sql.DB // readers
	busyWait  time.Duration

	// Writes go through one dedicated connection, with BEGIN IMMEDIATE and
	// COMMIT issued as statements, so that prepared statements live as long
	// as the connection instead of one transaction.
	wmu   sync.Mutex // serializes write transactions in this process; guards the fields below
	wconn *sql.Conn
	stmts map[string]*sql.Stmt
	turn  *fileLock // writers of different processes take turns (lock_unix.go)

	ckpt *checkpointer
}

var _ iu.Store = (*Store)(nil)

func dsn(path string, params ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	for _, p := range params {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the iu store at path and brings its schema
// up to date. It refuses a file that is not an iu store or whose schema is
// newer than this build knows.
func Open(ctx context.Context, path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, iu.Errorf(iu.ErrInvalidInput, "sqlite: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, iu.Errorf(iu.ErrNotStore, "%s is a directory, not an iu store", path)
	} else if err != nil && opt.MustExist {
		return nil, iu.NoStore("at " + path)
	}
	s := &Store{path: abs, busyWait: opt.BusyWait, mustExist: opt.MustExist}
	if s.busyWait <= 0 {
		s.busyWait = 2 * time.Minute
	}
	readers := opt.Readers
	if readers <= 0 {
		readers = 4
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	s.w, err = sql.Open("sqlite", dsn(abs, "journal_mode(WAL)", "synchronous(FULL)", "cache_size(-65536)", "wal_autocheckpoint(0)", "temp_store(MEMORY)", "journal_size_limit(268435456)"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.stmts = make(map[string]*sql.Stmt)
	if s.wconn, err = s.w.Conn(ctx); err != nil {
		s.w.Close()
		return nil, s.translate(err)
	}
	s.r, err = sql.Open("sqlite", dsn(abs, "query_only(1)"))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, s.translate(err)
	}
	if s.turn, err = openFileLock(abs); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if s.ckpt, err = startCheckpointer(abs, &s.wmu); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// migrate checks what the file is and applies pending migrations under an
// exclusive file lock, so that processes opening a new store at once do not
// race.
func (s *Store) migrate(ctx context.Context) error {
	// One process at a time looks at, sets up and migrates a file: processes
	// opening a new store at the same moment would otherwise race to switch
	// it to WAL mode, which takes an exclusive lock that SQLite's busy
	// handler does not wait for.
	lock, err := openFileLock(s.path)
	if err != nil {
		return iu.Errorf(iu.ErrUnavailable, "cannot open %s: %v", s.path, err)
	}
	defer lock.close()
	if _, err := lock.take(ctx, time.Time{}); err != nil {
		return iu.Errorf(iu.ErrUnavailable, "cannot open %s: lock it for migration: %v", s.path, err)
	}
	defer lock.give()
	// Look before touching: a file that is not ours must not be switched to
	// WAL mode or given a version table.
	check, err := sql.Open("sqlite", dsn(s.path))
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	err = s.checkIsStore(ctx, check)
	check.Close()
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn(s.path, "synchronous(FULL)"))
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A new file gets 8 KiB pages before anything is written (a page size
	// is fixed once a WAL database exists). Larger pages split less on iu's
	// append-heavy tables, but every commit writes each page it touched to
	// the WAL, and the two UNIQUE keys (idempotency key, instance key) are
	// hashes that touch a page per event: 8 KiB served small group commits
	// best (16 KiB wrote twice the bytes) and bulk as well as 16 KiB.
	for _, p := range []string{"PRAGMA page_size = 8192", "PRAGMA journal_mode = WAL"} {
		if _, err := db.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("sqlite: %s: %s: %w", s.path, p, s.translate(err))
		}
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrationsFS,
		goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	return migrations.Up(ctx, p, s.path, s.translate)
}

// checkIsStore refuses files that are not SQLite databases, and SQLite
// databases that hold other tables but no iu schema.
func (s *Store) checkIsStore(ctx context.Context, db *sql.DB) error {
	var tables, ours int
	err := db.QueryRowContext(ctx,
		`SELECT count(*), count(*) FILTER (WHERE name = ?) FROM sqlite_master WHERE type = 'table'`, versionTable,
	).Scan(&tables, &ours)
	if err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_NOTADB {
			return iu.Errorf(iu.ErrNotStore, "%s is not an iu store: not a SQLite database", s.path)
		}
		return s.translate(err)
	}
	if tables > 0 && ours == 0 {
		return iu.Errorf(iu.ErrNotStore, "%s is not an iu store: it is a SQLite database with other tables", s.path)
	}
	if tables == 0 && s.mustExist {
		return iu.NoStore("at " + s.path)
	}
	return nil
}

// Describe names the store.
func (s *Store) Describe() string { return "sqlite:" + s.path }

// LocalPath returns the absolute path of the database file.
func (s *Store) LocalPath() string { return s.path }

// WriteConcurrency is 1: SQLite has one writer, and a second write
// transaction would only wait for the first.
func (s *Store) WriteConcurrency() int { return 1 }

// Close closes the store.
func (s *Store) Close() error {
	var errs []error
	s.wmu.Lock()
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	s.stmts = nil
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	s.wmu.Unlock()
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
		s.ckpt = nil
	}
	if s.turn != nil {
		errs = append(errs, s.turn.close())
		s.turn = nil
	}
	return errors.Join(errs...)
}

// UpdateOnce runs fn in a write transaction (BEGIN IMMEDIATE). It waits up
// to Options.BusyWait for another process's write lock.
func (s *Store) UpdateOnce(ctx context.Context, fn func(iu.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wconn == nil {
		return iu.Errorf(iu.ErrUnavailable, "%s: store is closed", s.path)
	}
	deadline := time.Now().Add(s.busyWait)
	taken, err := s.turn.take(ctx, deadline)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if taken {
		defer s.turn.give()
	} else if err == nil {
		return iu.Errorf(iu.ErrStoreBusy, "%s is busy: another process has held its write lock for over %s; try again later", s.path, s.busyWait)
	}
	// Without the turn (flock failed), SQLite's own lock still serializes.
	for {
		_, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			break
		}
		if !isBusy(err) {
			return s.translate(err)
		}
		if time.Now().After(deadline) {
			return iu.Errorf(iu.ErrStoreBusy, "%s is busy: another process has held its write lock for over %s; try again later", s.path, s.busyWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// COMMIT and ROLLBACK must run even if ctx was cancelled meanwhile.
	end := context.WithoutCancel(ctx)
	if err := fn(&tx{s: s, write: true}); err != nil {
		s.wconn.ExecContext(end, "ROLLBACK")
		return err
	}
	if err := ctx.Err(); err != nil {
		s.wconn.ExecContext(end, "ROLLBACK")
		return err
	}
	if _, err := s.wconn.ExecContext(end, "COMMIT"); err != nil {
		s.wconn.ExecContext(end, "ROLLBACK")
		return s.translate(err)
	}
	s.ckpt.committed()
	return nil
}

// Update is UpdateOnce: a SQLite transaction holds the write lock from its
// start, so it never has to run fn again.
func (s *Store) Update(ctx context.Context, fn func(iu.Tx) error) error { return s.UpdateOnce(ctx, fn) }

// stmt returns a statement prepared on the writer connection, kept for the
// life of the store. Callers hold wmu.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.wconn.PrepareContext(ctx, query)
	if err != nil {
		return nil, s.translate(err)
	}
	s.stmts[query] = st
	return st, nil
}

// View runs fn in a read transaction on the read pool.
func (s *Store) View(ctx context.Context, fn func(iu.Tx) error) error {
	return view(ctx, s, s.r, fn)
}

// ViewFresh runs fn on a new connection, opened for this call only.
func (s *Store) ViewFresh(ctx context.Context, fn func(iu.Tx) error) error {
	db, err := sql.Open("sqlite", dsn(s.path, "query_only(1)"))
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return view(ctx, s, db, fn)
}

func view(ctx context.Context, s *Store, db *sql.DB, fn func(iu.Tx) error) error {
	sqlTx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return s.translate(err)
	}
	defer sqlTx.Rollback()
	return fn(&tx{s: s, rtx: sqlTx})
}

func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) &&
		(se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}

// translate turns SQLite's errors into iu's at the boundary.
func (s *Store) translate(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return iu.Errorf(iu.ErrStoreBusy, "%s is busy: %v; try again", s.path, err)
	case sqlite3.SQLITE_NOTADB:
		return iu.Errorf(iu.ErrNotStore, "%s is not an iu store: not a SQLite database", s.path)
	case sqlite3.SQLITE_CANTOPEN:
		return iu.Errorf(iu.ErrUnavailable, "cannot open %s: does the directory exist, and is it writable?", s.path)
	case sqlite3.SQLITE_READONLY:
		return iu.Errorf(iu.ErrUnavailable, "%s is read-only: %v", s.path, err)
	case sqlite3.SQLITE_FULL:
		return iu.Errorf(iu.ErrStoreFull, "%s: disk full: %v", s.path, err)
	}
	return fmt.Errorf("sqlite: %w", err)
}
