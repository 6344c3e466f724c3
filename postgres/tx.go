package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

// tx is an iu.Tx on a PostgreSQL transaction (conn.go has how it talks).
//
// Batch-shaped methods send arrays and let the server unnest them: one
// statement, one round trip, however many rows.
type tx struct {
	s       *Store
	c       *pgx.Conn
	write   bool
	begin   string   // the BEGIN still to send; "" once sent
	pending []queued // writes held back until the next round trip
	modes   map[string]templateHead
	// speculate lets Gates assume the state read last; expect is the state
	// assumed, checked with the first round trip (see state.go).
	speculate bool
	expect    *state
	deferred  *deferredClaim // a claim held for COMMIT (deferred.go)
	ended     bool           // COMMIT has run
	cursors   int            // cursors declared, for their names
	// changedState says that the transaction changed the gates or an emit
	// mode, which transactions assume (state.go).
	changedState bool
}

var errReadOnly = errors.New("postgres: write in a read-only transaction")

// long runs fn with the statement timeout raised to LongStatementTimeout,
// for statements whose work grows with the whole store. The settings ride
// along with the statements around them.
func (t *tx) long(ctx context.Context, fn func() error) error {
	t.hold(queued{sql: `SELECT set_config('statement_timeout', $1, true)`, args: []any{pgInterval(t.s.longTimeout)}})
	if err := fn(); err != nil {
		return err
	}
	t.hold(queued{sql: `SELECT set_config('statement_timeout', $1, true)`, args: []any{t.s.stmtSetting}})
	return nil
}

func parseDigest(s string) iu.Digest {
	d, _ := iu.ParseDigest(s) // a malformed stored digest reads as zero, which verify reports
	return d
}

// Gates reads the gates. In a write transaction it also reads, in the same
// statement, the emit mode and digest of the templates this store used
// last: a single emit then finds its template without a round trip of its
// own (see GetTemplate). A transaction that may speculate reads nothing
// here (see state.go).
func (t *tx) Gates(ctx context.Context) (iu.Gates, error) {
	if g, ok := t.assume(); ok {
		return g, nil
	}
	var keys []string
	if t.write {
		keys = t.s.cache.recent()
	}
	// A read before anything else in the transaction is the committed state,
	// for the next transactions to assume.
	first := t.write && t.begin != "" && len(t.pending) == 0
	sql, args := stateQuery(keys)
	rows, err := t.query(ctx, sql, args...)
	if err != nil {
		return iu.Gates{}, err
	}
	st, err := t.readState(ctx, rows)
	if err != nil {
		return iu.Gates{}, err
	}
	if t.write {
		t.modes = st.heads
	}
	if first {
		t.s.last.set(st)
	}
	return st.gates, nil
}

