package console

import (
	"context"
	"net/http"

	"github.com/iu-engine/iu"
)

// templatesPage is the list of templates.
type templatesPage struct {
	Templates []templateRow
}

type templateRow struct {
	iu.TemplateInfo
	Instances int64
}

func (c *Console) templatesData(ctx context.Context) (templatesPage, error) {
	var p templatesPage
	list, err := listTemplates(ctx, c.e)
	if err != nil {
		return p, err
	}
	counts, err := c.instanceCounts(ctx)
	if err != nil {
		return p, err
	}
	for _, t := range list {
		p.Templates = append(p.Templates, templateRow{TemplateInfo: t, Instances: counts[t.Key].InstanceCount})
	}
	return p, nil
}

// instanceCounts reads the per-template summary by key.
func (c *Console) instanceCounts(ctx context.Context) (map[string]iu.TemplateStat, error) {
	stats, _, err := c.stats(ctx, 0)
	if err != nil {
		return nil, err
	}
	m := make(map[string]iu.TemplateStat, len(stats))
	for _, s := range stats {
		m[s.TemplateKey] = s
	}
	return m, nil
}

func (c *Console) handleTemplates(q *request) error {
	p, err := c.templatesData(q.ctx())
	return c.show(q, "templates", layout{Title: "Templates"}, p, err)
}

// templatePage is one template: its header, its graph and its pieces.
type templatePage struct {
	Key               string
	Title             string
	Digest            iu.Digest
	EmitMode          iu.EmitMode
	Actor             string
	CreatedAt         any
	Instances         int64
	InstancesLastHour int64
	Slots             []slotRow
	Graph             graph
	// The other published versions, the latest last: admin may migrate
	// this version's instances to one of them.
	Versions []iu.TemplateInfo
	Latest   string
	// The mode switch and the Migrate form, for admin.
	Admin bool
	CSRF  string
}

type slotRow struct {
	ID    string
	Kind  string
	Body  string
	After []string
	Piece iu.Digest
}

func (c *Console) templateData(ctx context.Context, key string) (templatePage, error) {
	p := templatePage{Key: key}
	t, err := c.e.GetTemplate(ctx, key)
	if err != nil {
		if iu.ErrorCode(err) == iu.CodeNotFound {
			return p, httpError(http.StatusNotFound, "There is no template %s.", key)
		}
		return p, err
	}
	p.Title, p.Digest, p.EmitMode, p.Actor, p.CreatedAt = t.Title, t.Digest, t.EmitMode, t.Actor, t.CreatedAt
	for _, s := range t.Slots {
		pc := t.Pieces[s.Piece]
		p.Slots = append(p.Slots, slotRow{ID: s.ID, Kind: pc.Kind, Body: pc.Body, After: s.After, Piece: s.Piece})
	}
	p.Graph = layoutGraph(t.Slots, t.Pieces)
	counts, err := c.instanceCounts(ctx)
	if err != nil {
		return p, err
	}
	p.Instances, p.InstancesLastHour = counts[key].InstanceCount, counts[key].InstancesLastHour
	if p.Versions, err = otherVersions(ctx, c.e, key); err != nil {
		return p, err
	}
	if n := len(p.Versions); n > 0 {
		p.Latest = p.Versions[n-1].Key
	}
	return p, nil
}

func (c *Console) handleTemplate(q *request) error {
	key := q.r.PathValue("key")
	p, err := c.templateData(q.ctx(), key)
	p.Admin, p.CSRF = q.s.tok.Scope == iu.ScopeAdmin, q.s.csrf
	title := key
	if err != nil && p.Title == "" {
		title = "Template"
	}
	return c.show(q, "template", layout{Title: title, Nav: "templates"}, p, err)
}

// handleSetMode switches a template between live and shadow, after the
// operator confirmed it on a page of its own.
func (c *Console) handleSetMode(q *request) error {
	key := q.r.PostFormValue("key")
	mode, err := iu.ParseEmitMode(q.r.PostFormValue("mode"))
	if err != nil {
		return err
	}
	back := "/templates/" + (&urlPath{key}).String()
	if q.r.PostFormValue("confirmed") != "yes" {
		what := "Events for it will make instances again."
		if mode == iu.EmitShadow {
			what = "Events for it will only be logged with the instance they would have made; nothing is instantiated until it is live again."
		}
		c.render(q, http.StatusOK, "confirm", layout{Title: "Switch " + key + " to " + string(mode) + "?", Nav: "templates"}, confirmPage{
			Question: "Switch template " + key + " to " + string(mode) + "?",
			Detail:   what,
			Action:   "/templates/mode",
			Fields:   []field{{"key", key}, {"mode", string(mode)}},
			Button:   "Switch " + key + " to " + string(mode),
			Cancel:   back,
			CSRF:     q.s.csrf,
		})
		return nil
	}
	if err := c.e.SetEmitMode(q.ctx(), key, mode); err != nil {
		return err
	}
	c.summary.forget()
	c.log.Info("console: emit mode set", "template", key, "mode", mode, "token", q.s.tok.Name)
	return c.redirect(q, back, "Template "+key+" is now "+string(mode)+".")
}

// confirmPage asks an operator to confirm a change before it is made.
type confirmPage struct {
	Question string
	Detail   string
	Action   string
	Fields   []field
	Button   string
	Cancel   string
	CSRF     string
}

type field struct{ Name, Value string }
