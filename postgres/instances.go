package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

// claimInsert inserts log entries whose keys are free, in key order so that
// two transactions claiming overlapping keys lock them in the same order,
// and returns the keys it inserted. A key that another open transaction has
// inserted makes this wait for it: if it commits, the key is not ours.
const claimInsert = `INSERT INTO iu_auto_instantiate_event_log (` + logColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
	ORDER BY 1
	ON CONFLICT (idempotency_key) DO NOTHING
	RETURNING idempotency_key`

const claimInsertOne = `INSERT INTO iu_auto_instantiate_event_log (` + logColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
	ON CONFLICT (idempotency_key) DO NOTHING
	RETURNING idempotency_key`

// maxClaimRounds bounds how often ClaimEvents goes around when a key it
// lost is deleted (rolled back) before it could read the winner's entry.
const maxClaimRounds = 4

// claimEvents claims the free keys with one INSERT ... ON CONFLICT DO
// NOTHING and then reads the entries of the keys it did not get, in a new
// statement: at READ COMMITTED that statement sees the rows whose commit the
// INSERT waited for.
func (t *tx) claimEvents(ctx context.Context, entries []iu.LogEntry) (map[string]iu.LogEntry, error) {
	if !t.write {
		return nil, iu.ErrWriteInView
	}
	existing := make(map[string]iu.LogEntry)
	byKey := make(map[string]*iu.LogEntry, len(entries))
	pending := make([]*iu.LogEntry, len(entries))
	for i := range entries {
		pending[i] = &entries[i]
		byKey[entries[i].IdempotencyKey] = &entries[i]
	}
	for round := 0; len(pending) > 0; round++ {
		if round == maxClaimRounds {
			return nil, iu.Errorf(iu.ErrRetryable, "%s: idempotency keys kept changing hands while being claimed (rollbacks racing emits)", t.s.desc)
		}
		n := len(pending)
		keys, ids, types, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		tpls, insts, actors, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		payloads, ats := make([]string, n), make([]time.Time, n)
		for i, e := range pending {
			keys[i], ids[i], types[i], sources[i] = e.IdempotencyKey, e.EventID, e.EventType, e.EventSource
			tpls[i], insts[i], actors[i], statuses[i] = e.TemplateKey, e.InstanceKey, e.Actor, string(e.Status)
			payloads[i], ats[i] = e.PayloadDigest.String(), e.CreatedAt.Time
		}
		args := []any{keys, ids, types, sources, tpls, insts, actors, statuses, payloads, ats}
		var claimed map[string]bool
		if n > 1 && n <= maxPipelinedLookup {
			var found map[string]iu.LogEntry
			var err error
			if claimed, found, err = t.claimAndLookUp(ctx, args); err != nil {
				return nil, err
			}
			for k, e := range found {
				if !claimed[k] { // else deleted by a rollback, then claimed here
					existing[k] = e
				}
			}
		} else {
			q := claimInsert
			if n == 1 {
				q, args = claimInsertOne, []any{keys[0], ids[0], types[0], sources[0], tpls[0], insts[0], actors[0], statuses[0], payloads[0], ats[0]}
			}
			rows, err := t.query(ctx, q, args...)
			if err != nil {
				return nil, err
			}
			if claimed, err = t.scanKeys(ctx, rows); err != nil {
				return nil, err
			}
			var lost []string
			for _, k := range keys {
				if !claimed[k] {
					lost = append(lost, k)
				}
			}
			if len(lost) > 0 {
				// A new statement, which sees the entries whose commit the
				// claim waited for; planned for its values (see lookUpKeys).
				rows, err = t.query(ctx, lookUpKeys, pgx.QueryExecModeExec, lost)
				if err != nil {
					return nil, err
				}
				if err := t.scanLog(ctx, rows, existing); err != nil {
					return nil, err
				}
			}
		}
		// A key neither claimed nor found was deleted (a rollback) between
		// the claim and the lookup: claim it again.
		pending = pending[:0]
		for _, k := range keys {
			if _, ok := existing[k]; !ok && !claimed[k] {
				pending = append(pending, byKey[k])
			}
		}
	}
	return existing, nil
}

// maxPipelinedLookup bounds the claims whose lookup goes out in the same
// round trip (claimAndLookUp): a group commit's batch. A bulk chunk, larger
// and seldom repeating an event, reads only the keys it lost, afterwards.
const maxPipelinedLookup = 256

// lookUpKeys reads the log entries of keys, each key its own index probe
// (a LATERAL subquery, not = ANY), always planned for its values (an
// unnamed statement, or force_custom_plan set around it): a generic plan
// cached while the log was small scans it whole forever after.
// TestRedeliveryLookupNeverScansTheLog holds it.
const lookUpKeys = `SELECT l.* FROM unnest($1::text[]) AS k(key)
	CROSS JOIN LATERAL (SELECT ` + logColumns + ` FROM iu_auto_instantiate_event_log WHERE idempotency_key = k.key LIMIT 1) AS l`

// claimAndLookUp sends, in one round trip, the claim of a batch's keys and
// then the lookup of all of them: at READ COMMITTED the lookup's snapshot,
// taken after the claim, sees the entries whose commit the claim waited
// for, and the transaction's own. It returns the keys claimed and the
// entries found.
func (t *tx) claimAndLookUp(ctx context.Context, args []any) (claimed map[string]bool, found map[string]iu.LogEntry, err error) {
	b := &pgx.Batch{}
	b.Queue(claimInsert, args...)
	b.Queue(`SET LOCAL plan_cache_mode = force_custom_plan`)
	b.Queue(lookUpKeys, args[0])
	b.Queue(`SET LOCAL plan_cache_mode TO DEFAULT`)
	br, err := t.batch(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, nil, t.s.translate(ctx, err)
	}
	if claimed, err = t.scanKeys(ctx, rows); err != nil {
		return nil, nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, nil, t.s.translate(ctx, err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, t.s.translate(ctx, err)
	}
	found = make(map[string]iu.LogEntry)
	if err := t.scanLog(ctx, rows, found); err != nil {
		return nil, nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, nil, t.s.translate(ctx, err)
	}
	return claimed, found, t.s.translate(ctx, br.Close())
}

// scanKeys reads the idempotency keys a claim returned.
func (t *tx) scanKeys(ctx context.Context, rows pgx.Rows) (map[string]bool, error) {
	defer rows.Close()
	keys := make(map[string]bool)
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		keys[k] = true
	}
	return keys, t.s.translate(ctx, rows.Err())
}

func (t *tx) scanLog(ctx context.Context, rows pgx.Rows, out map[string]iu.LogEntry) error {
	defer rows.Close()
	for rows.Next() {
		var e iu.LogEntry
		var status, payload string
		if err := rows.Scan(&e.IdempotencyKey, &e.EventID, &e.EventType, &e.EventSource, &e.TemplateKey, &e.InstanceKey,
			&e.Actor, &status, &payload, &e.CreatedAt); err != nil {
			return t.s.translate(ctx, err)
		}
		e.Status, e.PayloadDigest = iu.Status(status), iu.StoredDigest(payload)
		out[e.IdempotencyKey] = e
	}
	return t.s.translate(ctx, rows.Err())
}

// instanceInsertOne writes one instance in one statement: its collection
// (the sequence gives its collection_id), its memberships ($6 to $9: the
// graph's slots) and its lineage. A single emit's commonest write.
const instanceInsertOne = `WITH c AS (
		INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
		VALUES ($1, 'instance', $2, $3, $4, $5) RETURNING collection_id
	), m AS (
		INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
		SELECT c.collection_id, s.pos, s.slot, $1, s.piece, s.after
		FROM c, unnest($6::int[], $7::text[], $8::text[], $9::text[]) AS s(pos, slot, piece, after)
	)
	INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
		event_id, event_type, event_source, event_subject, event_time, event_data, created_at)
	SELECT c.collection_id, $1, $10, $11, $4, $12, $13, $14, $15, $16, $17, $18::text::jsonb, $5 FROM c`

// instanceInsert writes many instances in one statement. Each instance ($1
// to $11) names a group ($12 to $16): the instances of one template share
// its title, digests and graph, whose slots ($17 to $21) are sent once per
// group however many instances it has. The collections are inserted in the
// order of the instances, so the identity column numbers them in that order
// and every b-tree keyed by collection_id is appended to. (The ids come from
// the column's default rather than from nextval() in the statement, which
// would need a grant on the sequence besides INSERT on the table.)
const instanceInsert = `WITH n AS MATERIALIZED (
		SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::timestamptz[], $10::text[], $11::timestamptz[]) WITH ORDINALITY
			AS i(key, grp, actor, mode, ev_id, ev_type, ev_source, ev_subject, ev_time, ev_data, at, ord)
	), g AS MATERIALIZED (
		SELECT * FROM unnest($12::int[], $13::text[], $14::text[], $15::text[], $16::text[])
			AS g(grp, title, digest, tkey, tdigest)
	), s AS MATERIALIZED (
		SELECT * FROM unnest($17::int[], $18::int[], $19::text[], $20::text[], $21::text[]) AS s(grp, position, slot, piece_id, after_slots)
	), c AS (
		INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
		SELECT n.key, 'instance', g.title, g.digest, n.actor, n.at FROM n JOIN g USING (grp) ORDER BY n.ord
		RETURNING collection_id, collection_key
	), ci AS MATERIALIZED (
		SELECT c.collection_id AS id, n.* FROM c JOIN n ON n.key = c.collection_key COLLATE "C"
	), m AS (
		INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
		SELECT ci.id, s.position, s.slot, ci.key, s.piece_id, s.after_slots FROM ci JOIN s USING (grp) ORDER BY ci.id
	)
	INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
		event_id, event_type, event_source, event_subject, event_time, event_data, created_at)
	SELECT ci.id, ci.key, g.tkey, g.tdigest, ci.actor, ci.mode, ci.ev_id, ci.ev_type, ci.ev_source, ci.ev_subject, ci.ev_time, ci.ev_data::jsonb, ci.at
	FROM ci JOIN g USING (grp) ORDER BY ci.id`

// instanceGroup is what instances of one template share. Instances of one
// template share its Slots slice, so the graph is known by the slice.
type instanceGroup struct {
	first                        *iu.Slot
	n                            int
	title, digest, tkey, tdigest string
}

// InsertInstances writes the instances' collections, memberships and
// lineage in one statement. A template's graph is sent once, however many of
// its instances there are; the server makes each instance's membership rows
// from it. (Copying them from the template's own membership rows instead
// made the statement join the membership table, and a generic plan cached
// while that table was small kept scanning it whole once it was large.)
func (t *tx) InsertInstances(ctx context.Context, instances []iu.Instance) error {
	if !t.write {
		return iu.ErrWriteInView
	}
	auto := true
	for i := range instances {
		auto = auto && instances[i].Mode == iu.ModeAuto
	}
	var q queued
	if len(instances) == 1 {
		in := &instances[0]
		ev := eventArgs(in.Event)
		var sa slotArrays
		sa.add(0, in.Slots)
		q = queued{sql: instanceInsertOne, args: []any{in.Key, in.Title, in.Digest.String(), in.Actor, in.CreatedAt.Time,
			sa.pos, sa.slot, sa.piece, sa.after,
			in.TemplateKey, in.TemplateDigest.String(), string(in.Mode), ev[0], ev[1], ev[2], ev[3], ev[4], ev[5]}}
	} else {
		q = instanceBatch(instances)
	}
	q.fail = instanceExists
	if !auto {
		b := &pgx.Batch{}
		b.Queue(q.sql, q.args...)
		return instanceExists(t.sendBatch(ctx, b))
	}
	// Auto instance keys come from idempotency keys this transaction has
	// just claimed, so nothing else can be writing them: the statement goes
	// out with the next round trip (the next chunk's statements, or COMMIT)
	// instead of one of its own.
	t.hold(q)
	return nil
}

// eventArgs returns an event's id, type, source, subject, time and data as
// statement arguments (nil for a manual instance's missing event).
func eventArgs(ev *iu.Event) [6]any {
	var a [6]any
	if ev == nil {
		return a
	}
	a[0], a[1], a[2], a[3] = ev.ID, ev.Type, ev.Source, ev.Subject
	if !ev.Time.IsZero() {
		a[4] = ev.Time
	}
	if len(ev.Data) > 0 {
		a[5] = string(ev.Data)
	}
	return a
}

// instanceBatch builds instanceInsert for instances.
func instanceBatch(instances []iu.Instance) queued {
	n := len(instances)
	keys, grps, actors, modes := make([]string, n), make([]int32, n), make([]string, n), make([]string, n)
	evID, evType, evSource, evSubject, evData := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	evTime, ats := make([]*time.Time, n), make([]time.Time, n)
	var gid []int32
	var gtitle, gdigest, gtkey, gtdigest []string
	var sa slotArrays
	groups := make(map[instanceGroup]int32)
	for i := range instances {
		in := &instances[i]
		g := instanceGroup{n: len(in.Slots), title: in.Title, digest: in.Digest.String(), tkey: in.TemplateKey, tdigest: in.TemplateDigest.String()}
		if len(in.Slots) > 0 {
			g.first = &in.Slots[0]
		}
		id, ok := groups[g]
		if !ok {
			id = int32(len(gid))
			groups[g] = id
			gid, gtitle, gdigest, gtkey, gtdigest = append(gid, id), append(gtitle, g.title), append(gdigest, g.digest), append(gtkey, g.tkey), append(gtdigest, g.tdigest)
			sa.add(id, in.Slots)
		}
		keys[i], grps[i], actors[i], modes[i], ats[i] = in.Key, id, in.Actor, string(in.Mode), in.CreatedAt.Time
		if ev := in.Event; ev != nil {
			evID[i], evType[i], evSource[i], evSubject[i] = &ev.ID, &ev.Type, &ev.Source, &ev.Subject
			if !ev.Time.IsZero() {
				evTime[i] = &ev.Time
			}
			if len(ev.Data) > 0 {
				d := string(ev.Data)
				evData[i] = &d
			}
		}
	}
	return queued{sql: instanceInsert, args: []any{keys, grps, actors, modes, evID, evType, evSource, evSubject, evTime, evData, ats,
		gid, gtitle, gdigest, gtkey, gtdigest, sa.group, sa.pos, sa.slot, sa.piece, sa.after}}
}

// instanceExists reports a unique violation on an instance as
// ErrInstanceExists.
func instanceExists(err error) error {
	if isUnique(err) {
		return iu.ErrInstanceExists
	}
	return err
}

func (t *tx) GetInstance(ctx context.Context, key string) (*iu.Instance, error) {
	rec := &iu.Instance{Key: key}
	var id int64
	var digest string
	var tkey, tdigest, mode, evID, evType, evSource, evSubject, evData *string
	var evTime *time.Time
	err := t.queryRow(ctx, `SELECT c.collection_id, c.title, c.digest, c.actor, c.created_at, l.template_key, l.template_digest, l.mode,
		l.event_id, l.event_type, l.event_source, l.event_subject, l.event_time, l.event_data::text
		FROM iu_piece_collection c LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
		WHERE c.collection_key = $1 AND c.collection_kind = 'instance'`, []any{key},
		&id, &rec.Title, &digest, &rec.Actor, &rec.CreatedAt, &tkey, &tdigest, &mode, &evID, &evType, &evSource, &evSubject, &evTime, &evData)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, iu.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	rec.Digest = iu.StoredDigest(digest)
	if tkey != nil {
		rec.TemplateKey, rec.TemplateDigest, rec.Mode = *tkey, iu.StoredDigest(deref(tdigest)), iu.Mode(deref(mode))
	}
	if evID != nil {
		ev := &iu.Event{ID: *evID, Type: deref(evType), Source: deref(evSource), Subject: deref(evSubject)}
		if evTime != nil {
			ev.Time = evTime.UTC()
		}
		if evData != nil {
			ev.Data = json.RawMessage(*evData)
		}
		rec.Event = ev
	}
	if rec.Slots, err = t.slots(ctx, id); err != nil {
		return nil, err
	}
	return rec, nil
}

// ListEvents reads the event log newest first (log_id), from where the
// last page ended.
func (t *tx) ListEvents(ctx context.Context, f iu.EventFilter, before int64, limit int) ([]iu.LogEntry, error) {
	q, args := `SELECT log_id, `+logColumns+` FROM iu_auto_instantiate_event_log WHERE log_id < $1`, []any{before}
	// Under a filter, the page is read through the filter's (column,
	// log_id) index. Written as "col = $n", the planner drops col from
	// the order (it is a constant) and walks the whole log newest first
	// instead, filtering: an actor whose entries are older than a million
	// others' is found after 0.4 s. Written as a range of one value with
	// col in the ORDER BY, only that index gives the order (0.5 ms).
	order := "log_id DESC"
	switch {
	case f.Actor != "":
		args = append(args, f.Actor)
		n := strconv.Itoa(len(args))
		q += ` AND actor >= $` + n + ` AND actor <= $` + n
		order = "actor DESC, log_id DESC"
		if f.Status != "" {
			args = append(args, string(f.Status))
			q += ` AND status = $` + strconv.Itoa(len(args))
		}
	case f.Status != "":
		args = append(args, string(f.Status))
		n := strconv.Itoa(len(args))
		q += ` AND status >= $` + n + ` AND status <= $` + n
		order = "status DESC, log_id DESC"
	}
	args = append(args, limit)
	rows, err := t.query(ctx, q+` ORDER BY `+order+` LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.LogEntry{}
	for rows.Next() {
		var e iu.LogEntry
		var status, payload string
		if err := rows.Scan(&e.Seq, &e.IdempotencyKey, &e.EventID, &e.EventType, &e.EventSource, &e.TemplateKey, &e.InstanceKey,
			&e.Actor, &status, &payload, &e.CreatedAt); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		e.Status, e.PayloadDigest = iu.Status(status), iu.StoredDigest(payload)
		out = append(out, e)
	}
	return out, t.s.translate(ctx, rows.Err())
}

const logColumns = `idempotency_key, event_id, event_type, event_source, template_key, instance_key, actor, status, payload_digest, created_at`
