package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/iu-engine/iu"
)

// What happens to an instance after it is made: compensation and
// migration to another version of its template.

func (t *tx) GetLogEntry(ctx context.Context, key string) (iu.LogEntry, error) {
	rows, err := t.query(ctx, `SELECT log_id, `+logColumns+` FROM iu_auto_instantiate_event_log WHERE idempotency_key = ?`, key)
	if err != nil {
		return iu.LogEntry{}, err
	}
	var out []iu.LogEntry
	if err := scanLogRows(rows, func(e iu.LogEntry) { out = append(out, e) }); err != nil {
		return iu.LogEntry{}, t.s.translate(err)
	}
	if len(out) == 0 {
		return iu.LogEntry{}, iu.ErrNotFound
	}
	return out[0], nil
}

func (t *tx) SetLogStatus(ctx context.Context, key string, status iu.Status) error {
	_, err := t.exec(ctx, `UPDATE iu_auto_instantiate_event_log SET status = ? WHERE idempotency_key = ?`, string(status), key)
	return err
}

func (t *tx) DeleteLogEntry(ctx context.Context, key string) error {
	_, err := t.exec(ctx, `DELETE FROM iu_auto_instantiate_event_log WHERE idempotency_key = ?`, key)
	return err
}

func (t *tx) DeleteInstance(ctx context.Context, key string) (iu.DeletedInstance, error) {
	var d iu.DeletedInstance
	var id int64
	var tkey, tdigest sql.NullString
	err := t.queryRow(ctx, `SELECT c.collection_id, (SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id),
			l.template_key, l.template_digest
		FROM iu_piece_collection c LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
		WHERE c.collection_key = ? AND c.collection_kind = 'instance'`, []any{key}, &id, &d.Memberships, &tkey, &tdigest)
	if errors.Is(err, sql.ErrNoRows) {
		return d, iu.ErrNotFound
	}
	if err != nil {
		return d, err
	}
	d.TemplateKey, d.TemplateDigest = tkey.String, iu.StoredDigest(tdigest.String)
	if _, err := t.exec(ctx, `DELETE FROM iu_collection_template_instance_lineage WHERE instance_id = ?`, id); err != nil {
		return d, err
	}
	// Memberships go with their collection (ON DELETE CASCADE). Its
	// migration records stay, found by key from now on.
	if _, err := t.exec(ctx, `DELETE FROM iu_piece_collection WHERE collection_id = ?`, id); err != nil {
		return d, err
	}
	if _, err := t.exec(ctx, `UPDATE iu_instance_migration SET instance_id = NULL WHERE instance_id = ?`, id); err != nil {
		return d, err
	}
	return d, nil
}

const compensationColumns = `instance_key, template_key, template_digest, mode, event_id, event_source, event_type, actor,
	instance_created_at, reason, compensated_at, compensated_by, claimed_actor, released`

func (t *tx) InsertCompensation(ctx context.Context, c iu.Compensation) error {
	_, err := t.exec(ctx, `INSERT INTO iu_compensation (`+compensationColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.InstanceKey, c.TemplateKey, c.TemplateDigest.String(), string(c.Mode), nullable(c.EventID), nullable(c.EventSource), nullable(c.EventType),
		c.Actor, fmtTime(c.InstanceAt.Time), c.Reason, fmtTime(c.At.Time), c.By, c.Claimed, c.Released)
	return err
}

func (t *tx) ReleaseCompensations(ctx context.Context, actor string, r iu.Release) error {
	_, err := t.exec(ctx, `UPDATE iu_compensation SET released = 1, released_at = ?, released_by = ?, release_claimed_actor = ?, release_reason = ?
		WHERE NOT released AND actor = ? AND instance_key IN (
			SELECT instance_key FROM iu_auto_instantiate_event_log WHERE actor = ? AND status = 'compensated')`,
		fmtTime(r.At.Time), r.By, r.Claimed, r.Reason, actor, actor)
	return err
}

