package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	iuhttp "github.com/iu-engine/iu/http"
)

// Every typed error the engine returns is the same errors.Is through the
// HTTP client as directly: the client claims iu.Service, and a caller's
// errors.Is(err, iu.ErrTemplateExists) must not depend on which it holds.
func TestErrorsKeepTheirIdentityOverTheWire(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { errorsOverTheWire(t, b) })
	}
}

func errorsOverTheWire(t *testing.T, b backend) {
	{
		direct := startServer(t, b.db(t)).m.Engine
		remote := startServer(t, b.db(t))
		client, err := iuhttp.NewClient(remote.url, remote.admin)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		// Both are made by "admin": the direct engine's principal, the
		// server's token.
		ctx := iu.NewContextWithPrincipal(context.Background(), "admin")
		tps, err := examples.Templates()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := examples.FS.ReadFile("templates/onboarding.yaml")
		if err != nil {
			t.Fatal(err)
		}
		changed, err := iu.ParseTemplateFile("onboarding.yaml", []byte(strings.Replace(string(raw), "Confirm that", "Check that", 1)))
		if err != nil || changed.Key != tps[0].Key || changed.Digest == tps[0].Digest {
			t.Fatalf("a changed template: %v", err)
		}
		event := func(id, typ string, data string) iu.Event {
			return iu.Event{ID: id, Source: "test", Type: typ, Data: []byte(data)}
		}
		type op struct {
			name string
			fn   func(iu.Service) error
		}
		ops := []op{
			{"publish", func(s iu.Service) error { _, err := s.PublishTemplates(ctx, tps, "ops"); return err }},
			{"unknown template", func(s iu.Service) error { _, err := s.GetTemplate(ctx, "tpl:wf:nope/v1"); return err }},
			{"template exists", func(s iu.Service) error {
				_, err := s.PublishTemplates(ctx, []*iu.Template{changed}, "ops")
				return err
			}},
			{"emit mode of nothing", func(s iu.Service) error { return s.SetEmitMode(ctx, "tpl:wf:nope/v1", iu.EmitShadow) }},
			{"compose gated", func(s iu.Service) error {
				_, err := s.Compose(ctx, iu.ComposeRequest{TemplateKey: tps[0].Key, InstanceKey: "tpl-inst:manual:x", Actor: "a"})
				return err
			}},
			{"open gates", func(s iu.Service) error {
				_, err := s.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "")
				return err
			}},
			{"compose", func(s iu.Service) error {
				_, err := s.Compose(ctx, iu.ComposeRequest{TemplateKey: tps[0].Key, InstanceKey: "tpl-inst:manual:x", Actor: "a"})
				return err
			}},
			{"instance exists", func(s iu.Service) error {
				_, err := s.Compose(ctx, iu.ComposeRequest{TemplateKey: tps[0].Key, InstanceKey: "tpl-inst:manual:x", Actor: "a"})
				return err
			}},
			{"emit", func(s iu.Service) error {
				_, err := s.Emit(ctx, iu.EmitRequest{TemplateKey: tps[0].Key, Event: event("e-1", "t", `{"a":1}`), Actor: "a"})
				return err
			}},
			{"idempotency conflict", func(s iu.Service) error {
				_, err := s.Emit(ctx, iu.EmitRequest{TemplateKey: tps[0].Key, Event: event("e-1", "t", `{"a":2}`), Actor: "a"})
				return err
			}},
			{"emit unknown template", func(s iu.Service) error {
				_, err := s.Emit(ctx, iu.EmitRequest{TemplateKey: "tpl:wf:nope/v1", Event: event("e-2", "t", `{}`), Actor: "a"})
				return err
			}},
			{"invalid event", func(s iu.Service) error {
				_, err := s.Emit(ctx, iu.EmitRequest{TemplateKey: tps[0].Key, Event: event("e-3", "", `{}`), Actor: "a"})
				return err
			}},
			{"trigger", func(s iu.Service) error {
				_, err := s.AddTrigger(ctx, iu.Trigger{Name: "t1", Type: "x", Template: tps[0].Key}, "")
				return err
			}},
			{"trigger exists", func(s iu.Service) error {
				_, err := s.AddTrigger(ctx, iu.Trigger{Name: "t1", Type: "y", Template: tps[0].Key}, "")
				return err
			}},
			{"trigger of nothing", func(s iu.Service) error {
				_, err := s.AddTrigger(ctx, iu.Trigger{Type: "y", Template: "tpl:wf:nope/v1"}, "")
				return err
			}},
			{"remove no trigger", func(s iu.Service) error { _, err := s.RemoveTrigger(ctx, "nope"); return err }},
			{"token", func(s iu.Service) error { _, err := s.CreateToken(ctx, "ci", iu.ScopeIngest, ""); return err }},
			{"token exists", func(s iu.Service) error { _, err := s.CreateToken(ctx, "ci", iu.ScopeRead, ""); return err }},
			{"revoke no token", func(s iu.Service) error { _, err := s.RevokeToken(ctx, "nope"); return err }},
			{"render nothing", func(s iu.Service) error { _, err := s.Render(ctx, "tpl-inst:auto:nope-1"); return err }},
			{"bad cursor", func(s iu.Service) error {
				_, err := s.Instances(ctx, iu.InstanceFilter{PageRequest: iu.PageRequest{After: "nonsense"}})
				return err
			}},
			{"bad status", func(s iu.Service) error { _, err := s.EventLog(ctx, iu.EventFilter{Status: "gated"}); return err }},
			{"bulk of an unknown template", func(s iu.Service) error {
				_, err := s.Bulk(ctx, &iu.BulkPlan{Actor: "b", Events: []iu.BulkEvent{{Template: "tpl:wf:nope/v1", Event: event("b-1", "t", `{}`), Where: "plan:1"}}}, nil, nil)
				return err
			}},
			{"rollback of nobody", func(s iu.Service) error { _, err := s.Rollback(ctx, "a b", false); return err }},
		}
		sentinels := []error{
			iu.ErrInvalidTemplate, iu.ErrInvalidEvent, iu.ErrInvalidInput, iu.ErrUnknownTemplate, iu.ErrNotFound,
			iu.ErrTemplateExists, iu.ErrInstanceExists, iu.ErrIdempotencyConflict, iu.ErrGateClosed, iu.ErrUnavailable,
			iu.ErrTriggerExists, iu.ErrTokenExists, iu.ErrUnmatched,
		}
		failures := 0
		for _, o := range ops {
			de, re := o.fn(direct), o.fn(client)
			if (de == nil) != (re == nil) {
				t.Errorf("%s: directly %v, through the client %v", o.name, de, re)
				continue
			}
			if de != nil {
				failures++
			}
			for _, s := range sentinels {
				if errors.Is(de, s) != errors.Is(re, s) {
					t.Errorf("%s: errors.Is(%q) is %t directly (%v), %t through the client (%v)", o.name, s, errors.Is(de, s), de, errors.Is(re, s), re)
				}
			}
		}
		if failures < 15 {
			t.Fatalf("only %d operations failed: the script no longer provokes the errors it is about", failures)
		}
	}
}
