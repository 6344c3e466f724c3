package postgres

import "context"

// ListActors walks the lineage's actor index from one actor to the next
// (a loose index scan), so that it reads one index entry per actor, not
// one per instance.
func (t *tx) ListActors(ctx context.Context, after string, limit int) ([]string, error) {
	rows, err := t.query(ctx, `WITH RECURSIVE a(actor) AS (
			SELECT (SELECT min(actor) FROM iu_collection_template_instance_lineage WHERE actor > $1 AND mode = 'auto')
			UNION ALL
			SELECT (SELECT min(l.actor) FROM iu_collection_template_instance_lineage l WHERE l.actor > a.actor AND l.mode = 'auto')
			FROM a WHERE a.actor IS NOT NULL
		)
		SELECT actor FROM a WHERE actor IS NOT NULL LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t *tx) CountInstances(ctx context.Context, actor string) (int64, error) {
	var n int64
	q, args := `SELECT count(*) FROM iu_piece_collection WHERE collection_kind = 'instance'`, []any{}
	if actor != "" {
		q, args = q+` AND actor = $1`, append(args, actor)
	}
	err := t.queryRow(ctx, q, args, &n)
	return n, err
}
