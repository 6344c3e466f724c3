package iu

import (
	"context"
	"iter"
)

// Service is everything iu does, as its adapters see it. *Engine implements
// it over a Store; the HTTP client implements it over a running `iu serve`,
// so the command line has one output path whichever it talks to.
type Service interface {
	PublishTemplates(ctx context.Context, templates []*Template, actor string) ([]PublishResult, error)
	ListTemplates(ctx context.Context, r PageRequest) (Page[TemplateInfo], error)
	GetTemplate(ctx context.Context, key string) (*Template, error)
	SetEmitMode(ctx context.Context, key string, mode EmitMode) error

	Gates(ctx context.Context) (Gates, error)
	SetGates(ctx context.Context, change GateChange, actor string) (Gates, error)
	GateAudit(ctx context.Context, r PageRequest) (Page[GateAuditEntry], error)
	Audit(ctx context.Context, r PageRequest) (Page[AuditEntry], error)

	Emit(ctx context.Context, req EmitRequest) (Result, error)
	Compose(ctx context.Context, req ComposeRequest) (ComposeResult, error)
	Bulk(ctx context.Context, plan *BulkPlan, events iter.Seq2[BulkEvent, error], progress BulkProgress) (*BulkReport, error)

	Instances(ctx context.Context, f InstanceFilter) (Page[InstanceRow], error)
	EventLog(ctx context.Context, f EventFilter) (Page[LogEntry], error)
	Stats(ctx context.Context) ([]TemplateStat, error)
	Verify(ctx context.Context, actor string) (*VerifyReport, error)
	Rollback(ctx context.Context, actor string, apply bool) (RollbackReport, error)
	Render(ctx context.Context, key string) (*Rendered, error)

	ListTriggers(ctx context.Context, r PageRequest) (Page[Trigger], error)
	AddTrigger(ctx context.Context, t Trigger, actor string) (Trigger, error)
	RemoveTrigger(ctx context.Context, name string) (Trigger, error)

	CreateToken(ctx context.Context, name string, scope Scope, actor string) (NewToken, error)
	ListTokens(ctx context.Context, r PageRequest) (Page[Token], error)
	RevokeToken(ctx context.Context, name string) (Token, error)
}

var _ Service = (*Engine)(nil)
