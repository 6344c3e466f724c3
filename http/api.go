package http

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	nethttp "net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

//go:embed openapi.json
var openapiJSON []byte

// smallBody bounds the bodies of routes that take little or nothing.
const smallBody = 64 << 10

// routeTable is every route: method, pattern, the scope it needs ("" for
// the open ones), the body limit and the handler. openapi.json describes
// the same routes; a test keeps the two in step.
func (s *Server) routeTable() []route {
	ev, body, bulk := s.cfg.MaxEventBytes, s.cfg.MaxBodyBytes, s.cfg.MaxBulkBytes
	const (
		open   = iu.Scope("")
		ingest = iu.ScopeIngest
		read   = iu.ScopeRead
		admin  = iu.ScopeAdmin
	)
	return []route{
		{"POST", "/v1/events", ingest, ev, "Post CloudEvents: binary, structured or batch mode", s.handleEvents},
		{"POST", "/v1/emit", ingest, body, "One event for one named template (iu emit)", s.handleEmit},

		{"GET", "/v1/templates", read, smallBody, "List templates", s.handleListTemplates},
		{"POST", "/v1/templates", admin, body, "Publish templates, all or none", s.handlePublish},
		{"GET", "/v1/templates/{key}", read, smallBody, "A template with its pieces", s.handleTemplate},
		{"PUT", "/v1/templates/{key}/mode", admin, smallBody, "Set a template's emit mode", s.handleMode},

		{"GET", "/v1/gates", read, smallBody, "The gates", s.handleGates},
		{"PUT", "/v1/gates", admin, smallBody, "Set gates", s.handleSetGates},
		{"GET", "/v1/gates/audit", read, smallBody, "The gates' audit trail, newest first", s.handleGateAudit},
		{"GET", "/v1/audit", read, smallBody, "The audit trail of every other change, newest first", s.handleAudit},

		{"POST", "/v1/compose", admin, smallBody, "Compose an instance by hand (iu compose)", s.handleCompose},
		{"POST", "/v1/bulk", admin, bulk, "A bulk run: NDJSON, one transaction", s.handleBulk},

		{"GET", "/v1/events", read, smallBody, "The event log, newest first, filtered and paginated", s.handleEventLog},
		{"GET", "/v1/instances", read, smallBody, "Auto instances, filtered and paginated", s.handleInstances},
		{"GET", "/v1/instances/{key}", read, smallBody, "One instance with its lineage", s.handleInstance},
		{"GET", "/v1/instances/{key}/render", read, smallBody, "An instance rendered", s.handleRender},
		{"GET", "/v1/instances/{key}/history", read, smallBody, "An instance's history, oldest first", s.handleHistory},
		{"POST", "/v1/instances/{key}/compensate", admin, smallBody, "Compensate one instance (dry run unless apply)", s.handleCompensate},
		{"POST", "/v1/migrations", admin, smallBody, "Migrate instances to another version of their template (dry run unless apply)", s.handleMigrate},

		{"GET", "/v1/stats", read, smallBody, "Per-template summary", s.handleStats},
		{"GET", "/v1/verify", read, smallBody, "Verify digests and the shared graph", s.handleVerify},
		{"POST", "/v1/rollback", admin, smallBody, "Roll back an actor's auto instantiations (dry run unless apply)", s.handleRollback},

		{"GET", "/v1/triggers", read, smallBody, "List triggers", s.handleListTriggers},
		{"POST", "/v1/triggers", admin, smallBody, "Add a trigger", s.handleAddTrigger},
		{"DELETE", "/v1/triggers/{name}", admin, smallBody, "Remove a trigger", s.handleRemoveTrigger},

		{"GET", "/v1/tokens", admin, smallBody, "List tokens", s.handleListTokens},
		{"POST", "/v1/tokens", admin, smallBody, "Create a token (its secret is in this answer only)", s.handleCreateToken},
		{"DELETE", "/v1/tokens/{name}", admin, smallBody, "Revoke a token", s.handleRevokeToken},

		{"GET", "/metrics", read, smallBody, "Prometheus metrics", s.handleMetrics},
		{"GET", "/healthz", open, smallBody, "The process is up", s.handleHealth},
		{"GET", "/readyz", open, smallBody, "The store is reachable and its schema current", s.handleReady},
		{"GET", "/openapi.json", open, smallBody, "This API described in OpenAPI 3", s.handleOpenAPI},
	}
}

