package main

// End-to-end tests of iu serve: the real service (serveMain, as `iu serve`
// runs it) on port 0, over a real SQLite file and, when IU_TEST_POSTGRES is
// set, a real PostgreSQL schema, driven over HTTP.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/internal/pgtest"
	"github.com/iu-engine/iu/postgres"
	"github.com/iu-engine/iu/sqlite"
)

const (
	wfKey   = "tpl:wf:onboarding/v2"
	fileKey = "tpl:file:status-report/v2"
)

// backend makes fresh stores of one kind, as --db values.
type backend struct {
	name string
	db   func(t *testing.T) string
}

// backends returns SQLite, and PostgreSQL when IU_TEST_POSTGRES is set (a
// set but unreachable server fails the test).
func backends(t *testing.T) []backend {
	bs := []backend{{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "iu.db") }}}
	if dsn := os.Getenv(pgtest.EnvDSN); dsn != "" {
		bs = append(bs, backend{"postgres", func(t *testing.T) string { return pgtest.Schema(t, dsn, "iu_serve_") }})
	}
	return bs
}

// forBackends runs fn once per backend, in parallel subtests.
func forBackends(t *testing.T, fn func(t *testing.T, db string)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.db(t))
		})
	}
}

// tserver is a running iu serve.
type tserver struct {
	t     *testing.T
	m     *serveMain
	url   string
	db    string
	admin string // the bootstrap admin token
	hc    *nethttp.Client
}

// startServer boots iu serve on port 0 over db, with extra serve flags.
func startServer(t *testing.T, db string, flags ...string) *tserver {
	t.Helper()
	m := newServeMain(io.Discard)
	if testing.Verbose() {
		m.Stderr = os.Stderr
	}
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	args := append([]string{"--db", db, "--addr", "127.0.0.1:0", "--log-level", "warn", "--admin-token-file", tokenFile}, flags...)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatalf("iu serve: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if m.TokenFile != tokenFile {
		t.Fatalf("a new store's server wrote its admin token to %q, want %q", m.TokenFile, tokenFile)
	}
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	b, _ := os.ReadFile(tokenFile)
	return &tserver{t: t, m: m, url: m.Server.URL(), db: db, admin: strings.TrimSpace(string(b)),
		hc: newTestClient()}
}

func newTestClient() *nethttp.Client {
	return &nethttp.Client{Timeout: 60 * time.Second, Transport: &nethttp.Transport{MaxIdleConnsPerHost: 64}}
}

// token creates a token of scope directly in the store.
func (s *tserver) token(scope iu.Scope) string {
	s.t.Helper()
	nt, err := s.m.Engine.CreateToken(context.Background(), "", scope, "tester")
	if err != nil {
		s.t.Fatal(err)
	}
	return nt.Secret
}

// setup publishes the example templates and opens the gates.
func (s *tserver) setup() {
	s.t.Helper()
	ctx := context.Background()
	var tps []*iu.Template
	for _, name := range []string{"templates/onboarding.yaml", "templates/status-report.yaml"} {
		data, err := examples.FS.ReadFile(name)
		if err != nil {
			s.t.Fatal(err)
		}
		tp, err := iu.ParseTemplateFile(name, data)
		if err != nil {
			s.t.Fatal(err)
		}
		tps = append(tps, tp)
	}
	if _, err := s.m.Engine.PublishTemplates(ctx, tps, "tester"); err != nil {
		s.t.Fatal(err)
	}
	s.gates(true, true)
}

func (s *tserver) gates(composer, auto bool) {
	s.t.Helper()
	if _, err := s.m.Engine.SetGates(context.Background(), iu.GateChange{iu.GateComposer: composer, iu.GateAutoInstantiate: auto}, "tester"); err != nil {
		s.t.Fatal(err)
	}
}

// response is an answer, read whole.
type response struct {
	status int
	header nethttp.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// errorCode returns the code of an {"error"} answer.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var doc struct {
		Error struct{ Code, Message string }
	}
	r.json(t, &doc)
	if doc.Error.Message == "" {
		t.Fatalf("answer %d has no error message: %s", r.status, r.body)
	}
	return doc.Error.Code
}

