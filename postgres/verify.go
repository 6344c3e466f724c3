package postgres

// Rollback by actor, and what verify reads: instance graphs, template graphs, orphans.

import (
	"context"
	"fmt"

	"github.com/iu-engine/iu"
	"github.com/jackc/pgx/v5/pgtype"
)

// rollbackCount counts what rolling back an actor deletes.
const rollbackCount = `SELECT
	(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = $1),
	(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto'),
	(SELECT count(*) FROM iu_collection_template_instance_lineage l WHERE l.actor = $1 AND l.mode = 'auto'
		AND EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_id = l.instance_id)),
	(SELECT coalesce(sum((SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = l.instance_id)), 0)
		FROM iu_collection_template_instance_lineage l WHERE l.actor = $1 AND l.mode = 'auto')`

// rollbackApply deletes an actor's auto instantiations, with their
// migration records, in ONE statement:
// every part sees the same snapshot, so an emit that commits meanwhile is
// either wholly deleted or wholly kept, never split into orphans. The
// instances' rows are joined with the deleted lineage, not matched with
// = ANY (an array of their ids): a million-element array, rechecked on
// each row of a bitmap scan too large for work_mem, ran for hours.
const rollbackApply = `WITH doomed AS (
		DELETE FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto' RETURNING instance_id
	), log AS (
		DELETE FROM iu_auto_instantiate_event_log WHERE actor = $1 RETURNING 1
	), coll AS (
		DELETE FROM iu_piece_collection c USING doomed d WHERE c.collection_kind = 'instance' AND c.collection_id = d.instance_id
		RETURNING 1
	), mem AS (
		DELETE FROM iu_collection_membership m USING doomed d WHERE m.collection_id = d.instance_id RETURNING 1
	), migrations AS (
		DELETE FROM iu_instance_migration m USING doomed d WHERE m.instance_id = d.instance_id
	)
	SELECT (SELECT count(*) FROM log), (SELECT count(*) FROM doomed), (SELECT count(*) FROM coll), (SELECT count(*) FROM mem)`

func (t *tx) RollbackActor(ctx context.Context, actor string, apply bool) (iu.RollbackCounts, error) {
	var c iu.RollbackCounts
	q := rollbackCount
	if apply {
		if !t.write {
			return c, iu.ErrWriteInView
		}
		q = rollbackApply
		t.takeMovingLock(true)
		// The deleted instances' ids, hashed in one batch, let the join
		// delete membership rows in the table's order: in the 16 batches
		// of the default 4 MB it dirtied pages all over the table again
		// and again (a million instances: 52 s, 23 s so).
		t.hold(queued{sql: `SELECT set_config('work_mem', '128MB', true)`})
	}
	err := t.long(ctx, func() error {
		return t.queryRow(ctx, q, []any{actor}, &c.LogRows, &c.LineageRows, &c.Instances, &c.Memberships)
	})
	return c, err
}

// graphPage is how many instances ScanInstanceGraphs fetches per round
// trip: memory stays flat however many instances there are, and no result
// set is open while fn runs.
const graphPage = 1000

// scanGraphs reads instances in collection_id order, each with its
// membership rows folded into one string (iu.SlotUnfolder reads it) and a
// count of the rows under its id with another key. A fold that is the
// previous instance's comes as NULL: the instances of one template fold
// alike, and at a million instances the repeats were most of what the
// server formatted and sent. It is one cursor fetched a page at a time,
// not a query per page, which the planner, before the tables have
// statistics, answered by sorting every instance of the actor for each
// page.
const scanGraphs = `DECLARE %s NO SCROLL CURSOR FOR
	SELECT key, actor, digest, has_lineage, lineage_key_ok, template_key, template_digest, strays,
		CASE WHEN folded = lag(folded) OVER (ORDER BY id) THEN NULL ELSE folded END
	FROM (SELECT c.collection_id AS id, c.collection_key AS key, c.actor, c.digest,
			l.instance_id IS NOT NULL AS has_lineage, coalesce(l.instance_key = c.collection_key, false) AS lineage_key_ok,
			coalesce(l.template_key, '') AS template_key, coalesce(l.template_digest, '') AS template_digest,
			f.strays, coalesce(f.folded, '') AS folded
		FROM iu_piece_collection c
		LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
		CROSS JOIN LATERAL (
			SELECT string_agg(r.row, chr(30)) FILTER (WHERE r.own) AS folded, count(*) FILTER (WHERE NOT r.own) AS strays
			FROM (SELECT m.slot || chr(31) || m.piece_id || chr(31) || m.after_slots AS row, m.collection_key = c.collection_key AS own
				FROM iu_collection_membership m WHERE m.collection_id = c.collection_id ORDER BY m.collection_id, m.slot) r) f
		WHERE c.collection_kind = 'instance' %s
		ORDER BY c.collection_id) s
	ORDER BY id`

