package sqlite

// Claims of idempotency keys, the event log, and the instances they make.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

const logColumns = `idempotency_key, event_id, event_type, event_source, template_key, instance_key, actor, status, payload_digest, created_at`

// Claim claims the entries' keys and writes the instances of those it
// won, at once: a SQLite transaction holds the write lock, so there is no
// round trip to save by holding anything for COMMIT.
func (t *tx) Claim(ctx context.Context, entries []iu.LogEntry, instances []*iu.Instance) ([]iu.Claim, error) {
	existing, err := t.claimEvents(ctx, entries)
	if err != nil {
		return nil, err
	}
	priors, won := iu.SplitClaims(entries, instances, existing)
	if len(won) > 0 {
		if err := t.InsertInstances(ctx, won); err != nil {
			return nil, err
		}
	}
	claims := make([]iu.Claim, len(entries))
	for i, p := range priors {
		claims[i].Prior = p
	}
	return claims, nil
}

// Settle has nothing to do: Claim answers at once.
func (t *tx) Settle(context.Context) error { return nil }

// claimEvents inserts the entries whose keys are new and returns, by key,
// the stored entries of those that were already there.
func (t *tx) claimEvents(ctx context.Context, entries []iu.LogEntry) (map[string]iu.LogEntry, error) {
	// The write lock is held (BEGIN IMMEDIATE), so no one else can claim a
	// key between this lookup and the insert. Looking up first costs one
	// index descent per key, whose pages the insert needs anyway; the
	// alternative, inserting with ON CONFLICT and redoing the statement with
	// RETURNING when a row was skipped, does the insert twice in almost every
	// group-commit batch, since a redelivery in 32 events is the rule.
	keys := make([]any, len(entries))
	for i, e := range entries {
		keys[i] = e.IdempotencyKey
	}
	existing := make(map[string]iu.LogEntry)
	for off := 0; off < len(keys); off += maxInList {
		part := keys[off:min(off+maxInList, len(keys))]
		rows, err := t.query(ctx, `SELECT log_id, `+logColumns+` FROM iu_auto_instantiate_event_log WHERE idempotency_key IN `+inList(len(part)), part...)
		if err != nil {
			return nil, err
		}
		if err := scanLog(rows, existing); err != nil {
			return nil, err
		}
	}
	args := make([]any, 0, 10*(len(entries)-len(existing)))
	for _, e := range entries {
		if _, taken := existing[e.IdempotencyKey]; taken {
			continue
		}
		args = append(args, e.IdempotencyKey, e.EventID, e.EventType, e.EventSource, e.TemplateKey, e.InstanceKey,
			e.Actor, string(e.Status), e.PayloadDigest.String(), fmtTime(e.CreatedAt.Time))
	}
	if err := t.insertRows(ctx, `INSERT INTO iu_auto_instantiate_event_log (`+logColumns+`) VALUES `, 10, "", args); err != nil {
		return nil, err
	}
	return existing, nil
}

func scanLog(rows *sql.Rows, out map[string]iu.LogEntry) error {
	return scanLogRows(rows, func(e iu.LogEntry) { out[e.IdempotencyKey] = e })
}

// scanLogRows reads rows of SELECT log_id, logColumns.
func scanLogRows(rows *sql.Rows, fn func(iu.LogEntry)) error {
	defer rows.Close()
	for rows.Next() {
		var e iu.LogEntry
		var status, payload string
		if err := rows.Scan(&e.Seq, &e.IdempotencyKey, &e.EventID, &e.EventType, &e.EventSource, &e.TemplateKey, &e.InstanceKey,
			&e.Actor, &status, &payload, &e.CreatedAt); err != nil {
			return err
		}
		e.Status, e.PayloadDigest = iu.Status(status), iu.StoredDigest(payload)
		fn(e)
	}
	return rows.Err()
}

