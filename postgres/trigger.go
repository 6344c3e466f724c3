package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iu-engine/iu"
)

// This file holds what iu serve adds to the store: triggers, tokens, the
// schema version for readiness, and pool statistics for metrics.

const triggerColumns = `name, event_type, event_source, template_key, actor, instance_prefix, created_at, created_by`

func scanTrigger(rows pgx.Rows) (iu.Trigger, error) {
	var tr iu.Trigger
	err := rows.Scan(&tr.Name, &tr.Type, &tr.Source, &tr.Template, &tr.Actor, &tr.Prefix, &tr.CreatedAt, &tr.CreatedBy)
	return tr, err
}

func (t *tx) ListTriggers(ctx context.Context, after string, limit int) ([]iu.Trigger, error) {
	q, args := `SELECT `+triggerColumns+` FROM iu_trigger WHERE name > $1 ORDER BY name`, []any{after}
	if limit > 0 {
		q, args = q+` LIMIT $2`, append(args, limit)
	}
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.Trigger{}
	for rows.Next() {
		tr, err := scanTrigger(rows)
		if err != nil {
			return nil, t.s.translate(ctx, err)
		}
		out = append(out, tr)
	}
	return out, t.s.translate(ctx, rows.Err())
}

func (t *tx) InsertTrigger(ctx context.Context, tr *iu.Trigger) error {
	_, err := t.exec(ctx, `INSERT INTO iu_trigger (`+triggerColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		tr.Name, tr.Type, tr.Source, tr.Template, tr.Actor, tr.Prefix, tr.CreatedAt.Time, tr.CreatedBy)
	if isUnique(err) {
		// Which of the two keys was taken: the name, or the route.
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.ConstraintName == "iu_trigger_pkey" {
			return iu.ErrTriggerExists
		}
		return iu.ErrTriggerRouteTaken
	}
	return err
}

func (t *tx) DeleteTrigger(ctx context.Context, name string) (iu.Trigger, error) {
	if !t.write {
		return iu.Trigger{}, errReadOnly
	}
	rows, err := t.query(ctx, `DELETE FROM iu_trigger WHERE name = $1 RETURNING `+triggerColumns, name)
	if err != nil {
		return iu.Trigger{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return iu.Trigger{}, t.s.translate(ctx, err)
		}
		return iu.Trigger{}, iu.ErrNotFound
	}
	tr, err := scanTrigger(rows)
	if err != nil {
		return iu.Trigger{}, t.s.translate(ctx, err)
	}
	rows.Close()
	return tr, t.s.translate(ctx, rows.Err())
}

const tokenColumns = `name, token_hash, scope, created_at, created_by, revoked_at`

func (t *tx) oneToken(ctx context.Context, query string, args ...any) (iu.Token, error) {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return iu.Token{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return iu.Token{}, t.s.translate(ctx, err)
		}
		return iu.Token{}, pgx.ErrNoRows
	}
	tk, err := scanToken(rows)
	if err != nil {
		return iu.Token{}, t.s.translate(ctx, err)
	}
	rows.Close()
	return tk, t.s.translate(ctx, rows.Err())
}

func scanToken(rows pgx.Rows) (iu.Token, error) {
	var tk iu.Token
	var scope string
	if err := rows.Scan(&tk.Name, &tk.Hash, &scope, &tk.CreatedAt, &tk.CreatedBy, &tk.RevokedAt); err != nil {
		return tk, err
	}
	tk.Scope = iu.Scope(scope)
	return tk, nil
}

func (t *tx) InsertToken(ctx context.Context, tk *iu.Token) error {
	_, err := t.exec(ctx, `INSERT INTO iu_token (name, token_hash, scope, created_at, created_by) VALUES ($1, $2, $3, $4, $5)`,
		tk.Name, tk.Hash, string(tk.Scope), tk.CreatedAt.Time, tk.CreatedBy)
	if isUnique(err) {
		return iu.ErrTokenExists
	}
	return err
}

func (t *tx) ListTokens(ctx context.Context, after string, limit int) ([]iu.Token, error) {
	rows, err := t.query(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE name > $1 ORDER BY name LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.Token{}
	for rows.Next() {
		tk, err := scanToken(rows)
		if err != nil {
			return nil, t.s.translate(ctx, err)
		}
		out = append(out, tk)
	}
	return out, t.s.translate(ctx, rows.Err())
}

func (t *tx) RevokeToken(ctx context.Context, name string, at time.Time) (iu.Token, bool, error) {
	if !t.write {
		return iu.Token{}, false, errReadOnly
	}
	tk, err := t.oneToken(ctx, `UPDATE iu_token SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING `+tokenColumns, at, name)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return tk, err == nil, err
	}
	tk, err = t.oneToken(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE name = $1`, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return iu.Token{}, false, iu.ErrNotFound
	}
	return tk, false, err
}

func (t *tx) GetToken(ctx context.Context, hash string) (iu.Token, error) {
	tk, err := t.oneToken(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE token_hash = $1`, hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return iu.Token{}, iu.ErrNotFound
	}
	return tk, err
}

func (t *tx) SchemaVersion(ctx context.Context) (current, known int64, err error) {
	if err := t.queryRow(ctx, `SELECT version_id FROM `+versionTable+` ORDER BY id DESC LIMIT 1`, nil, &current); err != nil {
		return 0, 0, t.s.translate(ctx, err)
	}
	return current, knownVersion, nil
}

// PoolStats reports the connection pool.
func (s *Store) PoolStats() iu.PoolStats {
	if s.pool == nil {
		return iu.PoolStats{}
	}
	st := s.pool.Stat()
	return iu.PoolStats{
		MaxOpen:      int(st.MaxConns()),
		Open:         int(st.TotalConns()),
		InUse:        int(st.AcquiredConns()),
		Idle:         int(st.IdleConns()),
		WaitCount:    st.EmptyAcquireCount(),
		WaitDuration: st.EmptyAcquireWaitTime(),
	}
}
