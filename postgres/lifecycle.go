package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

// What happens to an instance after it is made: compensation and
// migration to another version of its template.

func (t *tx) GetLogEntry(ctx context.Context, key string) (iu.LogEntry, error) {
	rows, err := t.query(ctx, lookUpKey, key)
	if err != nil {
		return iu.LogEntry{}, err
	}
	found := make(map[string]iu.LogEntry, 1)
	if err := t.scanLog(ctx, rows, found); err != nil {
		return iu.LogEntry{}, err
	}
	e, ok := found[key]
	if !ok {
		return iu.LogEntry{}, iu.ErrNotFound
	}
	return e, nil
}

func (t *tx) SetLogStatus(ctx context.Context, key string, status iu.Status) error {
	_, err := t.exec(ctx, `UPDATE iu_auto_instantiate_event_log SET status = $1 WHERE idempotency_key = $2`, string(status), key)
	return err
}

func (t *tx) DeleteLogEntry(ctx context.Context, key string) error {
	_, err := t.exec(ctx, `DELETE FROM iu_auto_instantiate_event_log WHERE idempotency_key = $1`, key)
	return err
}

// deleteInstance deletes one instance's rows in one statement, under one
// snapshot, and counts its memberships.
const deleteInstance = `WITH c AS (
		DELETE FROM iu_piece_collection WHERE collection_key = $1 AND collection_kind = 'instance' RETURNING collection_id
	), l AS (
		DELETE FROM iu_collection_template_instance_lineage WHERE instance_id = (SELECT collection_id FROM c) RETURNING template_key, template_digest
	), m AS (
		DELETE FROM iu_collection_membership WHERE collection_id = (SELECT collection_id FROM c) RETURNING 1
	), ended AS (
		UPDATE iu_instance_migration SET instance_id = NULL WHERE instance_id = (SELECT collection_id FROM c)
	)
	SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM m),
		coalesce((SELECT template_key FROM l), ''), coalesce((SELECT template_digest FROM l), '')`

// Migration batches and deletions of instances take turns on movingLock:
// a batch holds it shared, a compensation or a rollback exclusive, each
// taken in a statement of its own before their writes. A deletion waits so
// for the batches in flight to commit, and its next statement's snapshot
// has what they wrote; without it, a deletion blocked on the rows a batch
// held deleted them, but not the migration record and the added
// memberships the batch inserted, which its snapshot did not show.
func (t *tx) takeMovingLock(exclusive bool) {
	fn := "pg_advisory_xact_lock_shared"
	if exclusive {
		fn = "pg_advisory_xact_lock"
	}
	t.hold(queued{sql: "SELECT " + fn + "($1)", args: []any{t.s.movingLock}})
}

func (t *tx) DeleteInstance(ctx context.Context, key string) (iu.DeletedInstance, error) {
	var d iu.DeletedInstance
	if !t.write {
		return d, iu.ErrWriteInView
	}
	t.takeMovingLock(true)
	var found int64
	var digest string
	if err := t.queryRow(ctx, deleteInstance, []any{key}, &found, &d.Memberships, &d.TemplateKey, &digest); err != nil {
		return d, err
	}
	if found == 0 {
		return d, iu.ErrNotFound
	}
	d.TemplateDigest = iu.StoredDigest(digest)
	return d, nil
}

const compensationColumns = `instance_key, template_key, template_digest, mode, event_id, event_source, event_type, actor,
	instance_created_at, reason, compensated_at, compensated_by, claimed_actor, released`

func (t *tx) InsertCompensation(ctx context.Context, c iu.Compensation) error {
	_, err := t.exec(ctx, `INSERT INTO iu_compensation (`+compensationColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		c.InstanceKey, c.TemplateKey, c.TemplateDigest.String(), string(c.Mode), nullable(c.EventID), nullable(c.EventSource), nullable(c.EventType),
		c.Actor, c.InstanceAt.Time, c.Reason, c.At.Time, c.By, c.Claimed, c.Released)
	return err
}

func (t *tx) ReleaseCompensations(ctx context.Context, actor string, r iu.Release) error {
	_, err := t.exec(ctx, `UPDATE iu_compensation SET released = true, released_at = $1, released_by = $2, release_claimed_actor = $3, release_reason = $4
		WHERE NOT released AND actor = $5 AND instance_key IN (
			SELECT instance_key FROM iu_auto_instantiate_event_log WHERE actor = $5 AND status = 'compensated')`,
		r.At.Time, r.By, r.Claimed, r.Reason, actor)
	return err
}

