package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iu-engine/iu"
)

// A transaction costs its round trips more than its statements: sixteen
// single-event transactions at once on two cores spend most of their time
// waiting for their turn on the wire. So tx does not send BEGIN on its own,
// and writes whose answer nobody waits for are held back: both go out in the
// same pipeline as the next statement that needs an answer, or as COMMIT.
// A single emit is one round trip and one statement once the store has read
// the gates: the claim with its instance, committed at the pipeline's end
// (state.go, deferred.go).

// queued is a statement waiting for the next round trip.
type queued struct {
	sql  string
	args []any
	// fail translates this statement's error; nil means the usual
	// translation.
	fail func(error) error
	// read, if set, takes the statement's rows (and closes them).
	read func(context.Context, pgx.Rows) error
}

// prelude takes the statements that must run before the next one: BEGIN if
// it has not been sent, then the held-back writes.
func (t *tx) prelude() []queued {
	var q []queued
	if t.begin != "" {
		q = append(q, queued{sql: t.begin})
		t.begin = ""
		if t.expect != nil {
			q = append(q, t.check())
		}
	}
	q = append(q, t.pending...)
	t.pending = nil
	return q
}

// hold queues a write to go out with the next round trip.
func (t *tx) hold(q queued) { t.pending = append(t.pending, q) }

func (t *tx) failed(ctx context.Context, q queued, err error) error {
	if q.fail != nil {
		return q.fail(t.s.translate(ctx, err))
	}
	return t.s.translate(ctx, err)
}

// batch sends the prelude and b in one round trip and returns the results
// positioned at b's first statement. The caller reads b's results and closes
// them.
func (t *tx) batch(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	if err := t.undefer(ctx); err != nil {
		return nil, err
	}
	pre := t.prelude()
	nb := b
	if len(pre) > 0 {
		nb = &pgx.Batch{}
		for _, q := range pre {
			nb.Queue(q.sql, q.args...)
		}
		for _, q := range b.QueuedQueries {
			nb.Queue(q.SQL, q.Arguments...)
		}
	}
	br := t.c.SendBatch(ctx, nb)
	for _, q := range pre {
		if err := t.result(ctx, br, q); err != nil {
			br.Close()
			return nil, err
		}
	}
	return br, nil
}

// result takes the result of q, the next statement of br.
func (t *tx) result(ctx context.Context, br pgx.BatchResults, q queued) error {
	if q.read == nil {
		if _, err := br.Exec(); err != nil {
			return t.failed(ctx, q, err)
		}
		return nil
	}
	rows, err := br.Query()
	if err != nil {
		if rows != nil {
			rows.Close()
		}
		return t.failed(ctx, q, err)
	}
	return q.read(ctx, rows)
}

// flush sends whatever is waiting, for statements that cannot share a
// pipeline (COPY).
func (t *tx) flush(ctx context.Context) error {
	if t.begin == "" && len(t.pending) == 0 {
		return nil
	}
	br, err := t.batch(ctx, &pgx.Batch{})
	if err != nil {
		return err
	}
	return t.s.translate(ctx, br.Close())
}

// query runs query after the held statements, in the same round trip. A
// leading pgx.QueryExecMode in args chooses how query is planned; a batch
// cannot carry one, so the held statements then go first, on their own.
func (t *tx) query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	if err := t.undefer(ctx); err != nil {
		return nil, err
	}
	if len(args) > 0 {
		if _, ok := args[0].(pgx.QueryExecMode); ok {
			if err := t.flush(ctx); err != nil {
				return nil, err
			}
		}
	}
	if t.begin == "" && len(t.pending) == 0 {
		rows, err := t.c.Query(ctx, query, args...)
		if err != nil {
			return nil, t.s.translate(ctx, err)
		}
		return rows, nil
	}
	b := &pgx.Batch{}
	b.Queue(query, args...)
	br, err := t.batch(ctx, b)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, t.s.translate(ctx, err)
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRows are the rows of a batch's last statement; closing them closes
// the batch.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (t *tx) exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	if !t.write {
		return pgconn.CommandTag{}, iu.ErrWriteInView
	}
	b := &pgx.Batch{}
	b.Queue(query, args...)
	br, err := t.batch(ctx, b)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, t.s.translate(ctx, err)
}

