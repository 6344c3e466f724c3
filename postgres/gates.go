package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

func (t *tx) SetGates(ctx context.Context, change iu.GateChange, who iu.Who, at time.Time) error {
	if !t.write {
		return iu.ErrWriteInView
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
			return iu.MissingGate(name)
		}
		if _, err := res.Exec(); err != nil {
			return t.s.translate(ctx, err)
		}
	}
	return t.s.translate(ctx, res.Close())
}

func (t *tx) ListGateAudit(ctx context.Context, before int64, limit int) ([]iu.GateAuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, name, enabled, changed_by, claimed_actor, changed_at FROM iu_gate_audit
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
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
		return iu.ErrWriteInView
	}
	t.hold(queued{sql: `INSERT INTO iu_audit (at, changed_by, claimed_actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		args: []any{e.At.Time, e.By, e.Claimed, e.Action, e.Subject, e.Detail}})
	return nil
}

func (t *tx) ListAudit(ctx context.Context, before int64, limit int) ([]iu.AuditEntry, error) {
	rows, err := t.query(ctx, `SELECT id, at, changed_by, claimed_actor, action, subject, detail FROM iu_audit
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
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
