package sqlite

// Triggers: which events go to which template.

import (
	"context"
	"database/sql"
	"strings"

	"github.com/iu-engine/iu"
)

const triggerColumns = `name, event_type, event_source, template_key, actor, instance_prefix, created_at, created_by`

func (t *tx) ListTriggers(ctx context.Context, after string, limit int) ([]iu.Trigger, error) {
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
