package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

// timeFormat is how every time is stored: fixed width, so that text order
// is time order and the views can compare with strftime('%Y-%m-%dT%H:%M:%fZ').
const timeFormat = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// tx is an iu.Tx on a SQLite transaction.
type tx struct {
	s      *Store
	rtx    *sql.Tx // read transactions; writes use the store's writer connection
	write  bool
	nextID int64 // next free collection_id; 0 until first needed

	templateIDs map[string]int64 // template key -> collection_id, for this transaction
}

// allocIDs reserves n collection ids and returns the first. Safe because a
// write transaction holds SQLite's write lock from BEGIN IMMEDIATE on.
func (t *tx) allocIDs(ctx context.Context, n int) (int64, error) {
	if t.nextID == 0 {
		var max int64
		if err := t.queryRow(ctx, `SELECT coalesce(max(collection_id), 0) FROM iu_piece_collection`, nil, &max); err != nil {
			return 0, err
		}
		t.nextID = max + 1
	}
	first := t.nextID
	t.nextID += int64(n)
	return first, nil
}

// exec runs a write statement.
func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !t.write {
		return nil, errors.New("sqlite: write in a read-only transaction")
	}
	st, err := t.s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return nil, t.s.translate(err)
	}
	return res, nil
}

func (t *tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var rows *sql.Rows
	var err error
	if t.write {
		var st *sql.Stmt
		if st, err = t.s.stmt(ctx, query); err != nil {
			return nil, err
		}
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.rtx.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, t.s.translate(err)
	}
	return rows, nil
}

func (t *tx) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return t.s.translate(err)
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return t.s.translate(err)
	}
	return rows.Close()
}

// maxRowsPerInsert bounds a multi-row INSERT: a few hundred rows per
// statement amortizes the statement cost without huge statements.
const maxRowsPerInsert = 128

// insertRows inserts len(args)/ncol rows with multi-row INSERT statements:
// head is "INSERT INTO t (a, b) VALUES", tail is appended (e.g. an ON
// CONFLICT clause).
func (t *tx) insertRows(ctx context.Context, head string, ncol int, tail string, args []any) error {
	rows := len(args) / ncol
	for off := 0; off < rows; off += maxRowsPerInsert {
		n := min(maxRowsPerInsert, rows-off)
		if _, err := t.exec(ctx, insertSQL(head, ncol, n, tail), args[off*ncol:(off+n)*ncol]...); err != nil {
			return err
		}
	}
	return nil
}

func insertSQL(head string, ncol, n int, tail string) string {
	var b strings.Builder
	row := "(" + strings.Repeat("?, ", ncol-1) + "?)"
	b.Grow(len(head) + n*(len(row)+2) + len(tail))
	b.WriteString(head)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(row)
	}
	b.WriteString(tail)
	return b.String()
}

// inList returns "(?, ?, ...)" for n values.
func inList(n int) string { return "(" + strings.Repeat("?, ", n-1) + "?)" }

func (t *tx) Gates(ctx context.Context) (iu.Gates, error) {
	var g iu.Gates
	rows, err := t.query(ctx, `SELECT name, enabled FROM iu_gate`)
	if err != nil {
		return g, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var on bool
		if err := rows.Scan(&name, &on); err != nil {
			return g, err
		}
		g.Set(name, on)
	}
	return g, rows.Err()
}

func (t *tx) SetGates(ctx context.Context, change iu.GateChange, who iu.Who, at time.Time) error {
	for _, name := range change.Names() {
		on := change[name]
		res, err := t.exec(ctx, `UPDATE iu_gate SET enabled = ?, updated_at = ?, updated_by = ? WHERE name = ?`, on, fmtTime(at), who.By, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("sqlite: gate %s is missing from iu_gate", name)
		}
		if _, err := t.exec(ctx, `INSERT INTO iu_gate_audit (name, enabled, changed_at, changed_by, claimed_actor) VALUES (?, ?, ?, ?, ?)`,
			name, on, fmtTime(at), who.By, who.Claimed); err != nil {
			return err
		}
	}
	return nil
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
		WHERE id < ? ORDER BY id DESC LIMIT ?`, olderThan(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.GateAuditEntry{}
	for rows.Next() {
		var e iu.GateAuditEntry
		if err := rows.Scan(&e.Seq, &e.Name, &e.Enabled, &e.ChangedBy, &e.Claimed, &e.ChangedAt); err != nil {
			return nil, t.s.translate(err)
		}
		out = append(out, e)
	}
	return out, t.s.translate(rows.Err())
}

func (t *tx) InsertAudit(ctx context.Context, e iu.AuditEntry) error {
	_, err := t.exec(ctx, `INSERT INTO iu_audit (at, changed_by, claimed_actor, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		fmtTime(e.At.Time), e.By, e.Claimed, e.Action, e.Subject, e.Detail)
	return err
}

