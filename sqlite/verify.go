package sqlite

import (
	"context"

	"github.com/iu-engine/iu"
)

func (t *tx) ScanInstanceGraphs(ctx context.Context, actor string, fn func(*iu.InstanceGraph) error) error {
	// One row per instance, its membership rows folded into one string
	// (fields split by \x1f, rows by \x1e; neither can occur in slot ids,
	// piece ids or edges), and a count of the rows under its id with
	// another key. Instances of one template fold to the same string: it
	// is parsed once, and the engine checks that graph once.
	q := `SELECT c.collection_key, c.actor, c.digest, l.instance_id IS NOT NULL, coalesce(l.instance_key = c.collection_key, 0),
		coalesce(l.template_key, ''), coalesce(l.template_digest, ''),
		(SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id AND m.collection_key <> c.collection_key),
		coalesce((SELECT group_concat(m.slot || char(31) || m.piece_id || char(31) || m.after_slots, char(30) ORDER BY m.slot)
		          FROM iu_collection_membership m WHERE m.collection_id = c.collection_id AND m.collection_key = c.collection_key), '')
		FROM iu_piece_collection c
		LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
		WHERE c.collection_kind = 'instance'`
	var args []any
	if actor != "" {
		q += ` AND c.actor = ?`
		args = append(args, actor)
	}
	q += ` ORDER BY c.collection_id`
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var unfold iu.SlotUnfolder
	for rows.Next() {
		var digest, tdigest, folded string
		g := &iu.InstanceGraph{}
		if err := rows.Scan(&g.Key, &g.Actor, &digest, &g.HasLineage, &g.LineageKeyOK, &g.TemplateKey, &tdigest, &g.Strays, &folded); err != nil {
			return err
		}
		g.Digest = iu.StoredDigest(digest)
		g.TemplateDigest = iu.StoredDigest(tdigest)
		g.Slots = unfold.Unfold(folded)
		if err := fn(g); err != nil {
			return err
		}
	}
	return t.s.translate(rows.Err())
}

func (t *tx) ListTemplateGraphs(ctx context.Context) (map[string]*iu.Template, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.digest, c.emit_mode, m.slot, m.piece_id, m.after_slots
		FROM iu_piece_collection c JOIN iu_collection_membership m ON m.collection_id = c.collection_id
		WHERE c.collection_kind = 'template' ORDER BY c.collection_key, m.position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]*iu.Template)
	for rows.Next() {
		var key, title, digest, mode, slot, piece, after string
		if err := rows.Scan(&key, &title, &digest, &mode, &slot, &piece, &after); err != nil {
			return nil, err
		}
		tp, ok := out[key]
		if !ok {
			tp = &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode)}
			tp.Digest = iu.StoredDigest(digest)
			out[key] = tp
		}
		s := iu.Slot{ID: slot, After: iu.ParseEdgesText(after)}
		s.Piece = iu.StoredDigest(piece)
		tp.Slots = append(tp.Slots, s)
	}
	return out, rows.Err()
}

// CountGraphRows counts when waited for, on the transaction's connection:
// SQLite's readers do not share a snapshot.
func (t *tx) CountGraphRows(ctx context.Context) func() (iu.GraphRowCounts, error) {
	return func() (iu.GraphRowCounts, error) {
		var n iu.GraphRowCounts
		err := t.queryRow(ctx, `SELECT
			(SELECT count(*) FROM iu_collection_membership),
			(SELECT count(*) FROM iu_collection_template_instance_lineage),
			(SELECT count(*) FROM iu_auto_instantiate_event_log e
				WHERE e.status = 'ok' AND NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = e.instance_key))`,
			nil, &n.Memberships, &n.Lineage, &n.OrphanLogRows)
		return n, err
	}
}

// rollbackChunk is how many rows one statement of a rollback deletes. It
// bounds the rollback's memory: each statement keeps in memory the first
// image of every page it changes that the transaction had changed before
// (its statement journal), and the event log's idempotency keys are hashes,
// so a chunk's rows lie on as many index pages as there are rows. At a
// million instances 10,000 peaked at 330 MiB, 1,000 at 170 MiB (README).
var rollbackChunk = 1000

func (t *tx) RollbackActor(ctx context.Context, actor string, apply bool) (iu.RollbackCounts, error) {
	var c iu.RollbackCounts
	err := t.queryRow(ctx, `SELECT
		(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = ?),
		(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = ? AND mode = 'auto'),
		(SELECT count(*) FROM iu_piece_collection c JOIN iu_collection_template_instance_lineage l
			ON l.instance_id = c.collection_id WHERE l.actor = ? AND l.mode = 'auto'),
		(SELECT count(*) FROM iu_collection_membership m JOIN iu_collection_template_instance_lineage l
			ON l.instance_id = m.collection_id WHERE l.actor = ? AND l.mode = 'auto')`,
		[]any{actor, actor, actor, actor}, &c.LogRows, &c.LineageRows, &c.Instances, &c.Memberships)
	if err != nil || !apply {
		return c, err
	}
	// Keep the instance ids before lineage, which names them, is deleted.
	// Then delete a chunk at a time: SQLite keeps each statement's undo
	// journal in memory (temp_store), and one statement deleting a
	// million instances' rows held 2 GiB.
	steps := []string{
		`CREATE TEMP TABLE IF NOT EXISTS iu_rollback_ids (instance_id INTEGER PRIMARY KEY)`,
		`DELETE FROM temp.iu_rollback_ids`,
		`INSERT INTO temp.iu_rollback_ids SELECT instance_id FROM iu_collection_template_instance_lineage WHERE actor = ? AND mode = 'auto'`,
	}
	for i, q := range steps {
		var args []any
		if i == 2 {
			args = []any{actor}
		}
		if _, err := t.exec(ctx, q, args...); err != nil {
			return c, err
		}
	}
	chunked := []statement{
		{`DELETE FROM iu_auto_instantiate_event_log WHERE rowid IN (SELECT rowid FROM iu_auto_instantiate_event_log WHERE actor = ? LIMIT ?)`, []any{actor, rollbackChunk}},
		{`DELETE FROM iu_collection_template_instance_lineage WHERE rowid IN (SELECT rowid FROM iu_collection_template_instance_lineage WHERE actor = ? AND mode = 'auto' LIMIT ?)`, []any{actor, rollbackChunk}},
		// Memberships go with their collection (ON DELETE CASCADE).
		{`DELETE FROM iu_piece_collection WHERE collection_id IN (
			SELECT instance_id FROM temp.iu_rollback_ids ORDER BY instance_id LIMIT ?)`, []any{rollbackChunk}},
	}
	for i, q := range chunked {
		for {
			if i == 2 { // the chunk's migration records go with its instances
				if _, err := t.exec(ctx, `DELETE FROM iu_instance_migration WHERE instance_id IN (
					SELECT instance_id FROM temp.iu_rollback_ids ORDER BY instance_id LIMIT ?)`, rollbackChunk); err != nil {
					return c, err
				}
			}
			res, err := t.exec(ctx, q.sql, q.args...)
			if err != nil {
				return c, err
			}
			if i == 2 { // the ids done, whether or not their collection was there
				if res, err = t.exec(ctx, `DELETE FROM temp.iu_rollback_ids WHERE instance_id IN (
					SELECT instance_id FROM temp.iu_rollback_ids ORDER BY instance_id LIMIT ?)`, rollbackChunk); err != nil {
					return c, err
				}
			}
			if n, err := res.RowsAffected(); err != nil || n < int64(rollbackChunk) {
				break
			}
		}
	}
	return c, nil
}