func (t *tx) SetCompensationReleased(ctx context.Context, seq int64, r iu.Release) (bool, error) {
	res, err := t.exec(ctx, `UPDATE iu_compensation SET released = 1, released_at = ?, released_by = ?, release_claimed_actor = ?, release_reason = ?
		WHERE id = ? AND NOT released`, fmtTime(r.At.Time), r.By, r.Claimed, r.Reason, seq)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t *tx) ListCompensations(ctx context.Context, key string) ([]iu.Compensation, error) {
	rows, err := t.query(ctx, `SELECT id, `+compensationColumns+`, released_at, released_by, release_claimed_actor, release_reason
		FROM iu_compensation WHERE instance_key = ? ORDER BY id`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []iu.Compensation
	for rows.Next() {
		var c iu.Compensation
		var digest, mode string
		var evID, evSource, evType sql.NullString
		var later iu.Release // released_at NULL scans as the zero time: none
		if err := rows.Scan(&c.Seq, &c.InstanceKey, &c.TemplateKey, &digest, &mode, &evID, &evSource, &evType, &c.Actor,
			&c.InstanceAt, &c.Reason, &c.At, &c.By, &c.Claimed, &c.Released, &later.At, &later.By, &later.Claimed, &later.Reason); err != nil {
			return nil, t.s.translate(err)
		}
		if !later.At.Time.IsZero() {
			c.Later = &later
		}
		c.TemplateDigest = iu.StoredDigest(digest)
		c.Mode, c.EventID, c.EventSource, c.EventType = iu.Mode(mode), evID.String, evSource.String, evType.String
		out = append(out, c)
	}
	return out, t.s.translate(rows.Err())
}

// migrationWhere selects the lineage rows (l) of a migration's instances
// of one mode after a creation-order position; c is their collection.
func migrationWhere(sel iu.MigrationSelector, mode iu.Mode, after int64) (string, []any) {
	where := []string{"l.template_key = ?", "l.mode = ?", "l.instance_id > ?"}
	args := []any{sel.From, string(mode), after}
	if sel.Actor != "" {
		where, args = append(where, "l.actor = ?"), append(args, sel.Actor)
	}
	if sel.Prefix != "" {
		r := iu.PrefixRange(sel.Prefix, "")
		where, args = append(where, "l.instance_key "+r.FromOp()+" ? AND l.instance_key < ?"), append(args, r.From, r.To)
	}
	return strings.Join(where, " AND "), args
}

func (t *tx) CountMigration(ctx context.Context, sel iu.MigrationSelector, mode iu.Mode) (n int64, err error) {
	where, args := migrationWhere(sel, mode, 0)
	err = t.queryRow(ctx, `SELECT count(*) FROM iu_collection_template_instance_lineage l WHERE `+where, args, &n)
	return n, err
}

// MigrateInstances moves a batch over a temporary table of the batch's
// instances, a statement per slot the plan removes or writes (each finds
// the batch's rows through the primary key) and one per table after: the
// write lock is held, so nothing moves them meanwhile.
func (t *tx) MigrateInstances(ctx context.Context, sel iu.MigrationSelector, mode iu.Mode, after int64, limit int, plan iu.MigrationPlan, rec iu.InstanceMigration) (moved, seen int, last int64, err error) {
	where, args := migrationWhere(sel, mode, after)
	steps := []statement{
		{`CREATE TEMP TABLE IF NOT EXISTS iu_migrating (instance_id INTEGER PRIMARY KEY, instance_key TEXT NOT NULL, from_digest TEXT NOT NULL)`, nil},
		{`DELETE FROM temp.iu_migrating`, nil},
		{`INSERT INTO temp.iu_migrating SELECT l.instance_id, l.instance_key, l.template_digest FROM iu_collection_template_instance_lineage l
			WHERE ` + where + ` ORDER BY l.instance_id LIMIT ?`, append(args, limit)},
	}
	if err := t.execAll(ctx, steps); err != nil {
		return 0, 0, 0, err
	}
	if err := t.queryRow(ctx, `SELECT count(*), coalesce(max(instance_id), 0) FROM temp.iu_migrating`, nil, &seen, &last); err != nil {
		return 0, 0, 0, err
	}
	if seen == 0 {
		return 0, 0, after, nil
	}
	to := plan.To
	var moves []statement
	for _, slot := range plan.Remove {
		moves = append(moves, statement{`DELETE FROM iu_collection_membership
			WHERE collection_id IN (SELECT instance_id FROM temp.iu_migrating) AND slot = ?`, []any{slot}})
	}
	for _, s := range plan.Put {
		// WHERE true: SQLite's parser needs it between a SELECT and ON CONFLICT.
		moves = append(moves, statement{`INSERT INTO iu_collection_membership (collection_id, slot, collection_key, position, piece_id, after_slots)
			SELECT instance_id, ?, instance_key, ?, ?, ? FROM temp.iu_migrating WHERE true
			ON CONFLICT (collection_id, slot) DO UPDATE SET position = excluded.position, piece_id = excluded.piece_id, after_slots = excluded.after_slots`,
			[]any{s.ID, s.Position, s.Piece.String(), iu.EdgesText(s.After)}})
	}
	moves = append(moves,
		statement{`UPDATE iu_piece_collection SET digest = ?, title = ? WHERE collection_id IN (SELECT instance_id FROM temp.iu_migrating)`,
			[]any{to.Digest.String(), to.Title}},
		statement{`UPDATE iu_collection_template_instance_lineage SET template_key = ?, template_digest = ?
			WHERE instance_id IN (SELECT instance_id FROM temp.iu_migrating)`, []any{to.Key, to.Digest.String()}},
		statement{`INSERT INTO iu_instance_migration (instance_id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor)
			SELECT instance_id, instance_key, ?, from_digest, ?, ?, ?, ?, ? FROM temp.iu_migrating ORDER BY instance_id`,
			[]any{rec.FromKey, to.Key, to.Digest.String(), fmtTime(rec.At.Time), rec.By, rec.Claimed}},
		statement{`DELETE FROM temp.iu_migrating`, nil},
	)
	if err := t.execAll(ctx, moves); err != nil {
		return 0, 0, 0, err
	}
	return seen, seen, last, nil
}

// statement is one SQL statement and its arguments.
type statement struct {
	sql  string
	args []any
}

func (t *tx) execAll(ctx context.Context, ss []statement) error {
	for _, s := range ss {
		if _, err := t.exec(ctx, s.sql, s.args...); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ListMigrations(ctx context.Context, key string) ([]iu.InstanceMigration, error) {
	// The live instance's records by its id; those of lives that ended
	// (compensated) by key.
	rows, err := t.query(ctx, `SELECT id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor
		FROM iu_instance_migration WHERE instance_id = (SELECT collection_id FROM iu_piece_collection WHERE collection_key = ?1 AND collection_kind = 'instance')
		UNION ALL
		SELECT id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor
		FROM iu_instance_migration WHERE instance_key = ?1 AND instance_id IS NULL
		ORDER BY id`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []iu.InstanceMigration
	for rows.Next() {
		var m iu.InstanceMigration
		var fd, td string
		if err := rows.Scan(&m.Seq, &m.InstanceKey, &m.FromKey, &fd, &m.ToKey, &td, &m.At, &m.By, &m.Claimed); err != nil {
			return nil, t.s.translate(err)
		}
		m.FromDigest = iu.StoredDigest(fd)
		m.ToDigest = iu.StoredDigest(td)
		out = append(out, m)
	}
	return out, t.s.translate(rows.Err())
}
