package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// prefixEnd returns the smallest string greater than every string that
// starts with p, so that "k >= p AND k < prefixEnd(p)" is an index range
// (keys are COLLATE "C": byte order).
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\xff\xff\xff\xff"
}

func parseDigest(s string) iu.Digest {
	d, _ := iu.ParseDigest(s) // a malformed stored digest reads as zero, which verify reports
	return d
}

func splitAfter(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

// Gates reads the gates. In a write transaction it also reads, in the same
// round trip, the emit mode and digest of the templates this store used
// last: a single emit then finds its template without a round trip of its
// own (see GetTemplate).
func (t *tx) Gates(ctx context.Context) (iu.Gates, error) {
	var g iu.Gates
	var keys []string
	if t.write {
		keys = t.s.cache.recent()
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT name, enabled FROM iu_gate`)
	if len(keys) > 0 {
		b.Queue(`SELECT collection_key, emit_mode, digest FROM iu_piece_collection
			WHERE collection_key = ANY($1) AND collection_kind = 'template'`, keys)
	}
	br, err := t.batch(ctx, b)
	if err != nil {
		return g, err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return g, t.s.translate(ctx, err)
	}
	for rows.Next() {
		var name string
		var on bool
		if err := rows.Scan(&name, &on); err != nil {
			rows.Close()
			return g, t.s.translate(ctx, err)
		}
		g.Set(name, on)
	}
	if err := rows.Err(); err != nil {
		return g, t.s.translate(ctx, err)
	}
	if len(keys) > 0 {
		rows, err := br.Query()
		if err != nil {
			return g, t.s.translate(ctx, err)
		}
		t.modes = make(map[string]templateHead, len(keys))
		for rows.Next() {
			var key, mode, digest string
			if err := rows.Scan(&key, &mode, &digest); err != nil {
				rows.Close()
				return g, t.s.translate(ctx, err)
			}
			t.modes[key] = templateHead{mode: iu.EmitMode(mode), digest: digest}
		}
		if err := rows.Err(); err != nil {
			return g, t.s.translate(ctx, err)
		}
	}
	return g, t.s.translate(ctx, br.Close())
}

func (t *tx) SetGates(ctx context.Context, change iu.GateChange, actor string, at time.Time) error {
	if !t.write {
		return errReadOnly
	}
	names := change.Names()
	b := &pgx.Batch{}
	for _, name := range names {
		on := change[name]
		b.Queue(`UPDATE iu_gate SET enabled = $1, updated_at = $2, updated_by = $3 WHERE name = $4`, on, at, actor, name)
		b.Queue(`INSERT INTO iu_gate_audit (name, enabled, changed_at, changed_by) VALUES ($1, $2, $3, $4)`, name, on, at, actor)
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

func (t *tx) ListGateAudit(ctx context.Context, limit int) ([]iu.GateAuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := t.query(ctx, `SELECT name, enabled, changed_by, changed_at FROM iu_gate_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.GateAuditEntry{}
	for rows.Next() {
		var e iu.GateAuditEntry
		if err := rows.Scan(&e.Name, &e.Enabled, &e.ChangedBy, &e.ChangedAt); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		e.ChangedAt = e.ChangedAt.UTC()
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
		if tp := t.s.cache.get(key, h.digest); tp != nil {
			tp.EmitMode = h.mode
			return tp, nil
		}
	}
	tp, err := t.getTemplate(ctx, key)
	if err == nil {
		t.s.cache.put(tp)
	}
	return tp, err
}

func (t *tx) getTemplate(ctx context.Context, key string) (*iu.Template, error) {
	rows, err := t.query(ctx, `SELECT c.title, c.digest, c.emit_mode, c.actor, c.created_at, m.slot, m.piece_id, m.after_slots
		FROM iu_piece_collection c LEFT JOIN iu_collection_membership m ON m.collection_key = c.collection_key
		WHERE c.collection_key = $1 AND c.collection_kind = 'template' ORDER BY m.position`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tp *iu.Template
	for rows.Next() {
		var title, digest, mode, actor string
		var at time.Time
		var slot, piece, after *string
		if err := rows.Scan(&title, &digest, &mode, &actor, &at, &slot, &piece, &after); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		if tp == nil {
			tp = &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Actor: actor, CreatedAt: at.UTC(), Digest: parseDigest(digest)}
		}
		if slot != nil {
			tp.Slots = append(tp.Slots, iu.Slot{ID: *slot, Piece: parseDigest(*piece), After: splitAfter(*after)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, t.s.translate(ctx, err)
	}
	if tp == nil {
		return nil, iu.Errorf(iu.ErrUnknownTemplate, "unknown template %q", key)
	}
	return tp, nil
}

func (t *tx) ListTemplates(ctx context.Context) ([]iu.TemplateInfo, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.emit_mode, c.digest, c.actor, c.created_at,
		(SELECT count(*) FROM iu_collection_membership m WHERE m.collection_key = c.collection_key)
		FROM iu_piece_collection c WHERE c.collection_kind = 'template' ORDER BY c.collection_key`)
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
		ti.EmitMode, ti.Digest, ti.Pieces, ti.CreatedAt = iu.EmitMode(mode), parseDigest(digest), int(pieces), ti.CreatedAt.UTC()
		out = append(out, ti)
	}
	return out, t.s.translate(ctx, rows.Err())
}

// membershipInsert stores slots for many collections at once: $1 and $2
// name each collection and which of the slot groups ($3..$7) it gets, so a
// thousand instances of one template send that template's slots once.
const membershipInsert = `INSERT INTO iu_collection_membership (collection_key, slot, position, piece_id, after_slots)
	SELECT c.k, s.slot, s.pos, s.piece, s.after
	FROM unnest($1::text[], $2::int[]) AS c(k, g)
	JOIN unnest($3::int[], $4::text[], $5::int[], $6::text[], $7::text[]) AS s(g, slot, pos, piece, after) USING (g)`

// slotGroups collects the distinct slot lists of collections as the arrays
// of membershipInsert. Instances of one template share its Slots slice, so
// groups are found by the slice's identity.
type slotGroups struct {
	keys   []string
	group  []int32
	index  map[*iu.Slot]int32
	sg     []int32
	slot   []string
	pos    []int32
	piece  []string
	after  []string
	nextID int32
}

func (g *slotGroups) add(key string, slots []iu.Slot) {
	if len(slots) == 0 {
		return
	}
	if g.index == nil {
		g.index = make(map[*iu.Slot]int32)
	}
	id, ok := g.index[&slots[0]]
	if !ok {
		id = g.nextID
		g.nextID++
		g.index[&slots[0]] = id
		for i, s := range slots {
			g.sg = append(g.sg, id)
			g.slot = append(g.slot, s.ID)
			g.pos = append(g.pos, int32(i))
			g.piece = append(g.piece, s.Piece.String())
			g.after = append(g.after, strings.Join(s.After, " "))
		}
	}
	g.keys = append(g.keys, key)
	g.group = append(g.group, id)
}

// membershipInsertOne is membershipInsert for one collection: a simpler
// statement for the commonest case, a single emit.
const membershipInsertOne = `INSERT INTO iu_collection_membership (collection_key, slot, position, piece_id, after_slots)
	SELECT $1, slot, pos, piece, after FROM unnest($2::text[], $3::int[], $4::text[], $5::text[]) AS s(slot, pos, piece, after)`

func (g *slotGroups) queue(b *pgx.Batch) {
	switch len(g.keys) {
	case 0:
	case 1:
		b.Queue(membershipInsertOne, g.keys[0], g.slot, g.pos, g.piece, g.after)
	default:
		b.Queue(membershipInsert, g.keys, g.group, g.sg, g.slot, g.pos, g.piece, g.after)
	}
}

func (t *tx) InsertTemplate(ctx context.Context, tp *iu.Template) error {
	var ids, kinds, bodies []string
	seen := make(map[iu.Digest]bool, len(tp.Slots))
	for _, s := range tp.Slots {
		if seen[s.Piece] {
			continue
		}
		seen[s.Piece] = true
		p, ok := tp.Pieces[s.Piece]
		if !ok {
			return iu.Errorf(iu.ErrInvalidTemplate, "template %s: slot %q: piece %s has no content", tp.Key, s.ID, s.Piece)
		}
		ids, kinds, bodies = append(ids, s.Piece.String()), append(kinds, p.Kind), append(bodies, p.Body)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO iu_piece (piece_id, kind, body, created_at)
		SELECT id, kind, body, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS p(id, kind, body)
		ORDER BY id ON CONFLICT DO NOTHING`, ids, kinds, bodies, tp.CreatedAt)
	b.Queue(`INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, emit_mode, actor, created_at)
		VALUES ($1, 'template', $2, $3, $4, $5, $6)`, tp.Key, tp.Title, tp.Digest.String(), string(tp.EmitMode), tp.Actor, tp.CreatedAt)
	var g slotGroups
	g.add(tp.Key, tp.Slots)
	g.queue(b)
	err := t.sendBatch(ctx, b)
	if isUnique(err) {
		// Another transaction published the key since this one looked. Run
		// again, the engine compares contents and answers no-op or conflict.
		return fmt.Errorf("%w (%w)", iu.Errorf(iu.ErrTemplateExists, "template %s already exists", tp.Key), iu.ErrRetryable)
	}
	return err
}

func (t *tx) SetEmitMode(ctx context.Context, key string, mode iu.EmitMode) error {
	tag, err := t.exec(ctx, `UPDATE iu_piece_collection SET emit_mode = $1 WHERE collection_key = $2 AND collection_kind = 'template'`, string(mode), key)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return iu.Errorf(iu.ErrUnknownTemplate, "unknown template %q", key)
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

// ClaimEvents claims the free keys with one INSERT ... ON CONFLICT DO
// NOTHING and then reads the entries of the keys it did not get, in a new
// statement: at READ COMMITTED that statement sees the rows whose commit the
// INSERT waited for.
func (t *tx) ClaimEvents(ctx context.Context, entries []iu.LogEntry) (map[string]iu.LogEntry, error) {
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
			payloads[i], ats[i] = e.PayloadDigest.String(), e.CreatedAt
		}
		q, args := claimInsert, []any{keys, ids, types, sources, tpls, insts, actors, statuses, payloads, ats}
		if n == 1 {
			q, args = claimInsertOne, []any{keys[0], ids[0], types[0], sources[0], tpls[0], insts[0], actors[0], statuses[0], payloads[0], ats[0]}
		}
		rows, err := t.query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		claimed := make(map[string]bool, n)
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return nil, t.s.translate(ctx, err)
			}
			claimed[k] = true
		}
		if err := rows.Err(); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		if len(claimed) == n {
			break
		}
		var lost []string
		for _, k := range keys {
			if !claimed[k] {
				lost = append(lost, k)
			}
		}
		rows, err = t.query(ctx, `SELECT `+logColumns+` FROM iu_auto_instantiate_event_log WHERE idempotency_key = ANY($1)`, lost)
		if err != nil {
			return nil, err
		}
		if err := t.scanLog(ctx, rows, existing); err != nil {
			return nil, err
		}
		// A key neither claimed nor found was deleted between the two
		// statements: claim it again.
		pending = pending[:0]
		for _, k := range lost {
			if _, ok := existing[k]; !ok {
				pending = append(pending, byKey[k])
			}
		}
	}
	return existing, nil
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
		e.Status, e.PayloadDigest, e.CreatedAt = iu.Status(status), parseDigest(payload), e.CreatedAt.UTC()
		out[e.IdempotencyKey] = e
	}
	return t.s.translate(ctx, rows.Err())
}