func (t *tx) SetGates(ctx context.Context, change iu.GateChange, who iu.Who, at time.Time) error {
	if !t.write {
		return errReadOnly
	}
	t.changedState = true
	names := change.Names()
	b := &pgx.Batch{}
	for _, name := range names {
		on := change[name]
		b.Queue(`UPDATE iu_gate SET enabled = $1, updated_at = $2, updated_by = $3 WHERE name = $4`, on, at, who.By, name)
		b.Queue(`INSERT INTO iu_gate_audit (name, enabled, changed_at, changed_by, claimed_actor) VALUES ($1, $2, $3, $4, $5)`, name, on, at, who.By, who.Claimed)
	}
	res, err := t.batch(ctx, b)
	if err != nil {
		return err
	}
	defer res.Close()
	for _, name := range names {
		tag, err := res.Exec()
		if err != nil {
			return t.s.translate(ctx, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: gate %s is missing from iu_gate", name)
		}
		if _, err := res.Exec(); err != nil {
			return t.s.translate(ctx, err)
		}
	}
	return t.s.translate(ctx, res.Close())
}

// olderThan is the keyset condition of the lists read newest first: ids
// below before, or every id when before is 0.
func olderThan(before int64) int64 {
	if before <= 0 {
		return math.MaxInt64
	}
	return before
}

func (t *tx) ListGateAudit(ctx context.Context, before int64, limit int) ([]iu.GateAuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, name, enabled, changed_by, claimed_actor, changed_at FROM iu_gate_audit
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, olderThan(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.GateAuditEntry{}
	for rows.Next() {
		var e iu.GateAuditEntry
		if err := rows.Scan(&e.Seq, &e.Name, &e.Enabled, &e.ChangedBy, &e.Claimed, &e.ChangedAt); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		out = append(out, e)
	}
	return out, t.s.translate(ctx, rows.Err())
}

func (t *tx) InsertAudit(ctx context.Context, e iu.AuditEntry) error {
	if !t.write {
		return errReadOnly
	}
	t.hold(queued{sql: `INSERT INTO iu_audit (at, changed_by, claimed_actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		args: []any{e.At.Time, e.By, e.Claimed, e.Action, e.Subject, e.Detail}})
	return nil
}

func (t *tx) ListAudit(ctx context.Context, before int64, limit int) ([]iu.AuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, at, changed_by, claimed_actor, action, subject, detail FROM iu_audit
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, olderThan(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.AuditEntry{}
	for rows.Next() {
		var e iu.AuditEntry
		if err := rows.Scan(&e.Seq, &e.At, &e.By, &e.Claimed, &e.Action, &e.Subject, &e.Detail); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		out = append(out, e)
	}
	return out, t.s.translate(ctx, rows.Err())
}

// GetTemplate reads the header and the graph in one statement: the engine
// calls it in every single-event transaction. A published graph never
// changes, so when Gates has read this template's emit mode and digest in
// this transaction, the graph comes from the store's cache instead.
func (t *tx) GetTemplate(ctx context.Context, key string) (*iu.Template, error) {
	if h, ok := t.modes[key]; ok {
		if tp := t.s.cache.get(key, h.id, h.digest); tp != nil {
			tp.EmitMode = h.mode
			return tp, nil
		}
	}
	id, tp, err := t.getTemplate(ctx, key)
	if err != nil {
		return nil, err
	}
	t.s.cache.put(id, tp)
	return tp, nil
}

func (t *tx) getTemplate(ctx context.Context, key string) (int64, *iu.Template, error) {
	rows, err := t.query(ctx, `SELECT c.collection_id, c.title, c.digest, c.emit_mode, c.actor, c.created_at, m.slot, m.piece_id, m.after_slots
		FROM iu_piece_collection c LEFT JOIN iu_collection_membership m ON m.collection_id = c.collection_id
		WHERE c.collection_key = $1 AND c.collection_kind = 'template' ORDER BY m.position`, key)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	var tp *iu.Template
	var id int64
	for rows.Next() {
		var title, digest, mode, actor string
		var at time.Time
		var slot, piece, after *string
		if err := rows.Scan(&id, &title, &digest, &mode, &actor, &at, &slot, &piece, &after); err != nil {
			return 0, nil, t.s.translate(ctx, err)
		}
		if tp == nil {
			tp = &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Actor: actor, CreatedAt: iu.TimeOf(at), Digest: parseDigest(digest)}
		}
		if slot != nil {
			tp.Slots = append(tp.Slots, iu.Slot{ID: *slot, Piece: parseDigest(*piece), After: iu.ParseEdgesText(*after)})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, t.s.translate(ctx, err)
	}
	if tp == nil {
		return 0, nil, iu.ErrUnknownTemplate
	}
	return id, tp, nil
}

func (t *tx) ListTemplates(ctx context.Context, after string, limit int) ([]iu.TemplateInfo, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.emit_mode, c.digest, c.actor, c.created_at,
		(SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id)
		FROM iu_piece_collection c WHERE c.collection_kind = 'template' AND c.collection_key > $1
		ORDER BY c.collection_key LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.TemplateInfo{}
	for rows.Next() {
		var ti iu.TemplateInfo
		var mode, digest string
		var pieces int64
		if err := rows.Scan(&ti.Key, &ti.Title, &mode, &digest, &ti.Actor, &ti.CreatedAt, &pieces); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		ti.EmitMode, ti.Digest, ti.Pieces = iu.EmitMode(mode), parseDigest(digest), int(pieces)
		out = append(out, ti)
	}
	return out, t.s.translate(ctx, rows.Err())
}

// slotArrays are slots as the arrays the insert statements unnest.
type slotArrays struct {
	group []int32 // which group of InsertInstances the slot belongs to
	slot  []string
	pos   []int32
	piece []string
	after []string
}

func (a *slotArrays) add(group int32, slots []iu.Slot) {
	for i, s := range slots {
		a.group = append(a.group, group)
		a.slot = append(a.slot, s.ID)
		a.pos = append(a.pos, int32(i))
		a.piece = append(a.piece, s.Piece.String())
		a.after = append(a.after, iu.EdgesText(s.After))
	}
}

// templateInsert stores a template's collection and its memberships in one
// statement.
const templateInsert = `WITH c AS (
		INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, emit_mode, actor, created_at)
		VALUES ($1, 'template', $2, $3, $4, $5, $6) RETURNING collection_id
	)
	INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
	SELECT c.collection_id, s.pos, s.slot, $1, s.piece, s.after
	FROM c, unnest($7::text[], $8::int[], $9::text[], $10::text[]) AS s(slot, pos, piece, after)
	ORDER BY s.slot`

func (t *tx) InsertTemplate(ctx context.Context, tp *iu.Template) error {
	var ids, kinds, bodies []string
	seen := make(map[iu.Digest]bool, len(tp.Slots))
	for _, s := range tp.Slots {
		if seen[s.Piece] {
			continue
		}
		seen[s.Piece] = true
		p := tp.Pieces[s.Piece] // the engine checked that every slot's piece is there
		ids, kinds, bodies = append(ids, s.Piece.String()), append(kinds, p.Kind), append(bodies, p.Body)
	}
	var sa slotArrays
	sa.add(0, tp.Slots)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO iu_piece (piece_id, kind, body, created_at)
		SELECT id, kind, body, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS p(id, kind, body)
		ORDER BY id ON CONFLICT DO NOTHING`, ids, kinds, bodies, tp.CreatedAt.Time)
	b.Queue(templateInsert, tp.Key, tp.Title, tp.Digest.String(), string(tp.EmitMode), tp.Actor, tp.CreatedAt.Time,
		sa.slot, sa.pos, sa.piece, sa.after)
	err := t.sendBatch(ctx, b)
	if isUnique(err) {
		// Another transaction published the key since this one looked. Run
		// again, the engine compares contents and answers no-op or conflict.
		return fmt.Errorf("%w (%w)", iu.ErrTemplateExists, iu.ErrRetryable)
	}
	return err
}

func (t *tx) SetEmitMode(ctx context.Context, key string, mode iu.EmitMode) error {
	t.changedState = true
	tag, err := t.exec(ctx, `UPDATE iu_piece_collection SET emit_mode = $1 WHERE collection_key = $2 AND collection_kind = 'template'`, string(mode), key)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return iu.ErrUnknownTemplate
	}
	return nil
}

func (t *tx) GetPieces(ctx context.Context, ids []iu.Digest) (map[iu.Digest]iu.Piece, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = id.String()
	}
	rows, err := t.query(ctx, `SELECT piece_id, kind, body FROM iu_piece WHERE piece_id = ANY($1)`, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[iu.Digest]iu.Piece, len(ids))
	return out, t.scanPieces(ctx, rows, out)
}