// do sends a request; header values override the defaults.
func (s *tserver) do(method, path, token string, header map[string]string, body []byte) response {
	s.t.Helper()
	req, err := nethttp.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// binary posts one event in binary mode.
func (s *tserver) binary(token string, attrs map[string]string, data string) response {
	s.t.Helper()
	h := map[string]string{"Ce-Specversion": "1.0", "Ce-Source": "hr:test", "Ce-Type": "hr.employee.hired"}
	for k, v := range attrs {
		h["Ce-"+k] = v
	}
	var body []byte
	if data != "" {
		body = []byte(data)
	} else {
		h["Content-Type"] = ""
	}
	return s.do("POST", "/v1/events", token, h, body)
}

// structured posts one event, or a batch, as JSON.
func (s *tserver) structured(token, contentType string, v any) response {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do("POST", "/v1/events", token, map[string]string{"Content-Type": contentType}, b)
}

// storeTables are every table iu writes: what "nothing changed" compares.
var storeTables = []string{
	"iu_piece", "iu_piece_collection", "iu_collection_membership", "iu_collection_template_instance_lineage",
	"iu_auto_instantiate_event_log", "iu_gate", "iu_gate_audit", "iu_trigger", "iu_token",
}

// count runs a counting query on the server's store, outside the engine.
func (s *tserver) count(query string, args ...any) int64 {
	s.t.Helper()
	var n int64
	var err error
	switch st := s.m.Store.(type) {
	case *sqlite.Store:
		n, err = sqlite.CountRaw(context.Background(), st, query, args...)
	case *postgres.Store:
		n, err = postgres.CountRaw(context.Background(), st, query, args...)
	default:
		s.t.Fatalf("unknown store %T", st)
	}
	if err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// snapshot counts the rows of every table, and the gates that are on.
func (s *tserver) snapshot() string {
	s.t.Helper()
	var b strings.Builder
	for _, tb := range storeTables {
		fmt.Fprintf(&b, "%s=%d ", tb, s.count("SELECT count(*) FROM "+tb))
	}
	fmt.Fprintf(&b, "gates_on=%d revoked=%d", s.count("SELECT count(*) FROM iu_gate WHERE enabled"), s.count("SELECT count(*) FROM iu_token WHERE revoked_at IS NOT NULL"))
	return b.String()
}

// eventAnswer is the answer to one event.
type eventAnswer struct {
	ID      string `json:"id"`
	Status  int    `json:"status"`
	Results []struct {
		iu.Result
		Error *struct{ Code, Message string } `json:"error"`
	} `json:"results"`
	Error *struct{ Code, Message string } `json:"error"`
}

func TestServeEventModes(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		tok := s.token(iu.ScopeIngest)

		// Binary mode.
		r := s.binary(tok, map[string]string{"Id": "b-1", "Iutemplate": wfKey, "Subject": "Ada"}, `{"team": "core"}`)
		if r.status != 201 {
			t.Fatalf("binary: %d %s", r.status, r.body)
		}
		var a eventAnswer
		r.json(t, &a)
		if a.ID != "b-1" || a.Status != 201 || len(a.Results) != 1 || a.Results[0].Status != iu.StatusOK || a.Results[0].Replayed ||
			!strings.HasPrefix(a.Results[0].InstanceKey, "tpl-inst:auto:") || a.Results[0].TemplateKey != wfKey {
			t.Fatalf("binary answer %s", r.body)
		}
		// The same event again (data re-spaced): 200, replayed, the same instance.
		r2 := s.binary(tok, map[string]string{"Id": "b-1", "Iutemplate": wfKey, "Subject": "Ada"}, `{ "team":"core" }`)
		var a2 eventAnswer
		r2.json(t, &a2)
		if r2.status != 200 || !a2.Results[0].Replayed || a2.Results[0].InstanceKey != a.Results[0].InstanceKey {
			t.Fatalf("redelivery: %d %s", r2.status, r2.body)
		}

		// Structured mode, with the actor and prefix extensions.
		ev := map[string]any{"specversion": "1.0", "id": "s-1", "source": "hr:test", "type": "hr.employee.hired", "subject": "Grace",
			"time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json", "data": map[string]any{"team": "compilers"},
			"iutemplate": fileKey, "iuactor": "hr-sync", "iuprefix": "hr"}
		r = s.structured(tok, "application/cloudevents+json", ev)
		r.json(t, &a)
		if r.status != 201 || a.Results[0].TemplateKey != fileKey || !strings.HasPrefix(a.Results[0].InstanceKey, "tpl-inst:auto:hr-") {
			t.Fatalf("structured: %d %s", r.status, r.body)
		}
		if n := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'hr-sync' AND event_id = 's-1'"); n != 1 {
			t.Fatalf("structured event's lineage rows: %d", n)
		}
		// Without iuactor the actor is the posting token's name.
		if n := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor LIKE 'ingest-%' AND event_id = 'b-1'"); n != 1 {
			t.Fatalf("binary event's actor is not the token's name")
		}

		// Batch mode: a new one, a repeat, and an invalid one that fails alone.
		batch := []map[string]any{
			{"specversion": "1.0", "id": "m-1", "source": "hr:test", "type": "hr.employee.hired", "iutemplate": wfKey},
			{"specversion": "1.0", "id": "b-1", "source": "hr:test", "type": "hr.employee.hired", "subject": "Ada", "iutemplate": wfKey, "data": map[string]any{"team": "core"}},
			{"specversion": "1.0", "id": "m-2", "source": "hr:test", "type": "hr.employee.hired", "iutemplate": "not-a-key"},
		}
		r = s.structured(tok, "application/cloudevents-batch+json", batch)
		var as []eventAnswer
		r.json(t, &as)
		if len(as) != 3 || as[0].Status != 201 || as[1].Status != 200 || !as[1].Results[0].Replayed || as[2].Status != 400 || as[2].Error == nil {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		if r.status != 400 {
			t.Fatalf("batch with an invalid event: status %d, want 400 (its worst)", r.status)
		}
		if n := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); n != 3 {
			t.Fatalf("%d log rows, want 3 (b-1, s-1, m-1)", n)
		}
		// A batch of repeats answers 200, and a batch of new events 201.
		r = s.structured(tok, "application/cloudevents-batch+json", batch[:2])
		if r.status != 200 {
			t.Fatalf("a batch of repeats: %d, want 200: %s", r.status, r.body)
		}
		fresh := []map[string]any{
			{"specversion": "1.0", "id": "m-3", "source": "hr:test", "type": "hr.employee.hired", "iutemplate": wfKey},
			{"specversion": "1.0", "id": "m-4", "source": "hr:test", "type": "hr.employee.hired", "iutemplate": fileKey},
		}
		r = s.structured(tok, "application/cloudevents-batch+json", fresh)
		if r.status != 201 {
			t.Fatalf("a batch of new events: %d, want 201: %s", r.status, r.body)
		}
		if n := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); n != 5 {
			t.Fatalf("%d log rows, want 5", n)
		}
	})
}

