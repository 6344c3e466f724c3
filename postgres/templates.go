package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

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
			tp = &iu.Template{Key: key, Title: title, EmitMode: iu.EmitMode(mode), Actor: actor, CreatedAt: iu.TimeOf(at), Digest: iu.StoredDigest(digest)}
		}
		if slot != nil {
			tp.Slots = append(tp.Slots, iu.Slot{ID: *slot, Piece: iu.StoredDigest(*piece), After: iu.ParseEdgesText(*after)})
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
		ti.EmitMode, ti.Digest, ti.Pieces = iu.EmitMode(mode), iu.StoredDigest(digest), int(pieces)
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
		a.addAt(group, i, s)
	}
}

func (a *slotArrays) addAt(group int32, pos int, s iu.Slot) {
	a.group = append(a.group, group)
	a.slot = append(a.slot, s.ID)
	a.pos = append(a.pos, int32(pos))
	a.piece = append(a.piece, s.Piece.String())
	a.after = append(a.after, iu.EdgesText(s.After))
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
		out = append(out, iu.Slot{ID: id, Piece: iu.StoredDigest(piece), After: iu.ParseEdgesText(after)})
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
