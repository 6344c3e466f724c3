package console

import (
	"context"

	"github.com/iu-engine/iu"
)

// The engine's list calls, as the pages use them: a page of rows and the
// cursor of the next page ("" at the end). Short lists (templates, tokens,
// triggers) are read whole, a page at a time.

// instanceQuery selects a page of instances.
type instanceQuery struct {
	Actor, Template, Prefix, EventID string
	After                            string
	Limit                            int
}

func listInstances(ctx context.Context, e *iu.Engine, f instanceQuery) ([]iu.InstanceRow, string, error) {
	p, err := e.Instances(ctx, iu.InstanceFilter{Actor: f.Actor, TemplateKey: f.Template, Prefix: f.Prefix, EventID: f.EventID,
		PageRequest: iu.PageRequest{After: f.After, Limit: f.Limit}})
	return p.Items, p.Next, err
}

// eventQuery selects a page of the event log.
type eventQuery struct {
	Status, Actor string
	After         string
	Limit         int
}

func listEvents(ctx context.Context, e *iu.Engine, f eventQuery) ([]iu.LogEntry, string, error) {
	p, err := e.EventLog(ctx, iu.EventFilter{Status: iu.Status(f.Status), Actor: f.Actor, PageRequest: iu.PageRequest{After: f.After, Limit: f.Limit}})
	return p.Items, p.Next, err
}

func gateAudit(ctx context.Context, e *iu.Engine, after string, limit int) ([]iu.GateAuditEntry, string, error) {
	p, err := e.GateAudit(ctx, iu.PageRequest{After: after, Limit: limit})
	return p.Items, p.Next, err
}

func auditTrail(ctx context.Context, e *iu.Engine, after string, limit int) ([]iu.AuditEntry, string, error) {
	p, err := e.Audit(ctx, iu.PageRequest{After: after, Limit: limit})
	return p.Items, p.Next, err
}

// maxListed bounds the short lists a page reads whole.
const maxListed = 10 * iu.MaxPageSize

// all reads every item of a short list, up to maxListed.
func all[T any](ctx context.Context, fetch func(context.Context, iu.PageRequest) (iu.Page[T], error)) ([]T, error) {
	var out []T
	after := ""
	for {
		p, err := fetch(ctx, iu.PageRequest{After: after, Limit: iu.MaxPageSize})
		if err != nil {
			return nil, err
		}
		out = append(out, p.Items...)
		if p.Next == "" || len(out) >= maxListed {
			return out, nil
		}
		after = p.Next
	}
}

func listTemplates(ctx context.Context, e *iu.Engine) ([]iu.TemplateInfo, error) {
	return all(ctx, e.ListTemplates)
}

func listTokens(ctx context.Context, e *iu.Engine) ([]iu.Token, error) { return all(ctx, e.ListTokens) }

func listTriggers(ctx context.Context, e *iu.Engine) ([]iu.Trigger, error) {
	return all(ctx, e.ListTriggers)
}