func TestServeTriggersFanOut(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		admin, ingest := s.admin, s.token(iu.ScopeIngest)
		for _, tr := range []string{
			`{"name": "hr-all", "type": "com.acme.hr.*", "template": "` + wfKey + `"}`,
			`{"name": "hired-report", "type": "com.acme.hr.hired", "source": "hr:workday", "template": "` + fileKey + `", "actor": "reports", "instance_prefix": "rep"}`,
		} {
			if r := s.do("POST", "/v1/triggers", admin, nil, []byte(tr)); r.status != 201 {
				t.Fatalf("add trigger: %d %s", r.status, r.body)
			}
		}
		if r := s.do("POST", "/v1/triggers", admin, nil, []byte(`{"type": "x", "template": "tpl:wf:missing/v1"}`)); r.status != 404 {
			t.Fatalf("a trigger for an unknown template: %d %s", r.status, r.body)
		}
		if r := s.do("POST", "/v1/triggers", admin, nil, []byte(`{"name": "hr-all", "type": "y", "template": "`+wfKey+`"}`)); r.status != 409 {
			t.Fatalf("a second trigger named hr-all: %d %s", r.status, r.body)
		}
		// Fan-out: one event, two templates, one transaction.
		r := s.binary(ingest, map[string]string{"Id": "h-1", "Type": "com.acme.hr.hired", "Source": "hr:workday"}, `{"team":"x"}`)
		var a eventAnswer
		r.json(t, &a)
		if r.status != 201 || len(a.Results) != 2 || a.Results[0].TemplateKey != fileKey || a.Results[1].TemplateKey != wfKey ||
			a.Results[0].IdempotencyKey == a.Results[1].IdempotencyKey {
			t.Fatalf("fan-out: %d %s", r.status, r.body)
		}
		if n := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE event_id = 'h-1' AND actor = 'reports'"); n != 1 {
			t.Fatalf("the trigger's actor was not used")
		}
		// Another source: only the prefix trigger.
		r = s.binary(ingest, map[string]string{"Id": "h-2", "Type": "com.acme.hr.left", "Source": "hr:other"}, "")
		r.json(t, &a)
		if r.status != 201 || len(a.Results) != 1 || a.Results[0].TemplateKey != wfKey {
			t.Fatalf("prefix trigger: %d %s", r.status, r.body)
		}
		// Nothing matches: 422, counted, nothing written.
		before := s.snapshot()
		r = s.binary(ingest, map[string]string{"Id": "x-1", "Type": "com.acme.sales.won"}, "")
		if r.status != 422 || r.errorCode(t) != "unmatched" {
			t.Fatalf("unmatched: %d %s", r.status, r.body)
		}
		if after := s.snapshot(); after != before {
			t.Fatalf("an unmatched event wrote something:\n%s\n%s", before, after)
		}
		m := s.do("GET", "/metrics", admin, nil, nil)
		if !bytes.Contains(m.body, []byte(`iu_events_total{outcome="unmatched",type="com.acme.sales.won"} 1`)) {
			t.Fatalf("the unmatched event is not counted:\n%s", grepLines(m.body, "iu_events_total"))
		}
		for _, want := range []string{`iu_instantiations_total{status="created",template="` + fileKey + `"} 1`, "iu_batch_size_events_count", "iu_gate_enabled{gate=\"iu_core.composer_enabled\"} 1",
			"iu_store_pool_connections{state=\"max\"}", "iu_http_request_duration_seconds_bucket"} {
			if !bytes.Contains(m.body, []byte(want)) {
				t.Errorf("metrics lack %s", want)
			}
		}
		// Removing a trigger takes effect at once on this server.
		if r := s.do("DELETE", "/v1/triggers/hr-all", admin, nil, nil); r.status != 200 {
			t.Fatalf("remove: %d %s", r.status, r.body)
		}
		if r := s.binary(ingest, map[string]string{"Id": "h-3", "Type": "com.acme.hr.left", "Source": "hr:other"}, ""); r.status != 422 {
			t.Fatalf("after removing the trigger: %d %s", r.status, r.body)
		}
		if r := s.do("DELETE", "/v1/triggers/hr-all", admin, nil, nil); r.status != 404 {
			t.Fatalf("removing it twice: %d", r.status)
		}
	})
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Every status of the events route, and that refusals write nothing.
func TestServeStatusCodes(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db, "--max-event-bytes", "4096")
		s.setup()
		tok := s.token(iu.ScopeIngest)
		read := s.token(iu.ScopeRead)
		ev := func(id string) map[string]string { return map[string]string{"Id": id, "Iutemplate": wfKey} }

		check := func(name string, r response, status int, code string) {
			t.Helper()
			if r.status != status {
				t.Fatalf("%s: status %d, want %d: %s", name, r.status, status, r.body)
			}
			noInternals(t, name, r)
			if code != "" {
				var doc struct {
					Error *struct{ Code string }
				}
				json.Unmarshal(r.body, &doc)
				if doc.Error == nil || doc.Error.Code != code {
					var a eventAnswer
					json.Unmarshal(r.body, &a)
					if len(a.Results) == 0 || a.Results[0].Error == nil || a.Results[0].Error.Code != code {
						t.Fatalf("%s: want error code %s: %s", name, code, r.body)
					}
				}
			}
		}
		check("201", s.binary(tok, ev("c-1"), `{"a":1}`), 201, "")
		check("200", s.binary(tok, ev("c-1"), `{"a":1}`), 200, "")
		check("409", s.binary(tok, ev("c-1"), `{"a":2}`), 409, "conflict")
		check("400 no id", s.binary(tok, map[string]string{"Iutemplate": wfKey}, ""), 400, "invalid")
		check("400 bad data", s.binary(tok, ev("c-2"), `{"a":`), 400, "invalid")
		check("400 bad template key", s.binary(tok, map[string]string{"Id": "c-3", "Iutemplate": "tpl:nope"}, ""), 400, "invalid")
		check("400 bad JSON", s.do("POST", "/v1/events", tok, map[string]string{"Content-Type": "application/cloudevents+json"}, []byte(`{"id":`)), 400, "invalid")
		check("404", s.binary(tok, map[string]string{"Id": "c-4", "Iutemplate": "tpl:wf:missing/v9"}, ""), 404, "not_found")
		check("413", s.binary(tok, ev("c-5"), `{"a":"`+strings.Repeat("x", 5000)+`"}`), 413, "too_large")
		check("415 text", s.do("POST", "/v1/events", tok, map[string]string{"Content-Type": "text/plain"}, []byte("hi")), 415, "unsupported_media_type")
		check("binary without data", s.binary(tok, map[string]string{"Id": "c-6", "Iutemplate": wfKey, "Content-Type": ""}, ""), 201, "")
		check("415 binary xml", s.do("POST", "/v1/events", tok, map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "c-7", "Ce-Source": "s", "Ce-Type": "t", "Content-Type": "application/xml"}, []byte("<a/>")), 415, "unsupported_media_type")
		check("401", s.binary("", ev("c-8"), ""), 401, "unauthorized")
		check("401 wrong token", s.binary("iu_not-a-real-token", ev("c-8"), ""), 401, "unauthorized")
		check("403", s.binary(read, ev("c-8"), ""), 403, "forbidden")
		check("422", s.binary(tok, map[string]string{"Id": "c-9"}, ""), 422, "unmatched")
		// Of all these, only the event without data was written.
		if n := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE event_id <> 'c-1' AND event_id <> 'c-6'"); n != 0 {
			t.Fatalf("refused events were written: %d log rows", n)
		}

		// 503: a gate is closed; nothing written; Retry-After and the gate's name.
		s.gates(true, false)
		before := s.snapshot()
		r := s.binary(tok, ev("g-1"), "")
		check("503", r, 503, "")
		if r.header.Get("Retry-After") == "" || r.header.Get("Iu-Gate") != iu.GateAutoInstantiate || !bytes.Contains(r.body, []byte(iu.GateAutoInstantiate)) {
			t.Fatalf("503 without Retry-After or the gate: %v %s", r.header, r.body)
		}
		if after := s.snapshot(); after != before {
			t.Fatalf("a gated event wrote something:\n%s\n%s", before, after)
		}
		// The producer retries once the gate opens: nothing was lost.
		s.gates(true, true)
		check("retry after 503", s.binary(tok, ev("g-1"), ""), 201, "")
		// Shadow templates answer 200.
		if _, err := s.m.Engine.Emit(context.Background(), iu.EmitRequest{TemplateKey: fileKey, Actor: "a", Event: iu.Event{ID: "x", Source: "s", Type: "t"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.m.Engine.SetEmitMode(context.Background(), fileKey, iu.EmitShadow); err != nil {
			t.Fatal(err)
		}
		r = s.binary(tok, map[string]string{"Id": "sh-1", "Iutemplate": fileKey}, "")
		var a eventAnswer
		r.json(t, &a)
		if r.status != 200 || a.Results[0].Status != iu.StatusShadow {
			t.Fatalf("shadow: %d %s", r.status, r.body)
		}
		noInternals(t, "shadow", r)
	})
}