func (t *tx) ScanInstanceGraphs(ctx context.Context, actor string, fn func(*iu.InstanceGraph) error) error {
	var args []any
	filter := ""
	if actor != "" {
		filter = "AND c.actor = $1"
		args = append(args, actor)
	}
	t.cursors++
	cursor := fmt.Sprintf("iu_graphs_%d", t.cursors)
	// An instance's few membership rows are read through the primary key,
	// in its order. Without statistics (a store just loaded, autovacuum
	// not yet by) the planner expected thousands per instance and read
	// each instance's with a bitmap scan and a sort, and compiled the plan
	// with JIT: a million instances took 8.5 s of the server's time, 6.3 s
	// so. The settings end with the transaction.
	t.hold(queued{sql: `SELECT set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)`})
	t.hold(queued{sql: fmt.Sprintf(scanGraphs, cursor, filter), args: args})
	fetch := fmt.Sprintf("FETCH %d FROM %s", graphPage, cursor)
	var unfold iu.SlotUnfolder
	var last []iu.Slot
	page := make([]*iu.InstanceGraph, 0, graphPage)
	for {
		page = page[:0]
		rows, err := t.query(ctx, fetch)
		if err != nil {
			return err
		}
		for rows.Next() {
			g := &iu.InstanceGraph{}
			var digest, tdigest string
			var folded pgtype.Text
			if err := rows.Scan(&g.Key, &g.Actor, &digest, &g.HasLineage, &g.LineageKeyOK, &g.TemplateKey, &tdigest, &g.Strays, &folded); err != nil {
				rows.Close()
				return t.s.translate(ctx, err)
			}
			g.Digest, g.TemplateDigest = iu.StoredDigest(digest), iu.StoredDigest(tdigest)
			if folded.Valid {
				last = unfold.Unfold(folded.String)
			}
			g.Slots = last
			page = append(page, g)
		}
		if err := rows.Err(); err != nil {
			return t.s.translate(ctx, err)
		}
		for _, g := range page {
			if err := fn(g); err != nil {
				return err
			}
		}
		if len(page) < graphPage {
			t.hold(queued{sql: "CLOSE " + cursor})
			return nil
		}
	}
}

// ListTemplateGraphs reads each template's memberships with a correlated
// subquery, so they are found through the primary key whatever the
// statistics say (as a join, the statement was planned as a scan of every
// membership row right after a bulk run).
func (t *tx) ListTemplateGraphs(ctx context.Context) (map[string]*iu.Template, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.digest, c.emit_mode,
		(SELECT array_agg(m.slot ORDER BY m.position) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id),
		(SELECT array_agg(m.piece_id ORDER BY m.position) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id),
		(SELECT array_agg(m.after_slots ORDER BY m.position) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id)
		FROM iu_piece_collection c WHERE c.collection_kind = 'template'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]*iu.Template)
	for rows.Next() {
		var key, title, digest, mode string
		var slots, pieces, afters []string
		if err := rows.Scan(&key, &title, &digest, &mode, &slots, &pieces, &afters); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		tp := &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Digest: iu.StoredDigest(digest)}
		for i := range slots {
			tp.Slots = append(tp.Slots, iu.Slot{ID: slots[i], Piece: iu.StoredDigest(pieces[i]), After: iu.ParseEdgesText(afters[i])})
		}
		out[key] = tp
	}
	return out, t.s.translate(ctx, rows.Err())
}

// CountGraphRows counts on a pooled connection of its own, in a
// transaction that imports this one's snapshot (pg_export_snapshot), so the
// server counts while the instances are scanned. This transaction's end
// stops the count if nobody waited for it.
func (t *tx) CountGraphRows(ctx context.Context) func() (iu.GraphRowCounts, error) {
	var snapshot string
	if err := t.queryRow(ctx, `SELECT pg_export_snapshot()`, nil, &snapshot); err != nil {
		return func() (iu.GraphRowCounts, error) { return iu.GraphRowCounts{}, err }
	}
	ctx, cancel := context.WithCancel(ctx)
	type counted struct {
		n   iu.GraphRowCounts
		err error
	}
	done := make(chan counted, 1)
	go func() {
		var c counted
		c.err = t.s.viewAt(ctx, snapshot, func(o *tx) error {
			return o.long(ctx, func() error {
				return o.queryRow(ctx, graphRowCounts, nil, &c.n.Memberships, &c.n.Lineage, &c.n.OrphanLogRows)
			})
		})
		done <- c
	}()
	var c *counted
	wait := func() (iu.GraphRowCounts, error) {
		if c == nil {
			r := <-done
			c = &r
		}
		return c.n, c.err
	}
	t.atEnd = append(t.atEnd, func() { cancel(); wait() })
	return wait
}

// graphRowCounts: the first two are counted from the primary keys alone.
const graphRowCounts = `SELECT
	(SELECT count(*) FROM iu_collection_membership),
	(SELECT count(*) FROM iu_collection_template_instance_lineage),
	(SELECT count(*) FROM iu_auto_instantiate_event_log e
		WHERE e.status = 'ok' AND NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = e.instance_key))`
