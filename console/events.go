package console

import (
	"context"
	"net/url"

	"github.com/iu-engine/iu"
)

// eventsPage is a page of the event log, newest first.
type eventsPage struct {
	Filter   eventQuery
	Statuses []iu.Status
	Rows     []iu.LogEntry
	Pager    pager
}

func (c *Console) eventsData(ctx context.Context, f eventQuery) (eventsPage, error) {
	p := eventsPage{Filter: f, Statuses: []iu.Status{iu.StatusOK, iu.StatusShadow}}
	f.Limit = pageSize
	rows, next, err := listEvents(ctx, c.e, f)
	if err != nil {
		return p, err
	}
	p.Rows = rows
	v := url.Values{}
	if f.Status != "" {
		v.Set("status", f.Status)
	}
	if f.Actor != "" {
		v.Set("actor", f.Actor)
	}
	if next != "" {
		w := url.Values{"after": {next}}
		for k, s := range v {
			w[k] = s
		}
		p.Pager.Next = "/events?" + w.Encode()
	}
	if f.After != "" {
		p.Pager.First = "/events?" + v.Encode()
	}
	return p, nil
}

func (c *Console) handleEvents(q *request) error {
	v := q.r.URL.Query()
	p, err := c.eventsData(q.ctx(), eventQuery{Status: v.Get("status"), Actor: v.Get("actor"), After: v.Get("after")})
	return c.show(q, "events", layout{Title: "Events"}, p, err)
}
