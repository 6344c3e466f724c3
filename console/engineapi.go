package console

import (
	"context"
	"strconv"

	"github.com/iu-engine/iu"
)

// The engine's list calls, as the pages use them: a page of rows and the
// cursor of the next page ("" at the end).

// instanceQuery selects a page of instances.
type instanceQuery struct {
	Actor, Template, Prefix, EventID string
	After                            string
	Limit                            int
}

func listInstances(ctx context.Context, e *iu.Engine, f instanceQuery) ([]iu.InstanceRow, string, error) {
	off, _ := strconv.Atoi(f.After)
	rows, err := e.Instances(ctx, iu.InstanceFilter{Actor: f.Actor, TemplateKey: f.Template, Prefix: f.Prefix, Limit: f.Limit + 1, Offset: off})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > f.Limit {
		rows, next = rows[:f.Limit], strconv.Itoa(off+f.Limit)
	}
	return rows, next, nil
}

func listTemplates(ctx context.Context, e *iu.Engine) ([]iu.TemplateInfo, error) {
	return e.ListTemplates(ctx)
}

func listTokens(ctx context.Context, e *iu.Engine) ([]iu.Token, error) {
	return e.ListTokens(ctx)
}

func listTriggers(ctx context.Context, e *iu.Engine) ([]iu.Trigger, error) {
	return e.ListTriggers(ctx)
}

func gateAudit(ctx context.Context, e *iu.Engine, after string, limit int) ([]iu.GateAuditEntry, string, error) {
	rows, err := e.GateAudit(ctx, limit)
	return rows, "", err
}

// eventQuery selects a page of the event log.
type eventQuery struct {
	Status, Actor string
	After         string
	Limit         int
}

func listEvents(ctx context.Context, e *iu.Engine, f eventQuery) ([]iu.LogEntry, string, error) {
	return nil, "", iu.Errorf(iu.ErrUnavailable, "the event log is not readable yet")
}
