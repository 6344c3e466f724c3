package console

import (
	"context"

	"github.com/iu-engine/iu"
)

// triggersPage lists the triggers and, for admin, offers to add and
// remove them.
type triggersPage struct {
	Triggers  []iu.Trigger
	Templates []string
	Admin     bool
	CSRF      string
	Form      iu.Trigger // what was typed, kept when adding failed
}

func (c *Console) triggersData(ctx context.Context) (triggersPage, error) {
	var p triggersPage
	var err error
	if p.Triggers, err = listTriggers(ctx, c.e); err != nil {
		return p, err
	}
	ts, err := listTemplates(ctx, c.e)
	if err != nil {
		return p, err
	}
	for _, t := range ts {
		p.Templates = append(p.Templates, t.Key)
	}
	return p, nil
}

func (c *Console) handleTriggers(q *request) error {
	p, err := c.triggersData(q.ctx())
	p.Admin, p.CSRF = q.s.tok.Scope == iu.ScopeAdmin, q.s.csrf
	return c.show(q, "triggers", layout{Title: "Triggers"}, p, err)
}

func (c *Console) handleAddTrigger(q *request) error {
	f := q.r.PostFormValue
	t := iu.Trigger{Name: f("name"), Type: f("type"), Source: f("source"), Template: f("template"), Actor: f("actor"), Prefix: f("prefix")}
	added, err := c.e.AddTrigger(q.ctx(), t, q.actor())
	if err != nil {
		// Show the form again with what was typed and why it failed.
		p, lerr := c.triggersData(q.ctx())
		if lerr != nil {
			return lerr
		}
		p.Admin, p.CSRF, p.Form = true, q.s.csrf, t
		return c.show(q, "triggers", layout{Title: "Triggers"}, p, err)
	}
	c.log.Info("console: trigger added", "trigger", added.Name, "token", q.s.tok.Name)
	return c.redirect(q, "/triggers", "Trigger "+added.Name+" added: events of type "+added.Type+" now instantiate "+added.Template+".")
}

func (c *Console) handleRemoveTrigger(q *request) error {
	t, err := c.e.RemoveTrigger(q.ctx(), q.r.PostFormValue("name"))
	if err != nil {
		return err
	}
	c.log.Info("console: trigger removed", "trigger", t.Name, "token", q.s.tok.Name)
	return c.redirect(q, "/triggers", "Trigger "+t.Name+" removed.")
}
