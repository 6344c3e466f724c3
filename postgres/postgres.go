// Package postgres is iu's shared store: one PostgreSQL database (or one
// schema of it) that many iu processes use at once, through
// github.com/jackc/pgx/v5.
//
// Write transactions run at READ COMMITTED. The idempotency key's unique
// index is what serializes workers: a key is claimed by exactly one
// transaction (INSERT ... ON CONFLICT DO NOTHING), and whoever loses reads
// the winner's row once it has committed. Serialization failures and
// deadlocks are reported as iu.ErrRetryable, so the engine runs the
// transaction again.
//
// The schema lives in the first schema of the connection's search_path, so
// a DSN with search_path=NAME keeps a store in its own schema.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

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

// ourTables are the tables of iu's schema: a schema that has any of them but
// no version table was not made by iu, and is left alone.
var ourTables = []string{
	"iu_piece", "iu_piece_collection", "iu_collection_membership",
	"iu_collection_template_instance_lineage", "iu_auto_instantiate_event_log", "iu_gate", "iu_gate_audit",
}

// Defaults of Options.
const (
	DefaultStatementTimeout     = 30 * time.Second
	DefaultLongStatementTimeout = 30 * time.Minute
	DefaultConnectTimeout       = 10 * time.Second
)

// Options tune a Store. The zero value is sensible.
type Options struct {
	// MaxConns bounds the connection pool. The default, 4 per CPU and at
	// least 16, lets 16 concurrent callers each hold a connection: a
	// transaction spends most of its time waiting on round trips and the
	// WAL flush, so callers queueing for connections cost more than idle
	// backends do.
	MaxConns int32
	// StatementTimeout bounds every statement (default 30 s, or the DSN's
	// statement_timeout if it has one; negative: none). A bulk run is many
	// statements, each of one chunk of events, so it needs no more than this.
	StatementTimeout time.Duration
	// LongStatementTimeout bounds the statements whose work grows with the
	// whole store rather than with one request: rolling back an actor and
	// counting orphans (default 30 minutes; negative: none).
	LongStatementTimeout time.Duration
	// ConnectTimeout bounds connecting when the DSN sets no connect_timeout
	// (default 10 s).
	ConnectTimeout time.Duration
	// MustExist refuses to create a store: Open answers iu.ErrNoStore when
	// the schema holds none (commands that only read).
	MustExist bool
}

// Store is an iu.Store on a PostgreSQL database.
type Store struct {
	pool     *pgxpool.Pool
	conn     *pgx.ConnConfig // for ViewFresh: a connection outside the pool
	desc     string
	host     string // host:port, or the socket directory, for messages
	database string
	user     string

	stmtTimeout time.Duration // for messages; 0 if the DSN's setting is not understood
	stmtSetting string        // statement_timeout as sent to the server
	longTimeout time.Duration

	cache    templateCache
	literals literalCache // slots as array literals, per template (literals.go)
	last     lastState    // the gates and template heads read last

	// movingLock is the advisory lock, one per database and schema, that a
	// migration batch holds shared and a deletion of instances (compensate,
	// rollback) exclusive (lifecycle.go).
	movingLock int64
}