// noInternals fails if an answer carries SQL or a stack.
func noInternals(t *testing.T, name string, r response) {
	t.Helper()
	for _, bad := range []string{"SELECT", "INSERT", "goroutine", ".go:"} {
		if bytes.Contains(r.body, []byte(bad)) {
			t.Fatalf("%s: answer leaks %q: %s", name, bad, r.body)
		}
	}
}

// Label values that producers choose are bounded: a template key that is
// not published counts as template="unknown", however many a producer
// sends; a published one is named.
func TestServeMetricLabelsAreBounded(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "iu.db"))
	s.setup()
	ingest := s.token("ingest")
	for i := range 40 {
		r := s.binary(ingest, map[string]string{"Id": fmt.Sprintf("u-%d", i), "Iutemplate": fmt.Sprintf("tpl:wf:nope-%d/v1", i)}, `{}`)
		if r.status != 404 {
			t.Fatalf("unknown template %d: %d %s", i, r.status, r.body)
		}
		r = s.do("POST", "/v1/emit", ingest, nil, []byte(fmt.Sprintf(`{"template": "tpl:wf:emit-%d/v1", "actor": "a", "event": {"id": "x", "source": "s", "type": "t"}}`, i)))
		if r.status != 404 {
			t.Fatalf("unknown template %d over /v1/emit: %d %s", i, r.status, r.body)
		}
	}
	if r := s.binary(ingest, map[string]string{"Id": "k-1", "Iutemplate": wfKey}, `{}`); r.status != 201 {
		t.Fatalf("a known template: %d %s", r.status, r.body)
	}
	m := s.do("GET", "/metrics", s.admin, nil, nil)
	var series []string
	for _, line := range strings.Split(string(m.body), "\n") {
		if strings.HasPrefix(line, "iu_instantiations_total{") {
			series = append(series, line)
		}
	}
	want := []string{
		`iu_instantiations_total{status="created",template="` + wfKey + `"} 1`,
		`iu_instantiations_total{status="not_found",template="unknown"} 80`,
	}
	if strings.Join(series, "\n") != strings.Join(want, "\n") {
		t.Fatalf("instantiation series:\n%s\nwant:\n%s", strings.Join(series, "\n"), strings.Join(want, "\n"))
	}
}