// Routes lists the routes as "METHOD PATTERN" with their scopes, for tests
// and documentation.
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, len(s.routes))
	for i, r := range s.routes {
		out[i] = RouteInfo{Method: r.method, Pattern: r.pattern, Scope: r.scope}
	}
	return out
}

// RouteInfo describes one route.
type RouteInfo struct {
	Method  string
	Pattern string
	Scope   iu.Scope // "" for open routes
}

func (s *Server) handleEmit(c *call) error {
	var b EmitBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	req := iu.EmitRequest{TemplateKey: b.Template, Event: b.Event, Actor: b.Actor, Prefix: b.Prefix}
	outs, err := s.batcher.Submit(c.ctx(), []iu.EmitRequest{req})
	if err != nil {
		return err
	}
	if o := outs[0]; o.Err != nil {
		s.metrics.instantiation(b.Template, errors.Is(o.Err, iu.ErrIdempotencyConflict), string(iu.ErrorCode(o.Err)))
		return o.Err
	}
	r := outs[0].Result
	s.metrics.instantiation(b.Template, true, resultLabel(r))
	status := nethttp.StatusOK
	switch {
	case r.Status == iu.StatusGated:
		status = nethttp.StatusServiceUnavailable
		c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		c.w.Header().Set("Iu-Gate", r.Gate)
	case r.Created():
		status = nethttp.StatusCreated
	}
	c.outcome = resultLabel(r)
	writeJSON(c.w, status, r)
	return nil
}

// pageParams reads a list's after and limit parameters.
func pageParams(q url.Values) (iu.PageRequest, error) {
	limit, err := intParam(q, "limit", iu.DefaultPageSize)
	if err != nil {
		return iu.PageRequest{}, err
	}
	return iu.PageRequest{After: q.Get("after"), Limit: limit}, nil
}

// listHandler serves a list route: the page the query asks for, or an
// error.
func listHandler[T any](list func(ctx context.Context, r iu.PageRequest) (iu.Page[T], error)) func(*call) error {
	return func(c *call) error {
		r, err := pageParams(c.r.URL.Query())
		if err != nil {
			return err
		}
		page, err := list(c.ctx(), r)
		if err != nil {
			return err
		}
		writeJSON(c.w, nethttp.StatusOK, page)
		return nil
	}
}

func (s *Server) handleListTemplates(c *call) error { return listHandler(s.engine.ListTemplates)(c) }

func (s *Server) handlePublish(c *call) error {
	var b PublishBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	if len(b.Templates) == 0 {
		return httpError(iu.CodeInvalid, "no templates: want {\"templates\": [template, ...]} with templates in the template file format")
	}
	tps := make([]*iu.Template, len(b.Templates))
	for i, raw := range b.Templates {
		t, err := iu.ParseTemplateFile(fmt.Sprintf("templates[%d]", i), raw)
		if err != nil {
			return err
		}
		tps[i] = t
	}
	actor := b.Actor
	if actor == "" {
		actor = c.claimed()
	}
	res, err := s.engine.PublishTemplates(c.ctx(), tps, actor)
	if err != nil {
		return err
	}
	status := nethttp.StatusOK
	for _, r := range res {
		if r.Created {
			status = nethttp.StatusCreated
		}
	}
	writeJSON(c.w, status, res)
	return nil
}

func (s *Server) handleTemplate(c *call) error {
	t, err := s.engine.GetTemplate(c.ctx(), c.r.PathValue("key"))
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, NewTemplateDoc(t))
	return nil
}

func (s *Server) handleMode(c *call) error {
	var b ModeBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	key := c.r.PathValue("key")
	if b.Key != "" && b.Key != key {
		return httpError(iu.CodeInvalid, "the body names template %s, the path %s", b.Key, key)
	}
	if err := s.engine.SetEmitMode(c.ctx(), key, b.EmitMode); err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, ModeBody{Key: key, EmitMode: b.EmitMode})
	return nil
}

func (s *Server) handleGates(c *call) error {
	g, err := s.engine.Gates(c.ctx())
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, g)
	return nil
}

func (s *Server) handleSetGates(c *call) error {
	var change iu.GateChange
	if err := decodeJSON(c.r, &change); err != nil {
		return err
	}
	g, err := s.engine.SetGates(c.ctx(), change, c.claimed())
	if err != nil {
		return err
	}
	c.logger().Info("gates set", "change", fmt.Sprint(map[string]bool(change)), "claimed_actor", c.claimed(), "token", c.token.Name)
	writeJSON(c.w, nethttp.StatusOK, g)
	return nil
}