func (t *tx) SetCompensationReleased(ctx context.Context, seq int64, r iu.Release) (bool, error) {
	tag, err := t.exec(ctx, `UPDATE iu_compensation SET released = true, released_at = $2, released_by = $3, release_claimed_actor = $4, release_reason = $5
		WHERE id = $1 AND NOT released`, seq, r.At.Time, r.By, r.Claimed, r.Reason)
	return tag.RowsAffected() == 1, err
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (t *tx) ListCompensations(ctx context.Context, key string) ([]iu.Compensation, error) {
	rows, err := t.query(ctx, `SELECT id, `+compensationColumns+`, released_at, released_by, release_claimed_actor, release_reason
		FROM iu_compensation WHERE instance_key = $1 ORDER BY id`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []iu.Compensation
	for rows.Next() {
		var c iu.Compensation
		var digest, mode string
		var evID, evSource, evType *string
		var laterAt *time.Time
		var later iu.Release
		if err := rows.Scan(&c.Seq, &c.InstanceKey, &c.TemplateKey, &digest, &mode, &evID, &evSource, &evType, &c.Actor,
			&c.InstanceAt, &c.Reason, &c.At, &c.By, &c.Claimed, &c.Released, &laterAt, &later.By, &later.Claimed, &later.Reason); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		if laterAt != nil {
			later.At = iu.TimeOf(*laterAt)
			c.Later = &later
		}
		c.TemplateDigest, c.Mode = iu.StoredDigest(digest), iu.Mode(mode)
		c.EventID, c.EventSource, c.EventType = deref(evID), deref(evSource), deref(evType)
		out = append(out, c)
	}
	return out, t.s.translate(ctx, rows.Err())
}

// migrationWhere selects the lineage rows (l) of a migration's instances
// of one mode after a creation-order position: a range of the template
// index (template_key, mode, instance_id).
func migrationWhere(sel iu.MigrationSelector, mode iu.Mode, after int64) (string, []any) {
	args := []any{sel.From, string(mode), after}
	where := []string{"l.template_key = $1", "l.mode = $2", "l.instance_id > $3"}
	if sel.Actor != "" {
		args = append(args, sel.Actor)
		where = append(where, "l.actor = $"+strconv.Itoa(len(args)))
	}
	if sel.Prefix != "" {
		r := iu.PrefixRange(sel.Prefix, "")
		args = append(args, r.From, r.To)
		where = append(where, "l.instance_key "+r.FromOp()+" $"+strconv.Itoa(len(args)-1)+" AND l.instance_key < $"+strconv.Itoa(len(args)))
	}
	return strings.Join(where, " AND "), args
}

func (t *tx) CountMigration(ctx context.Context, sel iu.MigrationSelector, mode iu.Mode) (n int64, err error) {
	where, args := migrationWhere(sel, mode, 0)
	err = t.queryRow(ctx, `SELECT count(*) FROM iu_collection_template_instance_lineage l WHERE `+where, args, &n)
	return n, err
}

// migrateLineage moves a batch's lineage rows (the candidates: a range of
// the template index (template_key, mode, instance_id) after where is, n
// the number of where's parameters), locking them: an instance that another
// transaction moved first is no longer on the source ($1), and is left
// alone. It returns each instance moved with its former digest, and a row
// 'c' with the candidates' count and last instance_id. Rows are found
// through the primary key with = ANY (an array), whatever the statistics
// say: as a join with the candidates, before the tables had been analyzed,
// every batch was planned as a scan of the whole table (750 instances/s).
func migrateLineage(where string, n int) string {
	return fmt.Sprintf(`WITH cand AS MATERIALIZED (
		SELECT l.instance_id, l.template_digest FROM iu_collection_template_instance_lineage l WHERE %s ORDER BY l.instance_id LIMIT $%d
	), moved AS (
		UPDATE iu_collection_template_instance_lineage l SET template_key = $%d, template_digest = $%d
		WHERE l.instance_id = ANY (ARRAY(SELECT instance_id FROM cand)) AND l.template_key = $1
		RETURNING l.instance_id, l.instance_key
	)
	SELECT 'm', m.instance_id, m.instance_key, c.template_digest FROM moved m JOIN cand c ON c.instance_id = m.instance_id
	UNION ALL SELECT 'c', count(*), '', coalesce(max(instance_id), 0)::text FROM cand`, where, n+1, n+2, n+3)
}

// migrateRest writes what follows a batch's move: its memberships of the
// slots the plan removes are deleted, its collections take the target's
// digest and title, and each move is recorded. The slots the plan writes
// follow in migratePut. Rows are found with = ANY ($1), as in
// migrateLineage.
const migrateRest = `WITH d AS (
		DELETE FROM iu_collection_membership m WHERE m.collection_id = ANY ($1::bigint[]) AND m.slot = ANY ($11::text[])
	), c AS (
		UPDATE iu_piece_collection c SET digest = $4, title = $5 WHERE c.collection_id = ANY ($1::bigint[])
	)
	INSERT INTO iu_instance_migration (instance_id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor)
	SELECT n.id, n.key, $6, n.from_digest, $7, $4, $8, $9, $10
	FROM unnest($1::bigint[], $2::text[], $3::text[]) AS n(id, key, from_digest) ORDER BY n.id`

// migratePut writes the slots the plan adds or changes into each instance
// of the batch (sent once as arrays, as InsertInstances does), in a
// statement of its own, after migrateRest's writes.
const migratePut = `INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
	SELECT n.id, s.pos, s.slot, n.key, s.piece, s.after
	FROM unnest($1::bigint[], $2::text[]) AS n(id, key), unnest($3::int[], $4::text[], $5::text[], $6::text[]) AS s(pos, slot, piece, after)
	ORDER BY n.id, s.slot
	ON CONFLICT (collection_id, slot) DO UPDATE SET position = excluded.position, piece_id = excluded.piece_id, after_slots = excluded.after_slots`

func (t *tx) MigrateInstances(ctx context.Context, sel iu.MigrationSelector, mode iu.Mode, after int64, limit int, plan iu.MigrationPlan, rec iu.InstanceMigration) (moved, seen int, last int64, err error) {
	if !t.write {
		return 0, 0, 0, iu.ErrWriteInView
	}
	t.takeMovingLock(false)
	to := plan.To
	where, args := migrationWhere(sel, mode, after)
	q := migrateLineage(where, len(args))
	args = append(args, limit, to.Key, to.Digest.String())
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return 0, 0, 0, err
	}
	var ids []int64
	var keys, digests []string
	for rows.Next() {
		var kind, key, digest string
		var id int64
		if err := rows.Scan(&kind, &id, &key, &digest); err != nil {
			rows.Close()
			return 0, 0, 0, t.s.translate(ctx, err)
		}
		if kind == "c" {
			seen = int(id)
			last, _ = strconv.ParseInt(digest, 10, 64)
			continue
		}
		ids, keys, digests = append(ids, id), append(keys, key), append(digests, digest)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, 0, t.s.translate(ctx, err)
	}
	if seen == 0 {
		return 0, 0, after, nil
	}
	if len(ids) == 0 {
		return 0, seen, last, nil
	}
	b := &pgx.Batch{}
	b.Queue(migrateRest, ids, keys, digests, to.Digest.String(), to.Title, rec.FromKey, to.Key, rec.At.Time, rec.By, rec.Claimed, plan.Remove)
	if len(plan.Put) > 0 {
		var sa slotArrays
		for _, s := range plan.Put {
			sa.addAt(0, s.Position, s.Slot)
		}
		b.Queue(migratePut, ids, keys, sa.pos, sa.slot, sa.piece, sa.after)
	}
	if err := t.sendBatch(ctx, b); err != nil {
		return 0, 0, 0, err
	}
	return len(ids), seen, last, nil
}

func (t *tx) ListMigrations(ctx context.Context, key string) ([]iu.InstanceMigration, error) {
	// The live instance's records by its id; those of lives that ended
	// (compensated) by key.
	rows, err := t.query(ctx, `SELECT id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor
		FROM iu_instance_migration WHERE instance_id = (SELECT collection_id FROM iu_piece_collection WHERE collection_key = $1 AND collection_kind = 'instance')
		UNION ALL
		SELECT id, instance_key, from_key, from_digest, to_key, to_digest, migrated_at, migrated_by, claimed_actor
		FROM iu_instance_migration WHERE instance_key = $1 AND instance_id IS NULL
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
			return nil, t.s.translate(ctx, err)
		}
		m.FromDigest, m.ToDigest = iu.StoredDigest(fd), iu.StoredDigest(td)
		out = append(out, m)
	}
	return out, t.s.translate(ctx, rows.Err())
}