func (t *tx) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return t.s.translate(ctx, err)
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return t.s.translate(ctx, err)
	}
	rows.Close()
	return t.s.translate(ctx, rows.Err())
}

// sendBatch runs b after the prelude, in one round trip, and returns the
// first error.
func (t *tx) sendBatch(ctx context.Context, b *pgx.Batch) error {
	if !t.write {
		return iu.ErrWriteInView
	}
	br, err := t.batch(ctx, b)
	if err != nil {
		return err
	}
	return t.s.translate(ctx, br.Close())
}

// commit sends the held-back writes and COMMIT in one round trip. A
// transaction that never sent anything has nothing to commit. If the
// connection breaks on the way, whether the transaction committed is not
// known, and the error says so.
func (t *tx) commit(ctx context.Context) error {
	if t.deferred != nil {
		if len(t.pending) == 0 {
			return t.commitDeferred(ctx)
		}
		if err := t.undefer(ctx); err != nil {
			return err
		}
	}
	if t.begin != "" && t.expect == nil {
		t.pending = nil
		return nil
	}
	if t.begin != "" && t.expect != nil && len(t.pending) > 0 {
		// The server would run the writes and COMMIT after the state check
		// whatever the check finds: check first, on its own.
		held := t.pending
		t.pending = nil
		if err := t.flush(ctx); err != nil {
			return err
		}
		t.pending = held
	}
	pre := t.prelude()
	b := &pgx.Batch{}
	for _, q := range pre {
		b.Queue(q.sql, q.args...)
	}
	b.Queue("COMMIT")
	br := t.c.SendBatch(ctx, b)
	defer br.Close()
	for _, q := range append(pre, queued{sql: "COMMIT"}) {
		if q.read != nil {
			if err := t.result(ctx, br, q); err != nil {
				return err
			}
			continue
		}
		if _, err := br.Exec(); err != nil {
			if isConnLost(err) && ctx.Err() == nil {
				return t.commitFailed(ctx, err)
			}
			return t.failed(ctx, q, err)
		}
	}
	return t.s.translate(ctx, br.Close())
}

// commitFailed is the error of a round trip holding COMMIT that failed.
func (t *tx) commitFailed(ctx context.Context, err error) error {
	if isConnLost(err) && ctx.Err() == nil {
		return iu.Errorf(iu.ErrUnavailable, "lost the connection to PostgreSQL at %s, database %q, while committing: whether the transaction committed is unknown (%v)",
			t.s.host, t.s.database, rootCause(err))
	}
	return t.s.translate(ctx, err)
}

// rollback ends the transaction, dropping held-back writes. It runs even when
// ctx is cancelled; if it fails, the connection is closed, which rolls back
// on the server.
func (t *tx) rollback(ctx context.Context) {
	t.pending, t.deferred = nil, nil
	if t.begin != "" || t.ended || t.c.IsClosed() {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := t.c.Exec(rctx, "ROLLBACK"); err != nil {
		t.c.Close(rctx)
	}
}

const (
	beginWrite = "BEGIN ISOLATION LEVEL READ COMMITTED"
	beginRead  = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
)

// run calls fn in a transaction on c, begun lazily with begin, and commits
// when fn succeeds and the transaction writes; it rolls back otherwise.
// A write transaction that may speculate assumes the state read last (see
// state.go).
func (s *Store) run(ctx context.Context, c *pgx.Conn, write, speculate bool, fn func(*tx) error) error {
	t := &tx{s: s, c: c, write: write, speculate: speculate, begin: beginRead}
	if write {
		t.begin = beginWrite
	}
	done := false
	defer func() {
		for _, f := range t.atEnd {
			f()
		}
		if !done {
			t.rollback(ctx)
		}
	}()
	if err := fn(t); err != nil {
		if t.expect != nil && t.begin != "" {
			// fn gave up on a state it assumed and nobody has checked yet
			// (a closed gate, say): check it before the answer goes out.
			t.pending, t.deferred = nil, nil
			if cerr := t.flush(ctx); cerr != nil {
				return cerr
			}
		}
		return err
	}
	if !write {
		return nil
	}
	done = true
	if err := t.commit(ctx); err != nil {
		t.rollback(ctx)
		return err
	}
	if t.changedState {
		// This transaction changed the gates or an emit mode: the state
		// read last is not the stored one, and the next transaction must
		// not assume it.
		s.last.set(nil)
	}
	return nil
}