var _ iu.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string, as libpq takes), brings iu's schema up to date in the
// first schema of its search_path, and returns the store. It refuses a
// schema whose version is newer than this build knows (iu.ErrSchemaTooNew)
// and one that holds iu's tables without iu's version table
// (iu.ErrNotStore). Errors name the host and database, never the password.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, iu.Errorf(iu.ErrInvalidInput, "invalid PostgreSQL DSN: %s", parseMessage(err))
	}
	s := &Store{
		database: cfg.ConnConfig.Database,
		user:     cfg.ConnConfig.User,
	}
	cc := cfg.ConnConfig
	s.host = hostPort(cc.Host, cc.Port)
	s.desc = describe(cc.Host, cc.Port, cc.Database, cc.RuntimeParams["search_path"])

	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "iu"
	}
	if _, ok := cc.RuntimeParams["jit"]; !ok {
		// iu's statements are short; compiling them costs more than it
		// saves, and misestimates right after a bulk run trigger it.
		cc.RuntimeParams["jit"] = "off"
	}
	// A single emit can be the implicit transaction of one pipeline, with no
	// BEGIN of its own (deferred.go): it must see what committed before it
	// whatever the server's default isolation is.
	cc.RuntimeParams["default_transaction_isolation"] = "read committed"
	// The statement timeout: Options first, then the DSN's own, then 30 s.
	s.stmtTimeout, s.stmtSetting = opt.StatementTimeout, pgInterval(opt.StatementTimeout)
	if v, ok := cc.RuntimeParams["statement_timeout"]; ok && opt.StatementTimeout == 0 {
		s.stmtSetting, s.stmtTimeout = v, parseTimeout(v)
	} else if opt.StatementTimeout == 0 {
		s.stmtTimeout, s.stmtSetting = DefaultStatementTimeout, pgInterval(DefaultStatementTimeout)
	}
	cc.RuntimeParams["statement_timeout"] = s.stmtSetting
	s.longTimeout = opt.LongStatementTimeout
	if s.longTimeout == 0 {
		s.longTimeout = DefaultLongStatementTimeout
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = opt.ConnectTimeout
		if cc.ConnectTimeout <= 0 {
			cc.ConnectTimeout = DefaultConnectTimeout
		}
	}
	cfg.MaxConns = opt.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	s.conn = cc.Copy()

	if err := s.migrate(ctx, opt.MustExist); err != nil {
		return nil, err
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.translate(ctx, err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.translate(ctx, err)
	}
	return s, nil
}

// parseMessage returns pgx's reason for refusing a DSN. pgx already leaves
// the password out of it.
func parseMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "cannot parse") {
		return msg[i+2:]
	}
	return msg
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host // a Unix socket directory
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// describe names a store as a URL without credentials.
func describe(host string, port uint16, database, searchPath string) string {
	q := url.Values{}
	u := url.URL{Scheme: "postgres", Path: "/" + database}
	if strings.HasPrefix(host, "/") {
		q.Set("host", host)
	} else {
		u.Host = fmt.Sprintf("%s:%d", host, port)
	}
	if searchPath != "" {
		q.Set("search_path", searchPath)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// parseTimeout reads a statement_timeout setting: milliseconds, or a number
// with a unit as PostgreSQL takes it ("30s", "2min").
func parseTimeout(v string) time.Duration {
	if ms, err := strconv.Atoi(v); err == nil {
		return time.Duration(ms) * time.Millisecond
	}
	if d, err := time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(v, "min", "m"), " ", "")); err == nil {
		return d
	}
	return 0
}