const collectionInsert = `INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
	SELECT k, 'instance', title, digest, actor, at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS c(k, title, digest, actor, at)`

// instanceInsertOne writes one instance, its memberships and its lineage
// in one statement: a single emit's commonest write, where each statement
// saved is server time saved.
const instanceInsertOne = `WITH c AS (
		INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
		VALUES ($1, 'instance', $2, $3, $4, $5)
	), m AS (
		INSERT INTO iu_collection_membership (collection_key, slot, position, piece_id, after_slots)
		SELECT $1, slot, pos, piece, after FROM unnest($6::text[], $7::int[], $8::text[], $9::text[]) AS s(slot, pos, piece, after)
	)
	INSERT INTO iu_collection_template_instance_lineage (instance_key, template_key, template_digest, actor, mode,
		event_id, event_type, event_source, event_subject, event_time, event_data, created_at)
	VALUES ($1, $10, $11, $4, $12, $13, $14, $15, $16, $17, $18::text::jsonb, $5)`

const lineageInsert = `INSERT INTO iu_collection_template_instance_lineage (instance_key, template_key, template_digest, actor, mode,
		event_id, event_type, event_source, event_subject, event_time, event_data, created_at)
	SELECT k, tpl, td, actor, mode, id, typ, src, subj, tm, data::jsonb, at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
		$10::timestamptz[], $11::text[], $12::timestamptz[]) AS l(k, tpl, td, actor, mode, id, typ, src, subj, tm, data, at)`