func (t *tx) ListAudit(ctx context.Context, before int64, limit int) ([]iu.AuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, at, changed_by, claimed_actor, action, subject, detail FROM iu_audit
		WHERE id < ? ORDER BY id DESC LIMIT ?`, olderThan(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.AuditEntry{}
	for rows.Next() {
		var e iu.AuditEntry
		if err := rows.Scan(&e.Seq, &e.At, &e.By, &e.Claimed, &e.Action, &e.Subject, &e.Detail); err != nil {
			return nil, t.s.translate(err)
		}
		out = append(out, e)
	}
	return out, t.s.translate(rows.Err())
}

func (t *tx) GetTemplate(ctx context.Context, key string) (*iu.Template, error) {
	tp := &iu.Template{Key: key}
	var id int64
	var digest, mode, at string
	err := t.queryRow(ctx, `SELECT collection_id, title, digest, emit_mode, actor, created_at FROM iu_piece_collection
		WHERE collection_key = ? AND collection_kind = 'template'`, []any{key},
		&id, &tp.Title, &digest, &mode, &tp.Actor, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, iu.ErrUnknownTemplate
	}
	if err != nil {
		return nil, err
	}
	if tp.Digest, err = iu.ParseDigest(digest); err != nil {
		return nil, err
	}
	tp.EmitMode = iu.EmitMode(mode)
	if err := tp.CreatedAt.Scan(at); err != nil {
		return nil, err
	}
	if tp.Slots, err = t.slots(ctx, id); err != nil {
		return nil, err
	}
	return tp, nil
}

// slots reads a collection's membership rows in declaration order.
func (t *tx) slots(ctx context.Context, id int64) ([]iu.Slot, error) {
	rows, err := t.query(ctx, `SELECT slot, piece_id, after_slots FROM iu_collection_membership
		WHERE collection_id = ? ORDER BY position`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []iu.Slot
	for rows.Next() {
		var s iu.Slot
		var piece, after string
		if err := rows.Scan(&s.ID, &piece, &after); err != nil {
			return nil, err
		}
		if s.Piece, err = iu.ParseDigest(piece); err != nil {
			return nil, err
		}
		s.After = iu.ParseEdgesText(after)
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *tx) ListTemplates(ctx context.Context, after string, limit int) ([]iu.TemplateInfo, error) {
	rows, err := t.query(ctx, `SELECT c.collection_key, c.title, c.emit_mode, c.digest, c.actor, c.created_at,
		(SELECT count(*) FROM iu_collection_membership m WHERE m.collection_id = c.collection_id)
		FROM iu_piece_collection c WHERE c.collection_kind = 'template' AND c.collection_key > ?
		ORDER BY c.collection_key LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []iu.TemplateInfo{}
	for rows.Next() {
		var ti iu.TemplateInfo
		var mode, digest string
		if err := rows.Scan(&ti.Key, &ti.Title, &mode, &digest, &ti.Actor, &ti.CreatedAt, &ti.Pieces); err != nil {
			return nil, err
		}
		ti.EmitMode = iu.EmitMode(mode)
		if ti.Digest, err = iu.ParseDigest(digest); err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, rows.Err()
}

func (t *tx) InsertTemplate(ctx context.Context, tp *iu.Template) error {
	at := fmtTime(tp.CreatedAt.Time)
	args := make([]any, 0, 4*len(tp.Slots))
	seen := make(map[iu.Digest]bool, len(tp.Slots))
	for _, s := range tp.Slots {
		if seen[s.Piece] {
			continue
		}
		seen[s.Piece] = true
		p := tp.Pieces[s.Piece] // the engine checked that every slot's piece is there
		args = append(args, s.Piece.String(), p.Kind, p.Body, at)
	}
	if err := t.insertRows(ctx, `INSERT INTO iu_piece (piece_id, kind, body, created_at) VALUES `, 4, ` ON CONFLICT DO NOTHING`, args); err != nil {
		return err
	}
	id, err := t.allocIDs(ctx, 1)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO iu_piece_collection (collection_id, collection_key, collection_kind, title, digest, emit_mode, actor, created_at)
		VALUES (?, ?, 'template', ?, ?, ?, ?, ?)`, id, tp.Key, tp.Title, tp.Digest.String(), string(tp.EmitMode), tp.Actor, at)
	if err != nil {
		if isUnique(err) {
			return iu.ErrTemplateExists
		}
		return err
	}
	return t.insertRows(ctx, membershipInsert, 6, "", membershipArgs(nil, id, tp.Key, tp.Slots))
}

const membershipInsert = `INSERT INTO iu_collection_membership (collection_id, slot, collection_key, position, piece_id, after_slots) VALUES `

func membershipArgs(args []any, id int64, key string, slots []iu.Slot) []any {
	for i, s := range slots {
		args = append(args, id, s.ID, key, i, s.Piece.String(), iu.EdgesText(s.After))
	}
	return args
}

func (t *tx) SetEmitMode(ctx context.Context, key string, mode iu.EmitMode) error {
	res, err := t.exec(ctx, `UPDATE iu_piece_collection SET emit_mode = ? WHERE collection_key = ? AND collection_kind = 'template'`, string(mode), key)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return iu.ErrUnknownTemplate
	}
	return nil
}

// maxInList bounds the values bound in one IN (...) list.
const maxInList = 256

func (t *tx) GetPieces(ctx context.Context, ids []iu.Digest) (map[iu.Digest]iu.Piece, error) {
	out := make(map[iu.Digest]iu.Piece, len(ids))
	uniq := make([]any, 0, len(ids))
	seen := make(map[iu.Digest]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id.String())
		}
	}
	for off := 0; off < len(uniq); off += maxInList {
		part := uniq[off:min(off+maxInList, len(uniq))]
		rows, err := t.query(ctx, `SELECT piece_id, kind, body FROM iu_piece WHERE piece_id IN `+inList(len(part)), part...)
		if err != nil {
			return nil, err
		}
		if err := scanPieces(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func scanPieces(rows *sql.Rows, out map[iu.Digest]iu.Piece) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var p iu.Piece
		if err := rows.Scan(&id, &p.Kind, &p.Body); err != nil {
			return err
		}
		d, err := iu.ParseDigest(id)
		if err != nil {
			return err
		}
		out[d] = p
	}
	return rows.Err()
}

func (t *tx) ListPieces(ctx context.Context) (map[iu.Digest]iu.Piece, error) {
	rows, err := t.query(ctx, `SELECT piece_id, kind, body FROM iu_piece`)
	if err != nil {
		return nil, err
	}
	out := make(map[iu.Digest]iu.Piece)
	return out, scanPieces(rows, out)
}

const logColumns = `idempotency_key, event_id, event_type, event_source, template_key, instance_key, actor, status, payload_digest, created_at`

// Claim claims the entries' keys and writes the instances of those it
// won, at once: a SQLite transaction holds the write lock, so there is no
// round trip to save by holding anything for COMMIT.
func (t *tx) Claim(ctx context.Context, entries []iu.LogEntry, instances []*iu.Instance) ([]iu.Claim, error) {
	existing, err := t.claimEvents(ctx, entries)
	if err != nil {
		return nil, err
	}
	claims := make([]iu.Claim, len(entries))
	var won []iu.Instance
	for i, e := range entries {
		if prior, taken := existing[e.IdempotencyKey]; taken {
			claims[i].Prior = &prior
		} else if instances[i] != nil {
			won = append(won, *instances[i])
		}
	}
	if len(won) > 0 {
		if err := t.InsertInstances(ctx, won); err != nil {
			return nil, err
		}
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
		e.Status = iu.Status(status)
		var err error
		if e.PayloadDigest, err = iu.ParseDigest(payload); err != nil {
			return err
		}
		fn(e)
	}
	return rows.Err()
}

func (t *tx) ListEvents(ctx context.Context, f iu.EventFilter, before int64, limit int) ([]iu.LogEntry, error) {
	q := `SELECT log_id, ` + logColumns + ` FROM iu_auto_instantiate_event_log WHERE log_id < ?`
	args := []any{olderThan(before)}
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
	if rec.Digest, err = iu.ParseDigest(digest); err != nil {
		return nil, err
	}
	if err := rec.CreatedAt.Scan(at); err != nil {
		return nil, err
	}
	rec.TemplateKey, rec.Mode = tkey.String, iu.Mode(mode.String)
	if tdigest.Valid {
		if rec.TemplateDigest, err = iu.ParseDigest(tdigest.String); err != nil {
			return nil, err
		}
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
		p := iu.AutoInstancePrefix(f.Prefix)
		if f.AfterKey >= p {
			where, args = append(where, "c.collection_key > ?"), append(args, f.AfterKey)
		} else {
			where, args = append(where, "c.collection_key >= ?"), append(args, p)
		}
		where, args = append(where, "c.collection_key < ?"), append(args, iu.KeyPrefixEnd(p))
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
		r.TemplateDigest, _ = iu.ParseDigest(td)
		r.InstanceDigest, _ = iu.ParseDigest(id)
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
	// Keep the instance keys before lineage, which names them, is deleted.
	steps := []string{
		`CREATE TEMP TABLE IF NOT EXISTS iu_rollback_ids (instance_id INTEGER PRIMARY KEY)`,
		`DELETE FROM temp.iu_rollback_ids`,
		`INSERT INTO temp.iu_rollback_ids SELECT instance_id FROM iu_collection_template_instance_lineage WHERE actor = ?1 AND mode = 'auto'`,
		`DELETE FROM iu_auto_instantiate_event_log WHERE actor = ?1`,
		`DELETE FROM iu_collection_template_instance_lineage WHERE actor = ?1 AND mode = 'auto'`,
		// Memberships go with their collection (ON DELETE CASCADE).
		`DELETE FROM iu_piece_collection WHERE collection_kind = 'instance' AND collection_id IN (SELECT instance_id FROM temp.iu_rollback_ids)`,
		`DELETE FROM temp.iu_rollback_ids`,
	}
	for _, q := range steps {
		var args []any
		if strings.Contains(q, "?1") {
			args = []any{actor}
		}
		if _, err := t.exec(ctx, q, args...); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (t *tx) ScanInstanceGraphs(ctx context.Context, actor string, fn func(*iu.InstanceGraph) error) error {
	// One row per instance, its membership rows folded into one string
	// (fields split by \x1f, rows by \x1e; neither can occur in slot ids,
	// piece ids or edges). Instances of one template fold to the same
	// string: it is parsed once, and the engine checks that graph once.
	q := `SELECT c.collection_key, c.digest, l.instance_id IS NOT NULL, coalesce(l.template_key, ''), coalesce(l.template_digest, ''),
		coalesce((SELECT group_concat(m.slot || char(31) || m.piece_id || char(31) || m.after_slots, char(30) ORDER BY m.slot)
		          FROM iu_collection_membership m WHERE m.collection_id = c.collection_id), '')
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
		var key, digest, tkey, tdigest, folded string
		var has bool
		if err := rows.Scan(&key, &digest, &has, &tkey, &tdigest, &folded); err != nil {
			return err
		}
		g := &iu.InstanceGraph{Key: key, HasLineage: has, TemplateKey: tkey}
		g.Digest, _ = iu.ParseDigest(digest)
		g.TemplateDigest, _ = iu.ParseDigest(tdigest)
		g.Slots = unfold.Unfold(folded)
		if err := fn(g); err != nil {
			return err
		}
	}
	return t.s.translate(rows.Err())
}

