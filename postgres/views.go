package postgres

import (
	"context"
	"strconv"
	"strings"

	"github.com/iu-engine/iu"
)

// ListInstances reads the per-instance view's rows from its tables, in
// creation order (instance_id, which the lineage indexes carry), from where
// the last page ended.
func (t *tx) ListInstances(ctx context.Context, f iu.InstanceFilter, after int64, limit int) ([]iu.InstanceRow, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// mode has two values. "mode = 'auto'" is a prefix of the actor and
	// template indexes; without either filter it is written "mode <>
	// 'manual'", which the planner, when the table has no statistics yet,
	// takes for what it is (nearly every row) and walks the primary key in
	// order, rather than for a rare value worth sorting (0.6 s for the first
	// page at a million instances).
	if f.Actor == "" && f.TemplateKey == "" {
		where = append(where, "l.mode <> 'manual'")
	} else {
		where = append(where, "l.mode = 'auto'")
	}
	order := "l.instance_id"
	if f.Prefix != "" {
		// Key order, from where the last page ended: a range of the key
		// index, whatever the size of the store.
		r := iu.PrefixRange(f.Prefix, f.AfterKey)
		where = append(where, "c.collection_key "+r.FromOp()+" "+arg(r.From), "c.collection_key < "+arg(r.To))
		order = "c.collection_key"
	} else {
		// Said of both tables: the planner does not carry an inequality
		// across the join's equality, and merged from the first
		// collection (0.1 s for a page in the middle of a million).
		a := arg(after)
		where = append(where, "l.instance_id > "+a, "c.collection_id > "+a)
	}
	// Under an actor or a template, the page is read through that
	// column's (column, mode, instance_id) index. Written as "col = $n",
	// the planner drops col from the order (it is a constant), walks the
	// primary key and filters: an actor whose instances are newer than a
	// million others' is found after 1.2 s. Written as a range of one
	// value with col in the ORDER BY, only that index gives the order
	// (3 ms).
	switch {
	case f.Actor != "":
		a := arg(f.Actor)
		where = append(where, "l.actor >= "+a+" AND l.actor <= "+a)
		if order == "l.instance_id" {
			order = "l.actor, l.instance_id"
		}
		if f.TemplateKey != "" {
			where = append(where, "l.template_key = "+arg(f.TemplateKey))
		}
	case f.TemplateKey != "":
		k := arg(f.TemplateKey)
		where = append(where, "l.template_key >= "+k+" AND l.template_key <= "+k)
		if order == "l.instance_id" {
			order = "l.template_key, l.instance_id"
		}
	}
	if f.EventID != "" {
		where = append(where, "l.event_id = "+arg(f.EventID))
	}
	q := `SELECT l.instance_id, c.collection_key, l.template_key, l.event_id, l.event_type, l.event_source, l.actor, l.created_at,
		l.template_digest, c.digest, (c.digest = l.template_digest AND c.digest = t.digest)
		FROM iu_collection_template_instance_lineage l
		JOIN iu_piece_collection c ON c.collection_id = l.instance_id
		JOIN iu_piece_collection t ON t.collection_key = l.template_key
		WHERE ` + strings.Join(where, " AND ") + ` ORDER BY ` + order + ` LIMIT ` + arg(limit)
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.InstanceRow{}
	for rows.Next() {
		var r iu.InstanceRow
		var td, id string
		var evID, evType, evSource *string
		var match *bool
		if err := rows.Scan(&r.Seq, &r.InstanceKey, &r.TemplateKey, &evID, &evType, &evSource, &r.Actor, &r.CreatedAt, &td, &id, &match); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		r.EventID, r.EventType, r.EventSource = deref(evID), deref(evType), deref(evSource)
		r.TemplateDigest, r.InstanceDigest = iu.StoredDigest(td), iu.StoredDigest(id)
		r.DigestMatch = match != nil && *match
		out = append(out, r)
	}
	return out, t.s.translate(ctx, rows.Err())
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
			return nil, t.s.translate(ctx, err)
		}
		s.EmitMode = iu.EmitMode(mode)
		out = append(out, s)
	}
	return out, t.s.translate(ctx, rows.Err())
}

func (t *tx) CountSurfaces(ctx context.Context, actor, prefix string) (iu.Surfaces, error) {
	var s iu.Surfaces
	err := t.queryRow(ctx, `SELECT
		(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = $1),
		(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto'),
		(SELECT count(*) FROM iu_piece_collection WHERE actor = $1 AND collection_kind = 'instance'
			AND collection_key >= $2 AND collection_key < $3)`,
		[]any{actor, prefix, iu.KeyPrefixEnd(prefix)}, &s.EventLog, &s.Lineage, &s.Instances)
	return s, err
}