// InsertInstances writes the collections, their memberships and their
// lineage: three statements in one pipeline, or three COPYs for a bulk
// chunk.
func (t *tx) InsertInstances(ctx context.Context, instances []iu.Instance) error {
	n := len(instances)
	keys, titles, digests, actors := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ats := make([]time.Time, n)
	tpls, tds, modes := make([]string, n), make([]string, n), make([]string, n)
	evID, evType, evSource, evSubject, evData := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	evTime := make([]*time.Time, n)
	var g slotGroups
	auto := true
	for i := range instances {
		in := &instances[i]
		auto = auto && in.Mode == iu.ModeAuto
		keys[i], titles[i], digests[i], actors[i], ats[i] = in.Key, in.Title, in.Digest.String(), in.Actor, in.CreatedAt
		tpls[i], tds[i], modes[i] = in.TemplateKey, in.TemplateDigest.String(), string(in.Mode)
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
		g.add(in.Key, in.Slots)
	}
	if n >= copyMin {
		return instanceExists(t.copyInstances(ctx, instances))
	}
	b := &pgx.Batch{}
	if n == 1 && len(g.keys) == 1 {
		b.Queue(instanceInsertOne, keys[0], titles[0], digests[0], actors[0], ats[0],
			g.slot, g.pos, g.piece, g.after,
			tpls[0], tds[0], modes[0], evID[0], evType[0], evSource[0], evSubject[0], evTime[0], evData[0])
	} else {
		b.Queue(collectionInsert, keys, titles, digests, actors, ats)
		g.queue(b)
		b.Queue(lineageInsert, keys, tpls, tds, actors, modes, evID, evType, evSource, evSubject, evTime, evData, ats)
	}
	if !auto {
		return instanceExists(t.sendBatch(ctx, b))
	}
	// Auto instance keys come from idempotency keys this transaction has
	// just claimed, so nothing else can be writing them: the rows go out
	// with the next round trip (often COMMIT) instead of one of their own.
	for _, q := range b.QueuedQueries {
		t.hold(queued{sql: q.SQL, args: q.Arguments, fail: instanceExists})
	}
	return nil
}