// templateID returns a template's collection_id, cached for the transaction.
func (t *tx) templateID(ctx context.Context, key string) (int64, error) {
	if id, ok := t.templateIDs[key]; ok {
		return id, nil
	}
	var id int64
	err := t.queryRow(ctx, `SELECT collection_id FROM iu_piece_collection WHERE collection_key = ? AND collection_kind = 'template'`, []any{key}, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, iu.ErrUnknownTemplate
	}
	if err != nil {
		return 0, err
	}
	if t.templateIDs == nil {
		t.templateIDs = make(map[string]int64)
	}
	t.templateIDs[key] = id
	return id, nil
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
			tp.Digest, _ = iu.ParseDigest(digest)
			out[key] = tp
		}
		s := iu.Slot{ID: slot, After: iu.ParseEdgesText(after)}
		s.Piece, _ = iu.ParseDigest(piece)
		tp.Slots = append(tp.Slots, s)
	}
	return out, rows.Err()
}

func (t *tx) CountOrphans(ctx context.Context) (iu.Orphans, error) {
	var o iu.Orphans
	err := t.queryRow(ctx, `SELECT
		(SELECT count(*) FROM iu_collection_membership m
			WHERE NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_id = m.collection_id AND c.collection_key = m.collection_key)
			   OR NOT EXISTS (SELECT 1 FROM iu_piece p WHERE p.piece_id = m.piece_id)),
		(SELECT count(*) FROM iu_collection_template_instance_lineage l
			WHERE NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_id = l.instance_id AND c.collection_key = l.instance_key)),
		(SELECT count(*) FROM iu_auto_instantiate_event_log e
			WHERE e.status = 'ok' AND NOT EXISTS (SELECT 1 FROM iu_piece_collection c WHERE c.collection_key = e.instance_key)),
		(SELECT count(*) FROM iu_piece_collection c
			WHERE c.collection_kind = 'instance'
			  AND NOT EXISTS (SELECT 1 FROM iu_collection_template_instance_lineage l WHERE l.instance_id = c.collection_id))`,
		nil, &o.Memberships, &o.Lineage, &o.EventLog, &o.Instances)
	return o, err
}
