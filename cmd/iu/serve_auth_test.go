package main

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/iu-engine/iu"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// probe is a request that a route accepts, more or less: its answer with
// the right scope may be an error of the domain (400, 404, 409), never 401
// or 403.
func probe(method, pattern string) (path string, header map[string]string, body []byte) {
	path = strings.NewReplacer("{key}", url.PathEscape(wfKey), "{name}", "nobody").Replace(pattern)
	switch pattern {
	case "/v1/events":
		return path, map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "probe-1", "Ce-Source": "probe", "Ce-Type": "probe", "Ce-Iutemplate": wfKey}, nil
	case "/v1/bulk":
		return path, map[string]string{"Content-Type": "application/x-ndjson"}, []byte(`{"actor": "probe"}` + "\n")
	}
	if method == "GET" || method == "DELETE" {
		return path, nil, nil
	}
	bodies := map[string]string{
		"/v1/emit":                 `{"template": "` + wfKey + `", "actor": "probe", "event": {"id": "probe-2", "source": "probe", "type": "probe"}}`,
		"/v1/templates":            `{"templates": []}`,
		"/v1/templates/{key}/mode": `{"emit_mode": "live"}`,
		"/v1/gates":                `{"iu_core.composer_enabled": true}`,
		"/v1/compose":              `{"template": "` + wfKey + `", "key": "tpl-inst:manual:probe", "actor": "probe"}`,
		"/v1/rollback":             `{"actor": "probe"}`,
		"/v1/triggers":             `{"type": "probe.*", "template": "` + wfKey + `"}`,
		"/v1/tokens":               `{"scope": "read", "name": "probe"}`,
	}
	return path, nil, []byte(bodies[pattern])
}

// The auth matrix: every route with no token, a token of the wrong scope,
// a revoked token and one of the right scope. Refusals change nothing and
// are logged with the route and the token's name.
func TestServeAuthMatrix(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		tokens := map[iu.Scope]string{iu.ScopeIngest: s.token(iu.ScopeIngest), iu.ScopeRead: s.token(iu.ScopeRead), iu.ScopeAdmin: s.admin}
		revoked, err := s.m.Engine.CreateToken(context.Background(), "gone", iu.ScopeAdmin, "tester")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.m.Engine.RevokeToken(context.Background(), "gone"); err != nil {
			t.Fatal(err)
		}
		wrong := map[iu.Scope]iu.Scope{iu.ScopeIngest: iu.ScopeRead, iu.ScopeRead: iu.ScopeIngest, iu.ScopeAdmin: iu.ScopeRead}
		routes := s.m.Server.Routes()
		if len(routes) < 25 {
			t.Fatalf("only %d routes", len(routes))
		}
		before := s.snapshot()
		for _, rt := range routes {
			path, h, body := probe(rt.Method, rt.Pattern)
			name := rt.Method + " " + rt.Pattern
			if rt.Scope == "" {
				if r := s.do(rt.Method, path, "", h, body); r.status != 200 {
					t.Errorf("%s without a token: %d, want 200 (open route)", name, r.status)
				}
				continue
			}
			if r := s.do(rt.Method, path, "", h, body); r.status != 401 || r.header.Get("WWW-Authenticate") == "" || r.errorCode(t) != "unauthorized" {
				t.Errorf("%s without a token: %d %s", name, r.status, r.body)
			}
			if r := s.do(rt.Method, path, revoked.Secret, h, body); r.status != 401 {
				t.Errorf("%s with a revoked token: %d %s", name, r.status, r.body)
			}
			if r := s.do(rt.Method, path, "iu_forged", h, body); r.status != 401 {
				t.Errorf("%s with a forged token: %d %s", name, r.status, r.body)
			}
			if r := s.do(rt.Method, path, tokens[wrong[rt.Scope]], h, body); r.status != 403 || r.errorCode(t) != "forbidden" {
				t.Errorf("%s with a %s token: %d %s", name, wrong[rt.Scope], r.status, r.body)
			}
			if rt.Scope == iu.ScopeAdmin {
				if r := s.do(rt.Method, path, tokens[iu.ScopeIngest], h, body); r.status != 403 {
					t.Errorf("%s with an ingest token: %d %s", name, r.status, r.body)
				}
			}
		}
		if after := s.snapshot(); after != before {
			t.Fatalf("refused requests changed the store:\nbefore %s\nafter  %s", before, after)
		}
		// With the right scope (and with admin, which may do everything) no
		// route refuses.
		for _, rt := range routes {
			if rt.Scope == "" {
				continue
			}
			path, h, body := probe(rt.Method, rt.Pattern)
			for _, sc := range []iu.Scope{rt.Scope, iu.ScopeAdmin} {
				if r := s.do(rt.Method, path, tokens[sc], h, body); r.status == 401 || r.status == 403 {
					t.Errorf("%s %s with a %s token: %d %s", rt.Method, rt.Pattern, sc, r.status, r.body)
				}
			}
		}
	})
}