// instanceExists reports a unique violation on an instance as
// ErrInstanceExists.
func instanceExists(err error) error {
	if isUnique(err) {
		return iu.Errorf(iu.ErrInstanceExists, "an instance key is already taken: %v", rootCause(err))
	}
	return err
}

// copyMin is the number of instances from which InsertInstances uses COPY:
// the server then writes the heap a page at a time (one WAL record per page
// instead of one per row), which outweighs COPY's extra round trips.
var copyMin = 64

// copyInstances writes instances with three COPYs.
func (t *tx) copyInstances(ctx context.Context, instances []iu.Instance) error {
	if !t.write {
		return errReadOnly
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	var buf [6]any
	i := -1
	_, err := t.c.CopyFrom(ctx, pgx.Identifier{"iu_piece_collection"},
		[]string{"collection_key", "collection_kind", "title", "digest", "actor", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i++; i == len(instances) {
				return nil, nil
			}
			in := &instances[i]
			buf = [6]any{in.Key, "instance", in.Title, in.Digest.String(), in.Actor, in.CreatedAt}
			return buf[:], nil
		}))
	if err != nil {
		return t.s.translate(ctx, err)
	}
	// Slot values are the same for every instance of a template: render
	// them once per slots slice.
	type slotVals struct{ piece, after []string }
	cache := make(map[*iu.Slot]slotVals)
	var mbuf [5]any
	i, j := 0, -1
	_, err = t.c.CopyFrom(ctx, pgx.Identifier{"iu_collection_membership"},
		[]string{"collection_key", "slot", "position", "piece_id", "after_slots"},
		pgx.CopyFromFunc(func() ([]any, error) {
			for {
				if i == len(instances) {
					return nil, nil
				}
				if j++; j < len(instances[i].Slots) {
					break
				}
				i, j = i+1, -1
			}
			in := &instances[i]
			v, ok := cache[&in.Slots[0]]
			if !ok {
				v = slotVals{make([]string, len(in.Slots)), make([]string, len(in.Slots))}
				for k, s := range in.Slots {
					v.piece[k], v.after[k] = s.Piece.String(), strings.Join(s.After, " ")
				}
				cache[&in.Slots[0]] = v
			}
			mbuf = [5]any{in.Key, in.Slots[j].ID, int32(j), v.piece[j], v.after[j]}
			return mbuf[:], nil
		}))
	if err != nil {
		return t.s.translate(ctx, err)
	}
	var lbuf [12]any
	i = -1
	_, err = t.c.CopyFrom(ctx, pgx.Identifier{"iu_collection_template_instance_lineage"},
		[]string{"instance_key", "template_key", "template_digest", "actor", "mode",
			"event_id", "event_type", "event_source", "event_subject", "event_time", "event_data", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i++; i == len(instances) {
				return nil, nil
			}
			in := &instances[i]
			lbuf = [12]any{in.Key, in.TemplateKey, in.TemplateDigest.String(), in.Actor, string(in.Mode), nil, nil, nil, nil, nil, nil, in.CreatedAt}
			if ev := in.Event; ev != nil {
				lbuf[5], lbuf[6], lbuf[7], lbuf[8] = ev.ID, ev.Type, ev.Source, ev.Subject
				if !ev.Time.IsZero() {
					lbuf[9] = ev.Time
				}
				if len(ev.Data) > 0 {
					lbuf[10] = string(ev.Data)
				}
			}
			return lbuf[:], nil
		}))
	return t.s.translate(ctx, err)
}