func (s *Server) handleGateAudit(c *call) error { return listHandler(s.engine.GateAudit)(c) }

func (s *Server) handleAudit(c *call) error { return listHandler(s.engine.Audit)(c) }

func (s *Server) handleCompose(c *call) error {
	var b ComposeBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	r, err := s.engine.Compose(c.ctx(), iu.ComposeRequest{TemplateKey: b.Template, InstanceKey: b.Key, Actor: b.Actor})
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusCreated, r)
	return nil
}

func intParam(q url.Values, name string, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, httpError(iu.CodeInvalid, "%s=%q: want a number, 0 or more", name, v)
	}
	return n, nil
}

func (s *Server) handleInstances(c *call) error {
	q := c.r.URL.Query()
	r, err := pageParams(q)
	if err != nil {
		return err
	}
	f := iu.InstanceFilter{Actor: q.Get("actor"), TemplateKey: q.Get("template"), Prefix: q.Get("prefix"), EventID: q.Get("event_id"), PageRequest: r}
	page, err := s.engine.Instances(c.ctx(), f)
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, page)
	return nil
}

func (s *Server) handleEventLog(c *call) error {
	q := c.r.URL.Query()
	r, err := pageParams(q)
	if err != nil {
		return err
	}
	page, err := s.engine.EventLog(c.ctx(), iu.EventFilter{Status: iu.Status(q.Get("status")), Actor: q.Get("actor"), PageRequest: r})
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, page)
	return nil
}

func (s *Server) handleInstance(c *call) error {
	rec, err := s.engine.GetInstance(c.ctx(), c.r.PathValue("key"))
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, newInstanceDoc(rec))
	return nil
}

func (s *Server) handleRender(c *call) error {
	r, err := s.engine.Render(c.ctx(), c.r.PathValue("key"))
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, r)
	return nil
}

func (s *Server) handleHistory(c *call) error {
	h, err := s.engine.History(c.ctx(), c.r.PathValue("key"))
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, h)
	return nil
}

func (s *Server) handleCompensate(c *call) error {
	var b CompensateBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	key := c.r.PathValue("key")
	r, err := s.engine.Compensate(c.ctx(), iu.CompensateRequest{InstanceKey: key, Reason: b.Reason, Release: b.Release, Apply: b.Apply, Actor: c.claimed()})
	if err != nil {
		return err
	}
	if b.Apply {
		c.logger().Info("compensated", "instance", key, "release", b.Release, "token", c.token.Name)
	}
	writeJSON(c.w, nethttp.StatusOK, r)
	return nil
}

// handleMigrate runs a migration; with Accept: application/x-ndjson the
// answer streams {"moved", "total"} after each batch, then {"report"} or
// {"error"}, as a bulk run's does. A migration of a million instances
// takes longer than the server's usual timeouts.
func (s *Server) handleMigrate(c *call) error {
	var b iu.MigrateRequest
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	b.Claimed = c.claimed()
	rc := nethttp.NewResponseController(c.w)
	deadline := time.Now().Add(s.cfg.BulkTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
	if intake.MediaType(c.r.Header.Get("Accept")) != ctNDJSON {
		r, err := s.engine.Migrate(c.ctx(), b, nil)
		if err != nil {
			return err
		}
		writeJSON(c.w, nethttp.StatusOK, r)
		return nil
	}
	c.w.Header().Set("Content-Type", ctNDJSON)
	c.w.WriteHeader(nethttp.StatusOK)
	out := &frameWriter{w: c.w, rc: rc}
	r, err := s.engine.Migrate(c.ctx(), b, func(moved, total int64) {
		out.write(migrateFrame{Moved: moved, Total: total}, false)
	})
	if err != nil {
		body := publicError(err, c.id)
		c.logger().Warn("migration stopped", "from", b.From, "to", b.To, "err", err)
		out.write(migrateFrame{Report: r, Error: &body}, true)
		return nil
	}
	if b.Apply {
		c.logger().Info("migrated", "from", b.From, "to", b.To, "moved", r.Moved, "token", c.token.Name)
	}
	out.write(migrateFrame{Report: r}, true)
	return nil
}

func (s *Server) handleStats(c *call) error {
	st, err := s.engine.Stats(c.ctx())
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, st)
	return nil
}

