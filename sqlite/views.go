package sqlite

// Reading the views: the per-instance view, the per-template summary, a bulk run's surfaces.

import (
	"context"
	"strings"

	"github.com/iu-engine/iu"
)

func (t *tx) CountSurfaces(ctx context.Context, actor, prefix string) (iu.Surfaces, error) {
	var s iu.Surfaces
	err := t.queryRow(ctx, `SELECT
		(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = ?),
		(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = ? AND mode = 'auto'),
		(SELECT count(*) FROM iu_piece_collection WHERE collection_key >= ? AND collection_key < ?
			AND collection_kind = 'instance' AND actor = ?)`,
		[]any{actor, actor, prefix, iu.KeyPrefixEnd(prefix), actor}, &s.EventLog, &s.Lineage, &s.Instances)
	return s, err
}

func (t *tx) ListInstances(ctx context.Context, f iu.InstanceFilter, after int64, limit int) ([]iu.InstanceRow, error) {
	where := []string{"l.mode = 'auto'"}
	var args []any
	order := "l.instance_id"
	if f.Prefix != "" {
		// Key order, from where the last page ended: a range of the key
		// index, whatever the size of the store.
		r := iu.PrefixRange(f.Prefix, f.AfterKey)
		where, args = append(where, "c.collection_key "+r.FromOp()+" ?", "c.collection_key < ?"), append(args, r.From, r.To)
		order = "c.collection_key"
	} else {
		where, args = append(where, "l.instance_id > ?"), append(args, after)
	}
	if f.Actor != "" {
		where, args = append(where, "l.actor = ?"), append(args, f.Actor)
	}
	if f.TemplateKey != "" {
		where, args = append(where, "l.template_key = ?"), append(args, f.TemplateKey)
	}
	if f.EventID != "" {
		where, args = append(where, "l.event_id = ?"), append(args, f.EventID)
	}
	// The view's own query, in creation order (instance_id, the rowid,
	// which every lineage index carries), from where the last page ended;
	// under a prefix in key order.
	q := `SELECT l.instance_id, l.instance_key, l.template_key, l.event_id, l.event_type, l.event_source, l.actor, l.created_at,
		l.template_digest, c.digest, (c.digest = l.template_digest AND c.digest = t.digest)
		FROM iu_collection_template_instance_lineage l
		JOIN iu_piece_collection c ON c.collection_id = l.instance_id
		JOIN iu_piece_collection t ON t.collection_key = l.template_key
		WHERE ` + strings.Join(where, " AND ") + ` ORDER BY ` + order + ` LIMIT ?`
	rows, err := t.query(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.InstanceRow{}
	for rows.Next() {
		var r iu.InstanceRow
		var td, id string
		if err := rows.Scan(&r.Seq, &r.InstanceKey, &r.TemplateKey, &r.EventID, &r.EventType, &r.EventSource, &r.Actor, &r.CreatedAt, &td, &id, &r.DigestMatch); err != nil {
			return nil, t.s.translate(err)
		}
		r.TemplateDigest = iu.StoredDigest(td)
		r.InstanceDigest = iu.StoredDigest(id)
		out = append(out, r)
	}
	return out, t.s.translate(rows.Err())
}

func (t *tx) ListTemplateStats(ctx context.Context) ([]iu.TemplateStat, error) {
	rows, err := t.query(ctx, `SELECT template_collection_key, emit_mode, instance_count, instances_last_hour
		FROM iu_auto_instantiate_template_summary ORDER BY template_collection_key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.TemplateStat{}
	for rows.Next() {
		var s iu.TemplateStat
		var mode string
		if err := rows.Scan(&s.TemplateKey, &mode, &s.InstanceCount, &s.InstancesLastHour); err != nil {
			return nil, err
		}
		s.EmitMode = iu.EmitMode(mode)
		out = append(out, s)
	}
	return out, rows.Err()
}
