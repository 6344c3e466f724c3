package postgres

// Triggers: which events go to which template.

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iu-engine/iu"
)

const triggerColumns = `name, event_type, event_source, template_key, actor, instance_prefix, created_at, created_by`

func scanTrigger(rows pgx.Rows) (iu.Trigger, error) {
	var tr iu.Trigger
	err := rows.Scan(&tr.Name, &tr.Type, &tr.Source, &tr.Template, &tr.Actor, &tr.Prefix, &tr.CreatedAt, &tr.CreatedBy)
	return tr, err
}

func (t *tx) ListTriggers(ctx context.Context, after string, limit int) ([]iu.Trigger, error) {
	rows, err := t.query(ctx, `SELECT `+triggerColumns+` FROM iu_trigger WHERE name > $1 ORDER BY name LIMIT $2`, after, limit)
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
		return iu.Trigger{}, iu.ErrWriteInView
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
