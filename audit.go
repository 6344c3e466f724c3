package iu

import (
	"context"
	"fmt"
)

// Audit actions: what an AuditEntry records. Gates have their own trail
// (iu_gate_audit); every other change an operator makes is recorded here,
// in the transaction that makes it.
const (
	AuditPublish       = "template.publish"
	AuditEmitMode      = "template.mode"
	AuditTriggerAdd    = "trigger.add"
	AuditTriggerRemove = "trigger.remove"
	AuditTokenCreate   = "token.create"
	AuditTokenRevoke   = "token.revoke"
	AuditBulk          = "bulk"
	AuditRollback      = "rollback"
	AuditCompensate    = "instance.compensate"
	AuditRelease       = "instance.release"
	AuditMigrate       = "instance.migrate"
)

// AuditEntry is one recorded change: who made it (By, the principal),
// the actor the client claimed beside it, what was done (Action) to what
// (Subject), and a line of detail.
type AuditEntry struct {
	Seq     int64  `json:"-"` // the trail's order, for paging
	At      Time   `json:"at"`
	By      string `json:"by"`
	Claimed string `json:"claimed_actor,omitempty"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	Detail  string `json:"detail,omitempty"`
}

// audit records a change in tx, attributed to w.
func (e *Engine) audit(ctx context.Context, tx Tx, w Who, action, subject, format string, args ...any) error {
	return tx.InsertAudit(ctx, AuditEntry{
		At: TimeOf(e.clock()), By: w.By, Claimed: w.Claimed,
		Action: action, Subject: subject, Detail: fmt.Sprintf(format, args...),
	})
}

// Audit returns the audit trail newest first, a page at a time.
func (e *Engine) Audit(ctx context.Context, r PageRequest) (Page[AuditEntry], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[AuditEntry]{}, err
	}
	before, err := parseBeforeCursor(r.After)
	if err != nil {
		return Page[AuditEntry]{}, err
	}
	var rows []AuditEntry
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListAudit(ctx, before, limit+1)
		return err
	})
	return pageOf(rows, limit, func(a *AuditEntry) string { return seqCursor(a.Seq) }), err
}
