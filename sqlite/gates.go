package sqlite

// The gates and their audit trail, and the audit trail of every other change.

import (
	"context"
	"time"

	"github.com/iu-engine/iu"
)

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
			return iu.MissingGate(name)
		}
		if _, err := t.exec(ctx, `INSERT INTO iu_gate_audit (name, enabled, changed_at, changed_by, claimed_actor) VALUES (?, ?, ?, ?, ?)`,
			name, on, fmtTime(at), who.By, who.Claimed); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ListGateAudit(ctx context.Context, before int64, limit int) ([]iu.GateAuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, name, enabled, changed_by, claimed_actor, changed_at FROM iu_gate_audit
		WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
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
		WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
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
