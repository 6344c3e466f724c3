package postgres

// API tokens: only the hash of each secret is kept.

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

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
		return iu.Token{}, false, iu.ErrWriteInView
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