// Refusals are logged with the route and the token's name.
func TestServeRefusalsAreLogged(t *testing.T) {
	db := backends(t)[0].db(t)
	logs := &syncBuffer{}
	m := newServeMain(logs)
	if err := m.ParseFlags([]string{"--db", db, "--addr", "127.0.0.1:0", "--admin-token-file", t.TempDir() + "/t"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s := &tserver{t: t, m: m, url: m.Server.URL(), hc: newTestClient()}
	reader, err := m.Engine.CreateToken(context.Background(), "dashboard", iu.ScopeRead, "tester")
	if err != nil {
		t.Fatal(err)
	}
	s.do("PUT", "/v1/gates", reader.Secret, nil, []byte(`{"composer_enabled": true}`))
	s.do("GET", "/v1/stats", "", nil, nil)
	out := logs.String()
	for _, want := range []string{`msg=refused request_id=\S+ route="PUT /v1/gates" token=dashboard status=403`, `msg=refused request_id=\S+ route="GET /v1/stats" token=\(none\) status=401`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, reader.Secret) {
		t.Fatalf("the log holds a token's secret")
	}
	if g, _ := m.Engine.Gates(context.Background()); g.ComposerEnabled {
		t.Fatalf("a refused request set a gate")
	}
}

func TestServeBodyLimits(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db, "--max-event-bytes", "2048", "--max-bulk-bytes", "4096", "--max-body-bytes", "8192")
		s.setup()
		before := s.snapshot()
		big := strings.Repeat("x", 10000)
		cases := []struct {
			name, method, path string
			header             map[string]string
			body               string
		}{
			{"event", "POST", "/v1/events", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "big", "Ce-Source": "s", "Ce-Type": "t", "Ce-Iutemplate": wfKey}, `{"a":"` + big + `"}`},
			{"batch", "POST", "/v1/events", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, `[{"specversion":"1.0","id":"x","source":"s","type":"t","data":"` + big + `"}]`},
			{"gates", "PUT", "/v1/gates", nil, `{"composer_enabled": false, "x": "` + strings.Repeat(big, 7) + `"}`},
			{"emit", "POST", "/v1/emit", nil, `{"template": "` + wfKey + `", "actor": "a", "event": {"id": "e", "source": "s", "type": "t", "data": {"a": "` + big + `"}}}`},
			{"publish", "POST", "/v1/templates", nil, `{"templates": [{"key": "tpl:wf:big/v1", "pieces": [{"id": "a", "kind": "step", "body": "` + big + `"}]}]}`},
			{"bulk", "POST", "/v1/bulk", map[string]string{"Content-Type": "application/x-ndjson"}, `{"actor": "big", "gates": {"composer_enabled": true, "auto_instantiate_enabled": true}}` + "\n" +
				strings.Repeat(`{"template": "`+wfKey+`", "id": "b", "type": "t"}`+"\n", 200)},
		}
		for _, c := range cases {
			r := s.do(c.method, c.path, s.admin, c.header, []byte(c.body))
			if r.status != 413 || r.errorCode(t) != "too_large" {
				t.Errorf("%s: %d %s, want 413", c.name, r.status, r.body)
			}
		}
		if after := s.snapshot(); after != before {
			t.Fatalf("too large bodies wrote something:\n%s\n%s", before, after)
		}
		// Strict JSON: unknown fields and trailing data are refused.
		for _, body := range []string{`{"composer_enabled": true} {}`, `{"composer": true}`, `[]`, ``} {
			if r := s.do("PUT", "/v1/gates", s.admin, nil, []byte(body)); r.status != 400 {
				t.Errorf("PUT /v1/gates %q: %d %s, want 400", body, r.status, r.body)
			}
		}
		if r := s.do("POST", "/v1/rollback", s.admin, nil, []byte(`{"actor": "a", "aply": true}`)); r.status != 400 || !strings.Contains(string(r.body), "aply") {
			t.Errorf("a misspelt field: %d %s", r.status, r.body)
		}
		if r := s.do("POST", "/v1/rollback", s.admin, map[string]string{"Content-Type": "text/plain"}, []byte(`{"actor": "a"}`)); r.status != 415 {
			t.Errorf("a text body: %d %s", r.status, r.body)
		}
	})
}
