package console

import (
	"context"
	"net/http"

	"github.com/iu-engine/iu"
)

// previewKeys is how many instance keys a rollback preview lists.
const previewKeys = 10

// rollbackPage is the rollback form, a preview (dry run) of one actor's
// rollback, or what an applied one deleted.
type rollbackPage struct {
	Actor   string
	Actors  []string
	Preview *iu.RollbackReport // the dry run
	Keys    []string           // the first instance keys it would delete
	More    bool               // more keys than listed
	Applied *iu.RollbackReport // what was deleted
	CSRF    string
}

func (r rollbackPage) Empty() bool {
	return r.Preview != nil && r.Preview.RollbackCounts == (iu.RollbackCounts{})
}

// rollbackData previews rolling back actor: the counts a dry run gives
// and the first instance keys.
func (c *Console) rollbackData(ctx context.Context, actor string) (rollbackPage, error) {
	p := rollbackPage{Actor: actor}
	actors, err := c.e.Actors(ctx, "", 200)
	if err != nil {
		return p, err
	}
	p.Actors = actors
	if actor == "" {
		return p, nil
	}
	rep, err := c.e.Rollback(ctx, actor, false)
	if err != nil {
		return p, err
	}
	p.Preview = &rep
	rows, next, err := listInstances(ctx, c.e, instanceQuery{Actor: actor, Limit: previewKeys})
	if err != nil {
		return p, err
	}
	for _, r := range rows {
		p.Keys = append(p.Keys, r.InstanceKey)
	}
	p.More = next != ""
	return p, nil
}

func (c *Console) handleRollback(q *request) error {
	p, err := c.rollbackData(q.ctx(), q.r.URL.Query().Get("actor"))
	p.CSRF = q.s.csrf
	return c.show(q, "rollback", layout{Title: "Rollback"}, p, err)
}

// handleApplyRollback deletes an actor's auto instantiations, once the
// operator has typed the actor's name to confirm.
func (c *Console) handleApplyRollback(q *request) error {
	actor := q.r.PostFormValue("actor")
	if err := iu.CheckActor(actor); err != nil {
		return err
	}
	if typed := q.r.PostFormValue("confirm"); typed != actor {
		p, err := c.rollbackData(q.ctx(), actor)
		p.CSRF = q.s.csrf
		if err == nil {
			err = httpError(http.StatusBadRequest, "Nothing was deleted: type the actor's name, %s, exactly, to confirm.", actor)
		}
		return c.show(q, "rollback", layout{Title: "Rollback"}, p, err)
	}
	rep, err := c.e.Rollback(q.ctx(), actor, true)
	c.summary.forget() // either way: a commit whose answer was lost may have happened
	if err != nil {
		return err
	}
	c.log.Info("console: rollback applied", "actor", actor, "token", q.s.tok.Name,
		"log_rows", rep.LogRows, "lineage", rep.LineageRows, "instances", rep.Instances, "memberships", rep.Memberships)
	p := rollbackPage{Actor: actor, Applied: &rep, CSRF: q.s.csrf}
	if p.Actors, err = c.e.Actors(q.ctx(), "", 200); err != nil {
		return err
	}
	return c.show(q, "rollback", layout{Title: "Rollback", Notice: "Rolled back " + actor + "."}, p, nil)
}
