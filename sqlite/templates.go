package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/iu-engine/iu"
)

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
		s.Piece = iu.StoredDigest(piece)
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
		ti.Digest = iu.StoredDigest(digest)
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
	tp.Digest = iu.StoredDigest(digest)
	tp.EmitMode = iu.EmitMode(mode)
	if err := tp.CreatedAt.Scan(at); err != nil {
		return nil, err
	}
	if tp.Slots, err = t.slots(ctx, id); err != nil {
		return nil, err
	}
	return tp, nil
}