func (t *tx) GetInstance(ctx context.Context, key string) (*iu.InstanceRecord, error) {
	rec := &iu.InstanceRecord{Key: key}
	var digest string
	var tkey, tdigest, mode, evID, evType, evSource, evSubject, evData *string
	var evTime *time.Time
	err := t.queryRow(ctx, `SELECT c.title, c.digest, c.actor, c.created_at, l.template_key, l.template_digest, l.mode,
		l.event_id, l.event_type, l.event_source, l.event_subject, l.event_time, l.event_data::text
		FROM iu_piece_collection c LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_key = c.collection_key
		WHERE c.collection_key = $1 AND c.collection_kind = 'instance'`, []any{key},
		&rec.Title, &digest, &rec.Actor, &rec.CreatedAt, &tkey, &tdigest, &mode, &evID, &evType, &evSource, &evSubject, &evTime, &evData)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, iu.Errorf(iu.ErrNotFound, "no instance %q", key)
	}
	if err != nil {
		return nil, err
	}
	rec.Digest, rec.CreatedAt = parseDigest(digest), rec.CreatedAt.UTC()
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
	if rec.Slots, err = t.slots(ctx, key); err != nil {
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
func (t *tx) slots(ctx context.Context, key string) ([]iu.Slot, error) {
	rows, err := t.query(ctx, `SELECT slot, piece_id, after_slots FROM iu_collection_membership
		WHERE collection_key = $1 ORDER BY position`, key)
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
		out = append(out, iu.Slot{ID: id, Piece: parseDigest(piece), After: splitAfter(after)})
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
		[]any{actor, prefix, prefixEnd(prefix)}, &s.EventLog, &s.Lineage, &s.Instances)
	return s, err
}