// pgInterval renders a timeout for SET: milliseconds, 0 meaning none.
func pgInterval(d time.Duration) string {
	if d < 0 {
		return "0"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// migrate checks what the target schema holds and applies pending migrations
// under a session-level advisory lock, so that processes opening a new store
// at once do not race. The lock id is derived from the schema, so stores in
// different schemas of one database migrate independently.
func (s *Store) migrate(ctx context.Context, mustExist bool) error {
	// A migration's work grows with the store (an index built, a column
	// added to a table of millions of rows): it gets the long timeout.
	cc := s.conn.Copy()
	cc.RuntimeParams["statement_timeout"] = pgInterval(s.longTimeout)
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	db.SetMaxOpenConns(2)

	var schema *string
	var database string
	var ours int
	var versioned bool
	err := db.QueryRowContext(ctx, `SELECT current_schema(), current_database(),
		(SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY($1)),
		EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $2)`,
		ourTables, versionTable).Scan(&schema, &database, &ours, &versioned)
	if err != nil {
		return s.translate(ctx, err)
	}
	if schema == nil {
		return iu.Errorf(iu.ErrUnavailable, "%s: no schema of the search_path %q exists: create it first (CREATE SCHEMA ...)",
			s.desc, s.conn.RuntimeParams["search_path"])
	}
	if ours > 0 && !versioned {
		return iu.Errorf(iu.ErrNotStore, "%s: schema %q is not an iu store: it has tables named like iu's but no %s table; use another schema (search_path=...)",
			s.desc, *schema, versionTable)
	}
	if !versioned && mustExist {
		return iu.NoStore(fmt.Sprintf("in schema %q of %s", *schema, s.desc))
	}
	moving := fnv.New64a()
	moving.Write([]byte("iu-moving:" + database + "." + *schema))
	s.movingLock = int64(moving.Sum64())
	h := fnv.New64a()
	h.Write([]byte("iu-migrate:" + database + "." + *schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrationsFS,
		goose.WithTableName(versionTable), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	return migrations.Up(ctx, p, s.desc, func(err error) error { return s.translate(ctx, err) })
}

// Describe names the store without credentials: postgres://host:port/db.
func (s *Store) Describe() string { return s.desc }

// Close closes the pool.
func (s *Store) Close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	return nil
}

// Update runs fn in a READ COMMITTED transaction. fn is safe to run more
// than once, so the transaction may assume the gates and emit modes read
// last instead of waiting for them (see state.go), and is run again,
// reading them first, if they changed. Conflicts between workers are
// settled by unique indexes, not by isolation: see claimEvents.
func (s *Store) Update(ctx context.Context, fn func(iu.Tx) error) error {
	return s.pooled(ctx, true, true, fn)
}

// UpdateOnce runs fn in a READ COMMITTED transaction, once: it reads the
// gates it uses rather than assuming them.
func (s *Store) UpdateOnce(ctx context.Context, fn func(iu.Tx) error) error {
	return s.pooled(ctx, true, false, fn)
}

// LocalPath is "": the store lives on a server.
func (s *Store) LocalPath() string { return "" }

// WriteConcurrency is 2: concurrent transactions overlap their round trips
// and WAL flushes (on a small machine, larger transactions beat more of
// them; raise it with --batch-workers on more cores).
func (s *Store) WriteConcurrency() int { return 2 }

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot for
// every statement, so verify's reads agree with each other.
func (s *Store) View(ctx context.Context, fn func(iu.Tx) error) error {
	return s.pooled(ctx, false, false, fn)
}

// pooled runs fn in a transaction on a pooled connection. One that may
// speculate and finds its assumed state stale runs again, reading first
// (state.go).
func (s *Store) pooled(ctx context.Context, write, speculate bool, fn func(iu.Tx) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.translate(ctx, err)
	}
	// A connection left inside a transaction or broken is closed by the
	// pool on release rather than reused.
	defer c.Release()
	err = s.run(ctx, c.Conn(), write, speculate, func(t *tx) error { return fn(t) })
	if speculate && errors.Is(err, errStale) {
		err = s.run(ctx, c.Conn(), write, false, func(t *tx) error { return fn(t) })
	}
	return err
}

// viewAt runs fn like View, on a pooled connection, as of a snapshot that
// another transaction, still open, exported.
func (s *Store) viewAt(ctx context.Context, snapshot string, fn func(*tx) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.translate(ctx, err)
	}
	defer c.Release()
	return s.run(ctx, c.Conn(), false, false, func(t *tx) error {
		t.hold(queued{sql: "SET TRANSACTION SNAPSHOT " + quoteLiteral(snapshot)})
		return fn(t)
	})
}

// ViewFresh runs fn like View on a connection of its own, opened for this
// call and closed after it: the durability check after a bulk run.
func (s *Store) ViewFresh(ctx context.Context, fn func(iu.Tx) error) error {
	c, err := pgx.ConnectConfig(ctx, s.conn.Copy())
	if err != nil {
		return s.translate(ctx, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	return s.run(ctx, c, false, false, func(t *tx) error { return fn(t) })
}

// quoteLiteral quotes s as an SQL string literal, for the statements that
// take no parameters (with standard_conforming_strings, on by default
// since PostgreSQL 9.1, a backslash is an ordinary character).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
