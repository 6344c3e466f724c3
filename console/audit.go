package console

import (
	"context"

	"github.com/iu-engine/iu"
)

// auditPage is the audit trail of every change but the gates' (which the
// Gates page shows): publishes, emit modes, triggers, tokens, bulk runs,
// rollbacks, newest first.
type auditPage struct {
	Rows  []iu.AuditEntry
	Pager pager
}

func (c *Console) auditData(ctx context.Context, after string) (auditPage, error) {
	var p auditPage
	rows, next, err := auditTrail(ctx, c.e, after, pageSize)
	if err != nil {
		return p, err
	}
	p.Rows = rows
	if next != "" {
		p.Pager.Next = "/audit?after=" + urlQueryEscape(next)
	}
	if after != "" {
		p.Pager.First = "/audit"
	}
	return p, nil
}

func (c *Console) handleAudit(q *request) error {
	p, err := c.auditData(q.ctx(), q.r.URL.Query().Get("after"))
	return c.show(q, "audit", layout{Title: "Audit"}, p, err)
}
