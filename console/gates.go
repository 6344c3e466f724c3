package console

import (
	"context"
	"net/http"
	"strconv"

	"github.com/iu-engine/iu"
)

// gatesPage is the gates and their audit trail.
type gatesPage struct {
	Gates []gateRow
	Audit []iu.GateAuditEntry
	Pager pager
}

func (c *Console) gatesData(ctx context.Context, after string) (gatesPage, error) {
	var p gatesPage
	g, err := c.e.Gates(ctx)
	if err != nil {
		return p, err
	}
	p.Gates = gateRows(g)
	audit, next, err := gateAudit(ctx, c.e, after, pageSize)
	if err != nil {
		return p, err
	}
	p.Audit = audit
	if next != "" {
		p.Pager.Next = "/gates?after=" + urlQueryEscape(next)
	}
	if after != "" {
		p.Pager.First = "/gates"
	}
	return p, nil
}

func (c *Console) handleGates(q *request) error {
	p, err := c.gatesData(q.ctx(), q.r.URL.Query().Get("after"))
	for i := range p.Gates {
		p.Gates[i].Admin, p.Gates[i].CSRF, p.Gates[i].Back = q.s.tok.Scope == iu.ScopeAdmin, q.s.csrf, "/gates"
	}
	return c.show(q, "gates", layout{Title: "Gates"}, p, err)
}

// handleSetGate opens or closes one gate. Closing one stops work, so it is
// asked for again on a page of its own first; opening is done at once.
func (c *Console) handleSetGate(q *request) error {
	name, err := iu.ParseGateName(q.r.PostFormValue("gate"))
	if err != nil {
		return err
	}
	on, err := strconv.ParseBool(q.r.PostFormValue("enabled"))
	if err != nil {
		return httpError(http.StatusBadRequest, "enabled must be true or false, not %q", q.r.PostFormValue("enabled"))
	}
	back := localPath(q.r.PostFormValue("back"))
	if !on && q.r.PostFormValue("confirmed") != "yes" {
		c.render(q, http.StatusOK, "confirm", layout{Title: "Turn off " + name + "?", Nav: "gates"}, confirmPage{
			Question: "Turn off " + name + "?",
			Detail:   "While it is off, iu stops " + gateHelp[name] + ": events are answered \"gated\" and nothing is written. Turn it on again to resume.",
			Action:   "/gates",
			Fields:   []field{{"gate", name}, {"enabled", "false"}, {"back", back}},
			Button:   "Turn off " + name,
			Cancel:   back,
			CSRF:     q.s.csrf,
		})
		return nil
	}
	if _, err := c.e.SetGates(q.ctx(), iu.GateChange{name: on}, q.actor()); err != nil {
		return err
	}
	state := "off"
	if on {
		state = "on"
	}
	c.log.Info("console: gate set", "gate", name, "enabled", on, "token", q.s.tok.Name)
	return c.redirect(q, back, "Gate "+name+" is now "+state+".")
}