// iu serve checks that it can listen before it writes anything: on a busy
// port it fails, and the store, its token file and the directory are as
// they were (here: empty).
func TestServeBusyPortWritesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--db", filepath.Join(dir, "iu.db"), "serve", "--addr", ln.Addr().String()}, strings.NewReader(""), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "address already in use") {
		t.Fatalf("serve on a busy port: exit %d, %s", code, errb.String())
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("a failed start left %d files: %v %v", len(ents), ents, err)
	}
}

// POST /v1/bulk counts a body's lines as the client wrote them: the plan is
// line 1. Answers keep < > & as they are.
func TestServeBulkLinesAndPlainJSON(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "iu.db"))
	s.setup()
	body := `{"actor": "lines", "gates": {"composer_enabled": true, "auto_instantiate_enabled": true}}
{"template": "tpl:wf:onboarding/v2", "id": "l-1", "type": "t"}
{"template": "tpl:wf:onboarding/v2", "id": "l-2", "tipe": "t"}
`
	r := s.do("POST", "/v1/bulk", s.admin, map[string]string{"Content-Type": "application/x-ndjson"}, []byte(body))
	if r.status != 400 || !strings.Contains(string(r.body), "body:3: ") || !strings.Contains(string(r.body), `unknown field \"tipe\"`) {
		t.Fatalf("a bad third line: %d %s, want 400 naming body:3", r.status, r.body)
	}
	tpl := `{"templates": [{"key": "tpl:wf:angle/v1", "title": "A <b> & c", "pieces": [{"id": "a", "kind": "step", "body": "<x> & <y>"}]}]}`
	if r := s.do("POST", "/v1/templates", s.admin, nil, []byte(tpl)); r.status != 201 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	r = s.do("GET", "/v1/templates/"+url.PathEscape("tpl:wf:angle/v1"), s.admin, nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"title":"A <b> & c"`) || !strings.Contains(string(r.body), `"body":"<x> & <y>"`) {
		t.Fatalf("a template with < > &: %d %s", r.status, r.body)
	}
}

// Through the server a change is recorded under the token that made it;
// the actor the client names (here "mallory") is kept beside it as
// claimed, never instead of it, and without --actor nothing is claimed.
func TestServeAuditsTheToken(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		nt, err := s.m.Engine.CreateToken(context.Background(), "ops-lead", iu.ScopeAdmin, "tester")
		if err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			var out, errb bytes.Buffer
			if code := Main(context.Background(), append([]string{"--server", s.url, "--token", nt.Secret}, args...), strings.NewReader(""), &out, &errb); code != 0 {
				t.Fatalf("iu %v: exit %d: %s", args, code, errb.String())
			}
			return out.String()
		}
		run("gate", "set", "composer_enabled=false", "--actor", "mallory")
		run("gate", "set", "auto_instantiate_enabled=false")
		run("template", "mode", wfKey, "shadow")
		run("rollback", "--actor", "nobody", "--apply")
		var trail struct {
			Audit []iu.GateAuditEntry `json:"audit"`
		}
		if err := json.Unmarshal([]byte(run("--json", "gate", "list", "--audit", "2")), &trail); err != nil || len(trail.Audit) != 2 {
			t.Fatalf("audit: %+v %v", trail, err)
		}
		if a := trail.Audit[1]; a.ChangedBy != "ops-lead" || a.Claimed != "mallory" {
			t.Fatalf("gate set --actor mallory through the server: %+v, want by ops-lead, claimed mallory", a)
		}
		if a := trail.Audit[0]; a.ChangedBy != "ops-lead" || a.Claimed != "" {
			t.Fatalf("gate set without --actor through the server: %+v, want by ops-lead and nothing claimed", a)
		}
		var audit []iu.AuditEntry
		if err := json.Unmarshal([]byte(run("--json", "audit", "--limit", "2")), &audit); err != nil || len(audit) != 2 {
			t.Fatalf("audit: %+v %v", audit, err)
		}
		if audit[0].Action != iu.AuditRollback || audit[0].By != "ops-lead" || audit[1].Action != iu.AuditEmitMode || audit[1].By != "ops-lead" {
			t.Fatalf("the audit trail: %+v, want the rollback and the mode change by ops-lead", audit)
		}
	})
}

// Every list route pages: an answer holds at most iu.MaxPageSize rows and
// a larger limit is refused, limit=0 is the default page, the next cursors
// walk every row once, and iu instances --limit 0 streams them all, page by
// page, through the server.
func TestServeListsPage(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		const n = 2*iu.MaxPageSize + 345
		events := func(yield func(iu.BulkEvent, error) bool) {
			for i := range n {
				if !yield(iu.BulkEvent{Template: wfKey, Event: iu.Event{ID: fmt.Sprint("pg-", i), Source: "test", Type: "hr.hired"}}, nil) {
					return
				}
			}
		}
		if _, err := s.m.Engine.Bulk(context.Background(), &iu.BulkPlan{Actor: "pager"}, events, nil); err != nil {
			t.Fatal(err)
		}
		read := s.token(iu.ScopeRead)
		type page struct {
			Items []iu.InstanceRow `json:"items"`
			Next  string           `json:"next"`
		}
		if r := s.do("GET", fmt.Sprintf("/v1/instances?limit=%d", iu.MaxPageSize+1), read, nil, nil); r.status != 400 || !strings.Contains(string(r.body), "limit") {
			t.Fatalf("limit over the maximum: %d %s, want 400 naming the limit", r.status, r.body)
		}
		var p page
		s.do("GET", "/v1/instances?limit=0", read, nil, nil).json(t, &p)
		if len(p.Items) != iu.DefaultPageSize || p.Next == "" {
			t.Fatalf("limit=0: %d items, next %q; want the default page of %d and a cursor", len(p.Items), p.Next, iu.DefaultPageSize)
		}
		seen := map[string]bool{}
		pages := 0
		for after := ""; ; pages++ {
			var p page
			r := s.do("GET", fmt.Sprintf("/v1/instances?actor=pager&limit=%d&after=%s", iu.MaxPageSize, url.QueryEscape(after)), read, nil, nil)
			if r.status != 200 {
				t.Fatalf("page %d: %d %s", pages, r.status, r.body)
			}
			r.json(t, &p)
			for _, it := range p.Items {
				if seen[it.InstanceKey] {
					t.Fatalf("instance %s on two pages", it.InstanceKey)
				}
				seen[it.InstanceKey] = true
			}
			if after = p.Next; after == "" {
				break
			}
		}
		if len(seen) != n || pages != 2 {
			t.Fatalf("the cursors walked %d instances in %d pages, want %d in 3", len(seen), pages+1, n)
		}
		var out, errb bytes.Buffer
		if code := Main(context.Background(), []string{"--server", s.url, "--token", read, "--json", "instances", "--actor", "pager", "--limit", "0"}, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("iu instances --limit 0: exit %d: %s", code, errb.String())
		}
		var rows []iu.InstanceRow
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatalf("iu --json instances --limit 0: %v\n%.300s", err, out.String())
		}
		streamed := map[string]bool{}
		for _, r := range rows {
			streamed[r.InstanceKey] = true
		}
		if len(rows) != n || len(streamed) != n {
			t.Fatalf("iu instances --limit 0 through the server printed %d rows (%d distinct), want %d", len(rows), len(streamed), n)
		}
	})
}