func (t *tx) ListEvents(ctx context.Context, f iu.EventFilter, before int64, limit int) ([]iu.LogEntry, error) {
	q := `SELECT log_id, ` + logColumns + ` FROM iu_auto_instantiate_event_log WHERE log_id < ?`
	args := []any{before}
	if f.Actor != "" {
		q, args = q+` AND actor = ?`, append(args, f.Actor)
	}
	if f.Status != "" {
		// With an actor, "+status" keeps the planner on the actor's index:
		// on the status index it walks every ok entry (0.4 s at a million).
		col := "status"
		if f.Actor != "" {
			col = "+status"
		}
		q, args = q+` AND `+col+` = ?`, append(args, string(f.Status))
	}
	rows, err := t.query(ctx, q+` ORDER BY log_id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	out := []iu.LogEntry{}
	return out, t.s.translate(scanLogRows(rows, func(e iu.LogEntry) { out = append(out, e) }))
}

func (t *tx) InsertInstances(ctx context.Context, instances []iu.Instance) error {
	first, err := t.allocIDs(ctx, len(instances))
	if err != nil {
		return err
	}
	cols := make([]any, 0, 7*len(instances))
	lineage := make([]any, 0, 13*len(instances))
	members := make([]any, 0, 3*len(instances))
	wantMembers := int64(0)
	for i := range instances {
		in := &instances[i]
		id := first + int64(i)
		tid, err := t.templateID(ctx, in.TemplateKey)
		if err != nil {
			return err
		}
		members = append(members, id, in.Key, tid)
		wantMembers += int64(len(in.Slots))
		at := fmtTime(in.CreatedAt.Time)
		cols = append(cols, id, in.Key, "instance", in.Title, in.Digest.String(), in.Actor, at)
		var evID, evType, evSource, evSubject, evTime, evData any
		if ev := in.Event; ev != nil {
			evID, evType, evSource, evSubject = ev.ID, ev.Type, ev.Source, ev.Subject
			if !ev.Time.IsZero() {
				evTime = ev.Time.UTC().Format(time.RFC3339Nano)
			}
			if len(ev.Data) > 0 {
				evData = string(ev.Data)
			}
		}
		lineage = append(lineage, id, in.Key, in.TemplateKey, in.TemplateDigest.String(), in.Actor, string(in.Mode),
			evID, evType, evSource, evSubject, evTime, evData, at)
	}
	err = t.insertRows(ctx, `INSERT INTO iu_piece_collection (collection_id, collection_key, collection_kind, title, digest, actor, created_at) VALUES `,
		7, "", cols)
	if err != nil {
		if isUnique(err) {
			return iu.ErrInstanceExists
		}
		return err
	}
	// Instances share their template's graph: copy the template's own
	// membership rows (its piece ids and edges) in SQL, as the seed's
	// fn_iu_compose does, rather than binding every slot from Go.
	var copied int64
	for off := 0; off < len(instances); off += maxRowsPerInsert {
		n := min(maxRowsPerInsert, len(instances)-off)
		q := `WITH n (id, key, tid) AS (VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", ") + `)
			INSERT INTO iu_collection_membership (collection_id, slot, collection_key, position, piece_id, after_slots)
			SELECT n.id, m.slot, n.key, m.position, m.piece_id, m.after_slots
			FROM n JOIN iu_collection_membership m ON m.collection_id = n.tid`
		res, err := t.exec(ctx, q, members[off*3:(off+n)*3]...)
		if err != nil {
			return err
		}
		k, _ := res.RowsAffected()
		copied += k
	}
	if copied != wantMembers {
		return fmt.Errorf("sqlite: copied %d membership rows for %d instances, want %d: an instance's slots are not its template's stored graph", copied, len(instances), wantMembers)
	}
	return t.insertRows(ctx, `INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
		event_id, event_type, event_source, event_subject, event_time, event_data, created_at) VALUES `, 13, "", lineage)
}

func (t *tx) GetInstance(ctx context.Context, key string) (*iu.Instance, error) {
	rec := &iu.Instance{Key: key}
	var id int64
	var digest, at string
	var tkey, tdigest, mode, evID, evType, evSource, evSubject, evTime, evData sql.NullString
	err := t.queryRow(ctx, `SELECT c.collection_id, c.title, c.digest, c.actor, c.created_at, l.template_key, l.template_digest, l.mode,
		l.event_id, l.event_type, l.event_source, l.event_subject, l.event_time, l.event_data
		FROM iu_piece_collection c LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
		WHERE c.collection_key = ? AND c.collection_kind = 'instance'`, []any{key},
		&id, &rec.Title, &digest, &rec.Actor, &at, &tkey, &tdigest, &mode, &evID, &evType, &evSource, &evSubject, &evTime, &evData)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, iu.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	rec.Digest = iu.StoredDigest(digest)
	if err := rec.CreatedAt.Scan(at); err != nil {
		return nil, err
	}
	rec.TemplateKey, rec.Mode = tkey.String, iu.Mode(mode.String)
	if tdigest.Valid {
		rec.TemplateDigest = iu.StoredDigest(tdigest.String)
	}
	if evID.Valid {
		ev := &iu.Event{ID: evID.String, Type: evType.String, Source: evSource.String, Subject: evSubject.String}
		if evTime.Valid {
			ev.Time, _ = time.Parse(time.RFC3339Nano, evTime.String)
		}
		if evData.Valid {
			ev.Data = json.RawMessage(evData.String)
		}
		rec.Event = ev
	}
	if rec.Slots, err = t.slots(ctx, id); err != nil {
		return nil, err
	}
	return rec, nil
}
