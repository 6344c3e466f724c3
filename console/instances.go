package console

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/iu-engine/iu"
)

// pageSize is how many rows a list page shows.
const pageSize = 50

// instancesPage is a page of instances under a filter.
type instancesPage struct {
	Filter    instanceQuery
	Templates []string // for the template filter's choices
	Rows      []iu.InstanceRow
	Pager     pager
}

// pager links to the first page and the next one.
type pager struct {
	First, Next string
}

func (c *Console) instancesData(ctx context.Context, f instanceQuery) (instancesPage, error) {
	p := instancesPage{Filter: f}
	ts, err := listTemplates(ctx, c.e)
	if err != nil {
		return p, err
	}
	for _, t := range ts {
		p.Templates = append(p.Templates, t.Key)
	}
	f.Limit = pageSize
	rows, next, err := listInstances(ctx, c.e, f)
	if err != nil {
		return p, err
	}
	p.Rows = rows
	v := f.values()
	if next != "" {
		v.Set("after", next)
		p.Pager.Next = "/instances?" + v.Encode()
	}
	if f.After != "" {
		v.Del("after")
		p.Pager.First = "/instances?" + v.Encode()
	}
	return p, nil
}

// values is the filter as a query string, without the cursor.
func (f instanceQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"actor": f.Actor, "template": f.Template, "prefix": f.Prefix, "event": f.EventID} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

func (c *Console) handleInstances(q *request) error {
	v := q.r.URL.Query()
	f := instanceQuery{Actor: v.Get("actor"), Template: v.Get("template"), Prefix: v.Get("prefix"), EventID: v.Get("event"), After: v.Get("after")}
	p, err := c.instancesData(q.ctx(), f)
	return c.show(q, "instances", layout{Title: "Instances"}, p, err)
}

// instancePage is one instance: its lineage, whether it verifies, the
// instance rendered, and its history. A key whose instance was compensated
// has a page still, with its history alone.
type instancePage struct {
	Key            string
	Title          string
	TemplateKey    string
	TemplateDigest iu.Digest
	Digest         iu.Digest
	Actor          string
	Mode           iu.Mode
	Event          *iu.Event
	Data           string // the event's data, indented
	CreatedAt      any
	Pieces         int
	Problems       []string // why it does not verify; none when it does
	Rendered       *iu.Rendered
	History        []iu.HistoryEntry
	// Gone is the compensation that ended the instance, when the key names
	// none now.
	Gone *iu.HistoryEntry
	// Releasable: the compensated instance's event key is still claimed,
	// and may be released (the engine's dry run says so).
	Releasable bool
	// The Compensate (or Release) form, for admin.
	Admin bool
}

func (c *Console) instanceData(ctx context.Context, key string) (instancePage, error) {
	p := instancePage{Key: key}
	rec, err := c.e.GetInstance(ctx, key)
	if err != nil {
		if iu.ErrorCode(err) == iu.CodeNotFound {
			return c.goneInstanceData(ctx, p)
		}
		return p, err
	}
	p.Title, p.TemplateKey, p.TemplateDigest, p.Digest = rec.Title, rec.TemplateKey, rec.TemplateDigest, rec.Digest
	p.Actor, p.Mode, p.Event, p.CreatedAt, p.Pieces = rec.Actor, rec.Mode, rec.Event, rec.CreatedAt, len(rec.Slots)
	if rec.Event != nil && len(rec.Event.Data) > 0 {
		p.Data = indentJSON(rec.Event.Data)
	}
	if p.Problems, err = c.e.VerifyInstance(ctx, key); err != nil {
		return p, err
	}
	if p.Rendered, err = c.e.Render(ctx, key); err != nil {
		return p, err
	}
	if p.History, err = c.e.History(ctx, key); err != nil {
		return p, err
	}
	return p, nil
}

// goneInstanceData is the page of a key that names no instance: its
// history if it had one (it was compensated), else not found.
func (c *Console) goneInstanceData(ctx context.Context, p instancePage) (instancePage, error) {
	h, err := c.e.History(ctx, p.Key)
	switch {
	case iu.ErrorCode(err) == iu.CodeNotFound:
		return p, httpError(http.StatusNotFound, "There is no instance %s (it may have been rolled back).", p.Key)
	case err != nil:
		return p, err
	}
	p.History = h
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].What == "compensated" {
			p.Gone = &h[i]
			break
		}
	}
	if p.Gone == nil { // migrated, then rolled back: history without an end
		return p, httpError(http.StatusNotFound, "There is no instance %s now (it may have been rolled back); its history is below.", p.Key)
	}
	_, err = c.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: p.Key, Release: true})
	p.Releasable = err == nil
	return p, nil
}

func (c *Console) handleInstance(q *request) error {
	key := q.r.PathValue("key")
	p, err := c.instanceData(q.ctx(), key)
	p.Admin = q.s.tok.Scope == iu.ScopeAdmin
	return c.show(q, "instance", layout{Title: key, Nav: "instances"}, p, err)
}

// indentJSON lays out JSON for reading; anything else is shown as it is.
func indentJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