func (s *Server) handleVerify(c *call) error {
	rep, err := s.engine.Verify(c.ctx(), c.r.URL.Query().Get("actor"))
	if err != nil {
		return err
	}
	writeJSON(c.w, nethttp.StatusOK, rep)
	return nil
}

func (s *Server) handleRollback(c *call) error {
	var b RollbackBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	r, err := s.engine.Rollback(c.ctx(), b.Actor, b.Apply)
	if err != nil {
		return err
	}
	if b.Apply {
		c.logger().Info("rolled back", "actor", b.Actor, "token", c.token.Name, "log_rows", r.LogRows, "instances", r.Instances)
	}
	writeJSON(c.w, nethttp.StatusOK, r)
	return nil
}

func (s *Server) handleListTriggers(c *call) error { return listHandler(s.engine.ListTriggers)(c) }

func (s *Server) handleAddTrigger(c *call) error {
	var b TriggerBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	t, err := s.engine.AddTrigger(c.ctx(), iu.Trigger{Name: b.Name, Type: b.Type, Source: b.Source, Template: b.Template, Actor: b.Actor, Prefix: b.Prefix}, c.claimed())
	if err != nil {
		return err
	}
	s.triggers.Forget()
	c.logger().Info("trigger added", "trigger", t.Name, "type", t.Type, "template", t.Template, "token", c.token.Name)
	writeJSON(c.w, nethttp.StatusCreated, t)
	return nil
}

func (s *Server) handleRemoveTrigger(c *call) error {
	t, err := s.engine.RemoveTrigger(c.ctx(), c.r.PathValue("name"))
	if err != nil {
		return err
	}
	s.triggers.Forget()
	c.logger().Info("trigger removed", "trigger", t.Name, "token", c.token.Name)
	writeJSON(c.w, nethttp.StatusOK, t)
	return nil
}

func (s *Server) handleListTokens(c *call) error { return listHandler(s.engine.ListTokens)(c) }

func (s *Server) handleCreateToken(c *call) error {
	var b TokenBody
	if err := decodeJSON(c.r, &b); err != nil {
		return err
	}
	t, err := s.engine.CreateToken(c.ctx(), b.Name, b.Scope, c.claimed())
	if err != nil {
		return err
	}
	c.logger().Info("token created", "name", t.Name, "scope", t.Scope, "by", c.token.Name)
	c.w.Header().Set("Cache-Control", "no-store")
	writeJSON(c.w, nethttp.StatusCreated, t)
	return nil
}

func (s *Server) handleRevokeToken(c *call) error {
	t, err := s.engine.RevokeToken(c.ctx(), c.r.PathValue("name"))
	if err != nil {
		return err
	}
	s.tokens.forget()
	c.logger().Info("token revoked", "name", t.Name, "by", c.token.Name)
	writeJSON(c.w, nethttp.StatusOK, t)
	return nil
}

func (s *Server) handleMetrics(c *call) error {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(c.w, c.r)
	return nil
}

func (s *Server) handleHealth(c *call) error {
	writeJSON(c.w, nethttp.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleReady answers 200 when the store answers and its schema is
// current, 503 while shutting down or when the store does not answer. The
// route is open, so the answer does not say where the store is.
func (s *Server) handleReady(c *call) error {
	if s.draining.Load() {
		c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		writeJSON(c.w, nethttp.StatusServiceUnavailable, errorDoc{errorBody{Code: iu.CodeUnavailable, Message: "shutting down"}})
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx(), 5*time.Second)
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		c.logger().Warn("not ready", "err", err)
		msg := "the store does not answer"
		if iu.ErrorCode(err) == iu.CodeInvalid {
			msg = "the store's schema is newer than this iu: upgrade iu"
		}
		c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		writeJSON(c.w, nethttp.StatusServiceUnavailable, errorDoc{errorBody{Code: iu.CodeUnavailable, Message: msg}})
		return nil
	}
	s.readyMu.Lock()
	checks := s.readyChecks
	s.readyMu.Unlock()
	for _, rc := range checks {
		if err := rc.check(ctx); err != nil {
			c.logger().Warn("not ready", "check", rc.name, "err", err)
			c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
			writeJSON(c.w, nethttp.StatusServiceUnavailable, errorDoc{errorBody{Code: iu.CodeUnavailable, Message: rc.name + " is not ready"}})
			return nil
		}
	}
	writeJSON(c.w, nethttp.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *Server) handleOpenAPI(c *call) error {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(nethttp.StatusOK)
	c.w.Write(openapiJSON)
	return nil
}