func (t *tx) scanPieces(ctx context.Context, rows pgx.Rows, out map[iu.Digest]iu.Piece) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var p iu.Piece
		if err := rows.Scan(&id, &p.Kind, &p.Body); err != nil {
			return t.s.translate(ctx, err)
		}
		d, err := iu.ParseDigest(id)
		if err != nil {
			return err
		}
		out[d] = p
	}
	return t.s.translate(ctx, rows.Err())
}

func (t *tx) ListPieces(ctx context.Context) (map[iu.Digest]iu.Piece, error) {
	rows, err := t.query(ctx, `SELECT piece_id, kind, body FROM iu_piece`)
	if err != nil {
		return nil, err
	}
	out := make(map[iu.Digest]iu.Piece)
	return out, t.scanPieces(ctx, rows, out)
}

const logColumns = `idempotency_key, event_id, event_type, event_source, template_key, instance_key, actor, status, payload_digest, created_at`

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
		return nil, errReadOnly
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

// lookUpKeys reads the log entries of keys. It is always planned for its
// values (an unnamed statement, or force_custom_plan set around it): a
// generic plan cached while the log was nearly empty reads the whole
// table, and a server started on a fresh schema would keep it until
// autovacuum analyzed the log.
// Each key is its own index probe (a LATERAL subquery, not = ANY): with a
// batch's thirty keys the planner took a scan of a log of a few thousand
// rows for cheaper than thirty probes.
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
		e.Status, e.PayloadDigest = iu.Status(status), parseDigest(payload)
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
		return errReadOnly
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
	rec.Digest = parseDigest(digest)
	if tkey != nil {
		rec.TemplateKey, rec.TemplateDigest, rec.Mode = *tkey, parseDigest(deref(tdigest)), iu.Mode(deref(mode))
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

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// slots reads a collection's membership rows in declaration order.
func (t *tx) slots(ctx context.Context, id int64) ([]iu.Slot, error) {
	rows, err := t.query(ctx, `SELECT slot, piece_id, after_slots FROM iu_collection_membership
		WHERE collection_id = $1 ORDER BY position`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []iu.Slot
	for rows.Next() {
		var id, piece, after string
		if err := rows.Scan(&id, &piece, &after); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		out = append(out, iu.Slot{ID: id, Piece: parseDigest(piece), After: iu.ParseEdgesText(after)})
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
		p := iu.AutoInstancePrefix(f.Prefix)
		if f.AfterKey >= p {
			where = append(where, "c.collection_key > "+arg(f.AfterKey))
		} else {
			where = append(where, "c.collection_key >= "+arg(p))
		}
		where = append(where, "c.collection_key < "+arg(iu.KeyPrefixEnd(p)))
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
		r.TemplateDigest, r.InstanceDigest = parseDigest(td), parseDigest(id)
		r.DigestMatch = match != nil && *match
		out = append(out, r)
	}
	return out, t.s.translate(ctx, rows.Err())
}

// ListEvents reads the event log newest first (log_id), from where the
// last page ended.
func (t *tx) ListEvents(ctx context.Context, f iu.EventFilter, before int64, limit int) ([]iu.LogEntry, error) {
	q, args := `SELECT log_id, `+logColumns+` FROM iu_auto_instantiate_event_log WHERE log_id < $1`, []any{olderThan(before)}
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
		e.Status, e.PayloadDigest = iu.Status(status), parseDigest(payload)
		out = append(out, e)
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

// The rollback statements reach memberships one instance at a time, through
// the primary key: a correlated subquery for the count, an array of ids for
// the delete. Written as joins, they were planned as hash joins over every
// membership row whenever the table had no statistics yet (right after a
// bulk run: 8 million rows read to roll back 3 instances).

// rollbackCount counts what rolling back an actor deletes.
const rollbackCount = `SELECT
	(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = $1),
	(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto'),
	(SELECT count(*) FROM iu_collection_template_instance_lineage l WHERE l.actor = $1 AND l.mode = 'auto'
		AND EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_id = l.instance_id)),
	(SELECT coalesce(sum((SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = l.instance_id)), 0)
		FROM iu_collection_template_instance_lineage l WHERE l.actor = $1 AND l.mode = 'auto')`

// rollbackApply deletes an actor's auto instantiations in ONE statement:
// every part sees the same snapshot, so an emit that commits meanwhile is
// either wholly deleted or wholly kept, never split into orphans.
const rollbackApply = `WITH doomed AS (
		DELETE FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto' RETURNING instance_id
	), log AS (
		DELETE FROM iu_auto_instantiate_event_log WHERE actor = $1 RETURNING 1
	), coll AS (
		DELETE FROM iu_piece_collection WHERE collection_kind = 'instance' AND collection_id = ANY (ARRAY(SELECT instance_id FROM doomed))
		RETURNING 1
	), mem AS (
		DELETE FROM iu_collection_membership WHERE collection_id = ANY (ARRAY(SELECT instance_id FROM doomed)) RETURNING 1
	)
	SELECT (SELECT count(*) FROM log), (SELECT count(*) FROM doomed), (SELECT count(*) FROM coll), (SELECT count(*) FROM mem)`

func (t *tx) RollbackActor(ctx context.Context, actor string, apply bool) (iu.RollbackCounts, error) {
	var c iu.RollbackCounts
	q := rollbackCount
	if apply {
		if !t.write {
			return c, errReadOnly
		}
		q = rollbackApply
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
// membership rows folded into one string (fields split by \x1f, rows by
// \x1e; neither occurs in slot ids, piece ids or edges). The instances of
// one template fold to the same string, which is parsed once.
//
// It runs as one cursor, fetched a page at a time, rather than as a query
// per page ("collection_id > last ORDER BY collection_id LIMIT n"): right
// after a bulk run, before the tables have statistics, the planner took an
// actor's million instances for a few and answered every page by reading
// and sorting all of them.
const scanGraphs = `DECLARE %s NO SCROLL CURSOR FOR
	SELECT c.collection_key, c.digest, l.instance_id IS NOT NULL,
		coalesce(l.template_key, ''), coalesce(l.template_digest, ''),
		coalesce((SELECT string_agg(s.row, chr(30)) FROM (
			SELECT m.slot || chr(31) || m.piece_id || chr(31) || m.after_slots AS row
			FROM iu_collection_membership m WHERE m.collection_id = c.collection_id ORDER BY m.collection_id, m.slot) s), '')
	FROM iu_piece_collection c
	LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_id = c.collection_id
	WHERE c.collection_kind = 'instance' %s
	ORDER BY c.collection_id`

func (t *tx) ScanInstanceGraphs(ctx context.Context, actor string, fn func(*iu.InstanceGraph) error) error {
	var args []any
	filter := ""
	if actor != "" {
		filter = "AND c.actor = $1"
		args = append(args, actor)
	}
	t.cursors++
	cursor := fmt.Sprintf("iu_graphs_%d", t.cursors)
	t.hold(queued{sql: fmt.Sprintf(scanGraphs, cursor, filter), args: args})
	fetch := fmt.Sprintf("FETCH %d FROM %s", graphPage, cursor)
	var unfold iu.SlotUnfolder
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
			var folded []byte
			if err := rows.Scan(&g.Key, &digest, &g.HasLineage, &g.TemplateKey, &tdigest, &folded); err != nil {
				rows.Close()
				return t.s.translate(ctx, err)
			}
			g.Digest, g.TemplateDigest = parseDigest(digest), parseDigest(tdigest)
			g.Slots = unfold.Unfold(string(folded))
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
		tp := &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Digest: parseDigest(digest)}
		for i := range slots {
			tp.Slots = append(tp.Slots, iu.Slot{ID: slots[i], Piece: parseDigest(pieces[i]), After: iu.ParseEdgesText(afters[i])})
		}
		out[key] = tp
	}
	return out, t.s.translate(ctx, rows.Err())
}

// CountOrphans counts rows that point at something missing. A membership or
// lineage row whose collection_id names a collection with another key
// counts too. Memberships are counted with outer joins, which the planner
// turns into one pass with hash lookups; "NOT EXISTS (...) OR NOT EXISTS
// (...)" was run as an index lookup per membership row (15 s at a million
// instances).
func (t *tx) CountOrphans(ctx context.Context) (iu.Orphans, error) {
	var o iu.Orphans
	err := t.long(ctx, func() error {
		return t.queryRow(ctx, `SELECT
			(SELECT count(*) FROM iu_collection_membership m
				LEFT JOIN iu_piece_collection c ON c.collection_id = m.collection_id AND c.collection_key = m.collection_key
				LEFT JOIN iu_piece p ON p.piece_id = m.piece_id
				WHERE c.collection_id IS NULL OR p.piece_id IS NULL),
			(SELECT count(*) FROM iu_collection_template_instance_lineage l
				WHERE NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_id = l.instance_id AND c.collection_key = l.instance_key)),
			(SELECT count(*) FROM iu_auto_instantiate_event_log e
				WHERE e.status = 'ok' AND NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = e.instance_key)),
			(SELECT count(*) FROM iu_piece_collection c
				WHERE c.collection_kind = 'instance'
				  AND NOT EXISTS (SELECT 1 FROM iu_collection_template_instance_lineage l WHERE l.instance_id = c.collection_id))`,
			nil, &o.Memberships, &o.Lineage, &o.EventLog, &o.Instances)
	})
	return o, err
}