func (t *tx) ListInstances(ctx context.Context, f iu.InstanceFilter) ([]iu.InstanceRow, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Actor != "" {
		where = append(where, "actor = "+arg(f.Actor))
	}
	if f.TemplateKey != "" {
		where = append(where, "template_key = "+arg(f.TemplateKey))
	}
	if f.Prefix != "" {
		p := iu.AutoInstancePrefix(f.Prefix)
		where = append(where, "instance_key >= "+arg(p)+" AND instance_key < "+arg(prefixEnd(p)))
	}
	q := `SELECT instance_key, template_key, event_id, event_type, event_source, actor, created_at,
		template_digest, instance_digest, digest_match FROM iu_auto_instantiate_instances`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at, instance_key"
	if f.Limit > 0 {
		q += " LIMIT " + arg(f.Limit)
	}
	if f.Offset > 0 {
		q += " OFFSET " + arg(f.Offset)
	}
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
		if err := rows.Scan(&r.InstanceKey, &r.TemplateKey, &evID, &evType, &evSource, &r.Actor, &r.CreatedAt, &td, &id, &match); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		r.EventID, r.EventType, r.EventSource = deref(evID), deref(evType), deref(evSource)
		r.CreatedAt, r.TemplateDigest, r.InstanceDigest = r.CreatedAt.UTC(), parseDigest(td), parseDigest(id)
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

// rollbackCount counts what rolling back an actor deletes.
const rollbackCount = `SELECT
	(SELECT count(*) FROM iu_auto_instantiate_event_log WHERE actor = $1),
	(SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto'),
	(SELECT count(*) FROM iu_piece_collection c JOIN iu_collection_template_instance_lineage l
		ON l.instance_key = c.collection_key WHERE l.actor = $1 AND l.mode = 'auto'),
	(SELECT count(*) FROM iu_collection_membership m JOIN iu_collection_template_instance_lineage l
		ON l.instance_key = m.collection_key WHERE l.actor = $1 AND l.mode = 'auto')`

// rollbackApply deletes an actor's auto instantiations in ONE statement:
// every part sees the same snapshot, so an emit that commits meanwhile is
// either wholly deleted or wholly kept, never split into orphans.
const rollbackApply = `WITH doomed AS (
		DELETE FROM iu_collection_template_instance_lineage WHERE actor = $1 AND mode = 'auto' RETURNING instance_key
	), log AS (
		DELETE FROM iu_auto_instantiate_event_log WHERE actor = $1 RETURNING 1
	), coll AS (
		DELETE FROM iu_piece_collection WHERE collection_kind = 'instance' AND collection_key IN (SELECT instance_key FROM doomed)
		RETURNING 1
	), mem AS (
		DELETE FROM iu_collection_membership WHERE collection_key IN (SELECT instance_key FROM doomed) RETURNING 1
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

// graphPage is how many instances ScanInstanceGraphs reads per statement:
// memory stays flat however many instances there are, and no result set is
// open while fn runs.
const graphPage = 1000

// scanGraphs reads one page of instances after a key. Each instance's
// memberships come aggregated from a LATERAL subquery: the aggregate keeps
// the planner from turning the join into a scan of every membership row,
// which it would otherwise do right after a bulk run, before the new rows
// have statistics.
const scanGraphs = `SELECT c.collection_key, c.digest, l.instance_key IS NOT NULL, coalesce(l.template_key, ''), coalesce(l.template_digest, ''),
		m.slots, m.pieces, m.afters
	FROM (
		SELECT collection_key, digest FROM iu_piece_collection
		WHERE collection_kind = 'instance' AND collection_key > $1 %s
		ORDER BY collection_key LIMIT %d
	) c
	LEFT JOIN iu_collection_template_instance_lineage l ON l.instance_key = c.collection_key
	LEFT JOIN LATERAL (
		SELECT array_agg(slot ORDER BY slot) AS slots, array_agg(piece_id ORDER BY slot) AS pieces, array_agg(after_slots ORDER BY slot) AS afters
		FROM iu_collection_membership m WHERE m.collection_key = c.collection_key
	) m ON true
	ORDER BY c.collection_key`

func (t *tx) ScanInstanceGraphs(ctx context.Context, actor string, fn func(*iu.InstanceGraph) error) error {
	args := []any{""}
	filter := ""
	if actor != "" {
		filter = "AND actor = $2"
		args = append(args, actor)
	}
	q := fmt.Sprintf(scanGraphs, filter, graphPage)
	// Slot ids and piece ids repeat across instances of a template: decode
	// each distinct one once.
	ids := make(map[string]string)
	pieces := make(map[string]iu.Digest)
	page := make([]*iu.InstanceGraph, 0, graphPage)
	for {
		page = page[:0]
		rows, err := t.query(ctx, q, args...)
		if err != nil {
			return err
		}
		var slots, pcs, aft []string
		for rows.Next() {
			g := &iu.InstanceGraph{}
			var digest, tdigest string
			if err := rows.Scan(&g.Key, &digest, &g.HasLineage, &g.TemplateKey, &tdigest, &slots, &pcs, &aft); err != nil {
				rows.Close()
				return t.s.translate(ctx, err)
			}
			g.Digest, g.TemplateDigest = parseDigest(digest), parseDigest(tdigest)
			g.Slots = make([]iu.Slot, len(slots))
			for i := range slots {
				id, ok := ids[slots[i]]
				if !ok {
					id = slots[i]
					ids[id] = id
				}
				p, ok := pieces[pcs[i]]
				if !ok {
					p = parseDigest(pcs[i])
					pieces[pcs[i]] = p
				}
				g.Slots[i] = iu.Slot{ID: id, Piece: p, After: splitAfter(aft[i])}
			}
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
			return nil
		}
		args[0] = page[len(page)-1].Key
		if len(ids)+len(pieces) > 1<<16 {
			// Many distinct graphs: start over rather than grow without bound.
			clear(ids)
			clear(pieces)
		}
	}
}

func (t *tx) ListTemplateGraphs(ctx context.Context) (map[string]*iu.Template, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.digest, c.emit_mode, m.slot, m.piece_id, m.after_slots
		FROM iu_piece_collection c JOIN iu_collection_membership m ON m.collection_key = c.collection_key
		WHERE c.collection_kind = 'template' ORDER BY c.collection_key, m.position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]*iu.Template)
	for rows.Next() {
		var key, title, digest, mode, slot, piece, after string
		if err := rows.Scan(&key, &title, &digest, &mode, &slot, &piece, &after); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		tp, ok := out[key]
		if !ok {
			tp = &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Digest: parseDigest(digest)}
			out[key] = tp
		}
		tp.Slots = append(tp.Slots, iu.Slot{ID: slot, Piece: parseDigest(piece), After: splitAfter(after)})
	}
	return out, t.s.translate(ctx, rows.Err())
}

func (t *tx) CountOrphans(ctx context.Context) (iu.Orphans, error) {
	var o iu.Orphans
	err := t.long(ctx, func() error {
		return t.queryRow(ctx, `SELECT
			(SELECT count(*) FROM iu_collection_membership m
				WHERE NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = m.collection_key)
				   OR NOT EXISTS (SELECT 1 FROM iu_piece p WHERE p.piece_id = m.piece_id)),
			(SELECT count(*) FROM iu_collection_template_instance_lineage l
				WHERE NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = l.instance_key)),
			(SELECT count(*) FROM iu_auto_instantiate_event_log e
				WHERE e.status = 'ok' AND NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = e.instance_key)),
			(SELECT count(*) FROM iu_piece_collection c
				WHERE c.collection_kind = 'instance'
				  AND NOT EXISTS (SELECT 1 FROM iu_collection_template_instance_lineage l WHERE l.instance_key = c.collection_key))`,
			nil, &o.Memberships, &o.Lineage, &o.EventLog, &o.Instances)
	})
	return o, err
}
