package iu

import (
	"context"
	"fmt"
)

// Rollback removes an actor's auto instantiations: event log rows, then
// lineage, then instance collections and their memberships, in one
// transaction. With apply false it only counts (the default of the command
// line). Templates, pieces and other actors' rows are untouched, and a
// rolled-back event may be instantiated again: so may the events of the
// actor's compensated instances, whose log entries go too, and whose
// compensations are marked released by the rollback.
func (e *Engine) Rollback(ctx context.Context, actor string, apply bool) (RollbackReport, error) {
	if err := CheckActor(actor); err != nil {
		return RollbackReport{}, err
	}
	r := RollbackReport{Actor: actor, DryRun: !apply}
	run := e.update
	if !apply {
		run = e.store.View
	}
	w := who(ctx, "")
	err := run(ctx, func(tx Tx) (err error) {
		// The log entries of the actor's compensated instances go too,
		// which releases their events' keys: their compensations say so.
		if apply {
			if err := tx.ReleaseCompensations(ctx, actor, Release{At: TimeOf(e.clock()), By: w.By, Claimed: w.Claimed, Reason: "rollback of actor " + actor}); err != nil {
				return err
			}
		}
		if r.RollbackCounts, err = tx.RollbackActor(ctx, actor, apply); err != nil || !apply {
			return err
		}
		c := r.RollbackCounts
		return e.audit(ctx, tx, w, AuditRollback, actor, "deleted log_rows=%d lineage=%d instances=%d memberships=%d",
			c.LogRows, c.LineageRows, c.Instances, c.Memberships)
	})
	if err != nil {
		return RollbackReport{}, fmt.Errorf("rollback %s: %w", actor, err)
	}
	return r, nil
}

// RollbackReport says what a rollback deleted, or would delete.
type RollbackReport struct {
	Actor  string `json:"actor"`
	DryRun bool   `json:"dry_run"`
	RollbackCounts
}
