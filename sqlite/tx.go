package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

// timeFormat is how every time is stored: fixed width, so that text order
// is time order and the views can compare with strftime('%Y-%m-%dT%H:%M:%fZ').
const timeFormat = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// tx is an iu.Tx on a SQLite transaction.
type tx struct {
	s      *Store
	rtx    *sql.Tx // read transactions; writes use the store's writer connection
	write  bool
	nextID int64 // next free collection_id; 0 until first needed

	templateIDs map[string]int64 // template key -> collection_id, for this transaction
}

// allocIDs reserves n collection ids and returns the first. Safe because a
// write transaction holds SQLite's write lock from BEGIN IMMEDIATE on.
func (t *tx) allocIDs(ctx context.Context, n int) (int64, error) {
	if t.nextID == 0 {
		var max int64
		if err := t.queryRow(ctx, `SELECT coalesce(max(collection_id), 0) FROM iu_piece_collection`, nil, &max); err != nil {
			return 0, err
		}
		t.nextID = max + 1
	}
	first := t.nextID
	t.nextID += int64(n)
	return first, nil
}

// exec runs a write statement.
func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !t.write {
		return nil, iu.ErrWriteInView
	}
	st, err := t.s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return nil, t.s.translate(err)
	}
	return res, nil
}

func (t *tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var rows *sql.Rows
	var err error
	if t.write {
		var st *sql.Stmt
		if st, err = t.s.stmt(ctx, query); err != nil {
			return nil, err
		}
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.rtx.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, t.s.translate(err)
	}
	return rows, nil
}

func (t *tx) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return t.s.translate(err)
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return t.s.translate(err)
	}
	return rows.Close()
}

// maxRowsPerInsert bounds a multi-row INSERT: a few hundred rows per
// statement amortizes the statement cost without huge statements.
const maxRowsPerInsert = 128

// insertRows inserts len(args)/ncol rows with multi-row INSERT statements:
// head is "INSERT INTO t (a, b) VALUES", tail is appended (e.g. an ON
// CONFLICT clause).
func (t *tx) insertRows(ctx context.Context, head string, ncol int, tail string, args []any) error {
	rows := len(args) / ncol
	for off := 0; off < rows; off += maxRowsPerInsert {
		n := min(maxRowsPerInsert, rows-off)
		if _, err := t.exec(ctx, insertSQL(head, ncol, n, tail), args[off*ncol:(off+n)*ncol]...); err != nil {
			return err
		}
	}
	return nil
}

func insertSQL(head string, ncol, n int, tail string) string {
	var b strings.Builder
	row := "(" + strings.Repeat("?, ", ncol-1) + "?)"
	b.Grow(len(head) + n*(len(row)+2) + len(tail))
	b.WriteString(head)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(row)
	}
	b.WriteString(tail)
	return b.String()
}

// inList returns "(?, ?, ...)" for n values.
func inList(n int) string { return "(" + strings.Repeat("?, ", n-1) + "?)" }
