package http_test

import (
	"context"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
	"github.com/iu-engine/iu/sqlite"
)

// Every route refuses a query parameter that openapi.json does not
// document for it, naming the parameter and those the route takes, before
// it does anything; the documented ones pass.
func TestUnknownQueryParametersAreRefused(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "iu.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := iu.NewEngine(st)
	s := iuhttp.NewServer(e, iuhttp.Config{}, nil)
	defer s.Close(ctx)
	tok, err := e.CreateToken(ctx, "ops", iu.ScopeAdmin, "tester")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, target, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	refusing := 0
	for _, r := range s.Routes() {
		path := strings.NewReplacer("{key}", "tpl-inst:auto:x", "{name}", "x").Replace(r.Pattern)
		code, body := call(r.Method, path+"?bogus=1", "{}")
		refused := code == nethttp.StatusBadRequest && strings.Contains(body, `unknown query parameter \"bogus\"`)
		if refused {
			refusing++
		}
		if takes := iuhttp.QueryParams(r.Method, r.Pattern); refused != (len(takes) > 0) {
			t.Errorf("%s %s?bogus=1: %d %s; the route takes %v: want a 400 naming bogus exactly when it takes some", r.Method, r.Pattern, code, body, takes)
		}
	}
	if refusing < 10 {
		t.Errorf("%d routes refuse an unknown parameter, want every one that takes parameters", refusing)
	}
	// A route that takes none ignores a query string (a probe's cache buster).
	if code, body := call("GET", "/healthz?ts=123", ""); code != nethttp.StatusOK {
		t.Errorf("GET /healthz?ts=123: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/instances?limit=1&limit=2", ""); code != nethttp.StatusBadRequest || !strings.Contains(body, "given 2 times") {
		t.Errorf("a parameter given twice: %d %s", code, body)
	}
	// A malformed pair is refused, not dropped with its filter.
	for _, bad := range []string{"/v1/instances?actor=%zz", "/v1/instances?actor=nobody;x=1", "/v1/verify?actor=nobody;x"} {
		if code, body := call("GET", bad, ""); code != nethttp.StatusBadRequest || !strings.Contains(body, "malformed query string") {
			t.Errorf("GET %s: %d %s, want 400", bad, code, body)
		}
	}
	long := strings.Repeat("x", 5000)
	if code, body := call("GET", "/v1/instances?"+long+"=1", ""); code != nethttp.StatusBadRequest || strings.Contains(body, long[:100]) {
		t.Errorf("a long unknown name: %d, %d bytes answered, want 400 and the name clipped", code, len(body))
	}
	// A misspelt filter is refused, not read as no filter.
	code, body := call("GET", "/v1/instances?actr=alice", "")
	if code != nethttp.StatusBadRequest || !strings.Contains(body, "GET /v1/instances takes actor, after, event_id, limit, prefix, template") {
		t.Errorf("a misspelt filter: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/events?offset=100", ""); code != nethttp.StatusBadRequest || !strings.Contains(body, "page with a cursor") {
		t.Errorf("offset: %d %s", code, body)
	}
	// Refused before anything is done: the publish is not made.
	tpl := `{"templates": [{"key": "tpl:wf:q/v1", "title": "Q", "pieces": [{"id": "a", "kind": "step", "body": "A"}]}]}`
	if code, body := call("POST", "/v1/templates?actr=ops", tpl); code != nethttp.StatusBadRequest {
		t.Errorf("publish with a misspelt parameter: %d %s", code, body)
	}
	if _, err := e.GetTemplate(ctx, "tpl:wf:q/v1"); err == nil {
		t.Errorf("a refused publish published")
	}
	for _, ok := range []string{"/v1/instances?actor=alice&template=tpl:wf:q/v1&prefix=a&event_id=e&limit=5", "/v1/events?status=ok&actor=a&limit=1", "/v1/templates?limit=2", "/v1/verify?actor=a"} {
		if code, body := call("GET", ok, ""); code != nethttp.StatusOK {
			t.Errorf("GET %s: %d %s", ok, code, body)
		}
	}
	if code, body := call("POST", "/v1/templates?actor=lead", tpl); code != nethttp.StatusCreated {
		t.Errorf("publish with a claimed actor: %d %s", code, body)
	}
}
