package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

// This file holds what iu serve adds to the store: triggers, tokens, the
// schema version for readiness, and pool statistics for metrics.

const triggerColumns = `name, event_type, event_source, template_key, actor, instance_prefix, created_at, created_by`

func (t *tx) ListTriggers(ctx context.Context, after string, limit int) ([]iu.Trigger, error) {
	if limit <= 0 {
		limit = -1 // every one
	}
	rows, err := t.query(ctx, `SELECT `+triggerColumns+` FROM iu_trigger WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.Trigger{}
	for rows.Next() {
		tr, err := scanTrigger(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, tr)
	}
	return out, t.s.translate(rows.Err())
}

func scanTrigger(rows *sql.Rows) (iu.Trigger, error) {
	var tr iu.Trigger
	err := rows.Scan(&tr.Name, &tr.Type, &tr.Source, &tr.Template, &tr.Actor, &tr.Prefix, &tr.CreatedAt, &tr.CreatedBy)
	return tr, err
}

func (t *tx) InsertTrigger(ctx context.Context, tr *iu.Trigger) error {
	_, err := t.exec(ctx, `INSERT INTO iu_trigger (`+triggerColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		tr.Name, tr.Type, tr.Source, tr.Template, tr.Actor, tr.Prefix, fmtTime(tr.CreatedAt.Time), tr.CreatedBy)
	if isUnique(err) {
		// Which of the two keys was taken: the name, or the route.
		if strings.Contains(err.Error(), "iu_trigger.name") {
			return iu.ErrTriggerExists
		}
		return iu.ErrTriggerRouteTaken
	}
	return err
}

func (t *tx) DeleteTrigger(ctx context.Context, name string) (iu.Trigger, error) {
	rows, err := t.query(ctx, `DELETE FROM iu_trigger WHERE name = ? RETURNING `+triggerColumns, name)
	if err != nil {
		return iu.Trigger{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return iu.Trigger{}, t.s.translate(err)
		}
		return iu.Trigger{}, iu.ErrNotFound
	}
	tr, err := scanTrigger(rows)
	if err != nil {
		return iu.Trigger{}, t.s.translate(err)
	}
	return tr, t.s.translate(rows.Close())
}

const tokenColumns = `name, token_hash, scope, created_at, created_by, revoked_at`

func scanToken(rows *sql.Rows) (iu.Token, error) {
	var tk iu.Token
	var scope string
	if err := rows.Scan(&tk.Name, &tk.Hash, &scope, &tk.CreatedAt, &tk.CreatedBy, &tk.RevokedAt); err != nil {
		return tk, err
	}
	tk.Scope = iu.Scope(scope)
	return tk, nil
}

func (t *tx) InsertToken(ctx context.Context, tk *iu.Token) error {
	_, err := t.exec(ctx, `INSERT INTO iu_token (name, token_hash, scope, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
		tk.Name, tk.Hash, string(tk.Scope), fmtTime(tk.CreatedAt.Time), tk.CreatedBy)
	if isUnique(err) {
		return iu.ErrTokenExists
	}
	return err
}

func (t *tx) ListTokens(ctx context.Context, after string, limit int) ([]iu.Token, error) {
	rows, err := t.query(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.Token{}
	for rows.Next() {
		tk, err := scanToken(rows)
		if err != nil {
			return nil, t.s.translate(err)
		}
		out = append(out, tk)
	}
	return out, t.s.translate(rows.Err())
}

func (t *tx) oneToken(ctx context.Context, query string, args ...any) (iu.Token, error) {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return iu.Token{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return iu.Token{}, t.s.translate(err)
		}
		return iu.Token{}, sql.ErrNoRows
	}
	tk, err := scanToken(rows)
	if err != nil {
		return iu.Token{}, t.s.translate(err)
	}
	return tk, t.s.translate(rows.Close())
}

func (t *tx) RevokeToken(ctx context.Context, name string, at time.Time) (iu.Token, bool, error) {
	tk, err := t.oneToken(ctx, `UPDATE iu_token SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING `+tokenColumns, fmtTime(at), name)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return tk, err == nil, err
	}
	tk, err = t.oneToken(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return iu.Token{}, false, iu.ErrNotFound
	}
	return tk, false, err
}

func (t *tx) GetToken(ctx context.Context, hash string) (iu.Token, error) {
	tk, err := t.oneToken(ctx, `SELECT `+tokenColumns+` FROM iu_token WHERE token_hash = ?`, hash)
	if errors.Is(err, sql.ErrNoRows) {
		return iu.Token{}, iu.ErrNotFound
	}
	return tk, err
}

func (t *tx) SchemaVersion(ctx context.Context) (current, known int64, err error) {
	if err := t.queryRow(ctx, `SELECT version_id FROM `+versionTable+` ORDER BY id DESC LIMIT 1`, nil, &current); err != nil {
		return 0, 0, t.s.translate(err)
	}
	return current, knownVersion, nil
}

// PoolStats sums the writer connection and the read pool.
func (s *Store) PoolStats() iu.PoolStats {
	var p iu.PoolStats
	for _, db := range []*sql.DB{s.w, s.r} {
		if db == nil {
			continue
		}
		st := db.Stats()
		p.MaxOpen += st.MaxOpenConnections
		p.Open += st.OpenConnections
		p.InUse += st.InUse
		p.Idle += st.Idle
		p.WaitCount += st.WaitCount
		p.WaitDuration += st.WaitDuration
	}
	return p
}
