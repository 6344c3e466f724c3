package console

// Server-side tests of every page: status, scope and CSRF, without a
// browser, over a real SQLite store. The browser tests (cmd/iu) drive the
// same pages in Chromium.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/sqlite"
)

const (
	wfKey   = "tpl:wf:onboarding/v2"
	fileKey = "tpl:file:status-report/v2"
)

// clock is a settable clock for sessions' expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a console over a real SQLite store holding the two example
// templates, 5 instances of alice and 3 of bob, and a token of each scope.
type fixture struct {
	t                     *testing.T
	e                     *iu.Engine
	s                     *sqlite.Store
	c                     *Console
	clock                 *clock
	srv                   *httptest.Server
	admin, reader, ingest string
	instances             []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "iu.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := iu.NewEngine(s)
	tps, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PublishTemplates(ctx, tps, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "tester"); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, e: e, s: s, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	for i := range 8 {
		actor := "alice"
		if i >= 5 {
			actor = "bob"
		}
		r, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: wfKey, Actor: actor,
			Event: iu.Event{ID: fmt.Sprintf("ev-%d", i), Source: "test", Type: "hr.employee.hired", Subject: "Ada", Data: []byte(`{"team":"core"}`)}})
		if err != nil {
			t.Fatal(err)
		}
		f.instances = append(f.instances, r.InstanceKey)
	}
	for _, tk := range []struct {
		name  string
		scope iu.Scope
		into  *string
	}{{"ops-admin", iu.ScopeAdmin, &f.admin}, {"ops-reader", iu.ScopeRead, &f.reader}, {"producer", iu.ScopeIngest, &f.ingest}} {
		nt, err := e.CreateToken(ctx, tk.name, tk.scope, "tester")
		if err != nil {
			t.Fatal(err)
		}
		*tk.into = nt.Secret
	}
	var a iu.Activity
	a.Record(f.clock.now(), iu.OutcomeOK, 3*time.Millisecond)
	a.Record(f.clock.now(), iu.OutcomeGated, time.Millisecond)
	f.c = New(e, Options{Now: f.clock.now, TokenRecheck: time.Second, Activity: func() iu.ActivitySnapshot { return a.Snapshot(f.clock.now()) }})
	t.Cleanup(f.c.Close)
	f.srv = httptest.NewServer(f.c)
	t.Cleanup(f.srv.Close)
	return f
}

// client is a browser without a browser: a cookie jar, no redirects
// followed.
type client struct {
	f   *fixture
	hc  *http.Client
	jar *cookiejar.Jar
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{f: f, jar: jar, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(method, path string, form url.Values, header ...string) answer {
	c.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.f.srv.URL+path, body)
	if err != nil {
		c.f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (c *client) get(path string) answer { c.f.t.Helper(); return c.do("GET", path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the first form on a page.
func csrf(t *testing.T, page answer) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no CSRF field on the page:\n%s", page.body)
	}
	return m[1]
}

// signIn signs c in with secret and returns the answer to the POST.
func (c *client) signIn(secret string) answer {
	c.f.t.Helper()
	page := c.get("/signin")
	return c.do("POST", "/signin", url.Values{"csrf": {csrf(c.f.t, page)}, "token": {secret}, "next": {"/"}})
}

// session returns a client signed in with secret, and the session's CSRF
// token.
func (f *fixture) session(secret string) (*client, string) {
	f.t.Helper()
	c := f.client()
	if a := c.signIn(secret); a.status != http.StatusSeeOther {
		f.t.Fatalf("sign-in: %d\n%s", a.status, a.body)
	}
	page := c.get("/")
	if page.status != 200 {
		f.t.Fatalf("overview after sign-in: %d", page.status)
	}
	return c, csrf(f.t, page)
}

// state is what the POSTs could change, to tell that a refused one did
// not.
func (f *fixture) state() string {
	f.t.Helper()
	ctx := context.Background()
	g, err := f.e.Gates(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	tp, err := f.e.GetTemplate(ctx, fileKey)
	if err != nil {
		f.t.Fatal(err)
	}
	trg, _ := listTriggers(ctx, f.e)
	tok, _ := listTokens(ctx, f.e)
	revoked := 0
	for _, t := range tok {
		if t.Revoked() {
			revoked++
		}
	}
	rows, err := f.e.Instances(ctx, iu.InstanceFilter{})
	if err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprintf("gates %+v mode %s triggers %d tokens %d revoked %d instances %d on v2 %d compensations %d migrations %d", g, tp.EmitMode, len(trg), len(tok), revoked, len(rows.Items),
		f.onTemplate(wfKey), f.count(`SELECT count(*) FROM iu_compensation`), f.count(`SELECT count(*) FROM iu_instance_migration`))
}

// pages are every GET route, with whether it needs admin.
var pages = []struct {
	path  string
	admin bool
}{
	{"/", false}, {"/live/overview", false}, {"/templates", false}, {"/templates/" + wfKey, false},
	{"/instances", false}, {"/instances?actor=alice&template=" + wfKey, false}, {"/events", false}, {"/events?status=ok&actor=bob", false},
	{"/gates", false}, {"/verify", false}, {"/triggers", false}, {"/audit", false},
	{"/rollback", true}, {"/rollback?actor=alice", true}, {"/tokens", true},
	{"/compensate", true}, {"/migrate?from=" + wfKey, true},
}

func TestPagesByScope(t *testing.T) {
	f := newFixture(t)
	anon := f.client()
	reader, _ := f.session(f.reader)
	admin, _ := f.session(f.admin)
	for _, p := range pages {
		a := anon.get(p.path)
		if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/signin?next=") {
			t.Errorf("anonymous GET %s: %d to %q, want 303 to the sign-in page", p.path, a.status, a.header.Get("Location"))
		}
		want := 200
		if p.admin {
			want = http.StatusForbidden
		}
		for _, c := range []struct {
			name string
			cl   *client
			want int
		}{{"read", reader, want}, {"admin", admin, 200}} {
			a := c.cl.get(p.path)
			if a.status != c.want {
				t.Errorf("%s GET %s: %d, want %d\n%s", c.name, p.path, a.status, c.want, a.body)
				continue
			}
			if ct := a.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("%s GET %s: Content-Type %q, want HTML", c.name, p.path, ct)
			}
			if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("%s GET %s: Content-Security-Policy %q", c.name, p.path, csp)
			}
			if a.status == 200 && p.path != "/live/overview" && !strings.Contains(a.body, `<nav class="main" aria-label="Main">`) {
				t.Errorf("%s GET %s: no navigation bar", c.name, p.path)
			}
			if c.name == "read" && a.status == 200 && strings.Contains(a.body, `role="switch"`) {
				t.Errorf("read GET %s offers a switch", p.path)
			}
		}
	}
	// Pages that are not there, or not allowed, are pages too.
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/nowhere", 404, "There is no page at /nowhere."},
		{"/templates/tpl:wf:nowhere/v1", 404, "There is no template tpl:wf:nowhere/v1."},
		{"/instances/tpl-inst:manual:nowhere", 404, "There is no instance tpl-inst:manual:nowhere"},
		{"/verify?job=forgotten", 404, "no longer remembered"},
		{"/instances?after=garbage", 400, "is not a cursor of this list"},
		{"/events?status=gated", 400, "the event log holds ok, shadow and compensated entries"},
		{"/static/nothing.css", 404, "There is no file"},
	} {
		a := admin.get(c.path)
		if a.status != c.status || !strings.Contains(a.body, c.want) || !strings.Contains(a.body, `role="alert"`) {
			t.Errorf("GET %s: %d, want %d with %q in an alert\n%s", c.path, a.status, c.status, c.want, a.body)
		}
	}
	if a := anon.get("/static/console.css"); a.status != 200 || a.header.Get("Content-Type") != "text/css; charset=utf-8" || a.header.Get("ETag") == "" {
		t.Errorf("GET /static/console.css: %d %q", a.status, a.header.Get("Content-Type"))
	}
}

// posts are every POST route with a form that would change something.
func (f *fixture) posts() []struct {
	path  string
	form  url.Values
	admin bool
} {
	return []struct {
		path  string
		form  url.Values
		admin bool
	}{
		{"/gates", url.Values{"gate": {iu.GateComposer}, "enabled": {"false"}, "confirmed": {"yes"}}, true},
		{"/templates/mode", url.Values{"key": {fileKey}, "mode": {"shadow"}, "confirmed": {"yes"}}, true},
		{"/rollback", url.Values{"actor": {"alice"}, "confirm": {"alice"}}, true},
		{"/compensate", url.Values{"key": {f.instances[0]}, "confirm": {f.instances[0]}}, true},
		{"/migrate", url.Values{"from": {wfKey}, "to": {wf3Key}, "confirm": {"yes"}}, true},
		{"/triggers", url.Values{"type": {"com.acme.x"}, "template": {wfKey}}, true},
		{"/triggers/remove", url.Values{"name": {"nothing"}}, true},
		{"/tokens", url.Values{"scope": {"read"}, "name": {"new-one"}}, true},
		{"/tokens/revoke", url.Values{"name": {"producer"}}, true},
		{"/verify", url.Values{"actor": {"alice"}}, false},
		{"/signout", url.Values{}, false},
	}
}

// Every POST is refused without the session's CSRF token, with a forged
// one, and from another site; admin POSTs are refused to read. Nothing
// changes.
func TestPostsNeedCSRFAndScope(t *testing.T) {
	f := newFixture(t)
	f.publishV3() // so that the refused migration would move instances
	before := f.state()
	admin, token := f.session(f.admin)
	reader, readToken := f.session(f.reader)
	for _, p := range f.posts() {
		for _, c := range []struct {
			name   string
			cl     *client
			csrf   string
			header []string
			want   int
		}{
			{"no token", admin, "", nil, 403},
			{"forged token", admin, "forged", nil, 403},
			{"another session's token", admin, readToken, nil, 403},
			{"from another site", admin, token, []string{"Origin", "https://evil.example"}, 403},
			{"cross-site fetch", admin, token, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		} {
			form := url.Values{}
			for k, v := range p.form {
				form[k] = v
			}
			if c.csrf != "" {
				form.Set("csrf", c.csrf)
			}
			a := c.cl.do("POST", p.path, form, c.header...)
			if a.status != c.want || !strings.Contains(a.body, "Nothing was changed") {
				t.Errorf("POST %s, %s: %d, want %d and a message that nothing changed\n%s", p.path, c.name, a.status, c.want, a.body)
			}
		}
		if p.admin {
			form := url.Values{"csrf": {readToken}}
			for k, v := range p.form {
				form[k] = v
			}
			if a := reader.do("POST", p.path, form); a.status != 403 || !strings.Contains(a.body, "needs an admin token") {
				t.Errorf("read POST %s: %d, want 403\n%s", p.path, a.status, a.body)
			}
		}
		if a := f.client().do("POST", p.path, p.form); a.status != http.StatusUnauthorized {
			t.Errorf("anonymous POST %s: %d, want 401", p.path, a.status)
		}
	}
	if after := f.state(); after != before {
		t.Errorf("refused POSTs changed the store:\nbefore %s\nafter  %s", before, after)
	}
	// Pages change nothing when visited, whatever their query says.
	for _, path := range []string{"/signout", "/gates?gate=" + iu.GateComposer + "&enabled=false&confirmed=yes", "/tokens/revoke?name=producer"} {
		admin.get(path)
	}
	if a := admin.get("/signout"); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /signout: %d, want 405", a.status)
	}
	if after := f.state(); after != before {
		t.Errorf("GETs changed the store:\nbefore %s\nafter  %s", before, after)
	}
	if a := admin.get("/"); a.status != 200 {
		t.Errorf("the admin session ended after refused requests: %d", a.status)
	}
}

// With the CSRF token, each admin POST does what it says, under the
// signed-in token's name.
func TestAdminPostsChangeAndAudit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, token := f.session(f.admin)
	post := func(path string, form url.Values) answer {
		t.Helper()
		form.Set("csrf", token)
		return admin.do("POST", path, form)
	}

	// Closing a gate asks first, and changes nothing until confirmed.
	a := post("/gates", url.Values{"gate": {iu.GateComposer}, "enabled": {"false"}, "back": {"/gates"}})
	if a.status != 200 || !strings.Contains(a.body, "Turn off "+iu.GateComposer+"?") {
		t.Fatalf("closing a gate: %d, want the confirmation page\n%s", a.status, a.body)
	}
	if g, _ := f.e.Gates(ctx); !g.ComposerEnabled {
		t.Fatal("the gate closed before it was confirmed")
	}
	a = post("/gates", url.Values{"gate": {iu.GateComposer}, "enabled": {"false"}, "back": {"/gates"}, "confirmed": {"yes"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/gates" {
		t.Fatalf("confirmed: %d to %q, want 303 to /gates", a.status, a.header.Get("Location"))
	}
	if g, _ := f.e.Gates(ctx); g.ComposerEnabled {
		t.Fatal("the gate is still on")
	}
	audit, err := f.e.GateAudit(ctx, iu.PageRequest{Limit: 1})
	if err != nil || len(audit.Items) != 1 || audit.Items[0].ChangedBy != "ops-admin" || audit.Items[0].Claimed != "" {
		t.Errorf("gate audit %+v, %v: want the change by ops-admin, nothing claimed", audit.Items, err)
	}
	if page := admin.get("/gates"); !strings.Contains(page.body, "Gate "+iu.GateComposer+" is now off.") {
		t.Errorf("the next page does not say what was done")
	} else if again := admin.get("/gates"); strings.Contains(again.body, "is now off.") {
		t.Errorf("the notice is shown twice")
	}
	// Opening is at once; back must stay on this site.
	a = post("/gates", url.Values{"gate": {"composer_enabled"}, "enabled": {"true"}, "back": {"//evil.example/"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Errorf("opening: %d to %q, want 303 to / (not another site)", a.status, a.header.Get("Location"))
	}

	// The emit mode, confirmed.
	if a := post("/templates/mode", url.Values{"key": {fileKey}, "mode": {"shadow"}}); a.status != 200 || !strings.Contains(a.body, "Switch "+fileKey+" to shadow?") {
		t.Errorf("mode without confirming: %d\n%s", a.status, a.body)
	}
	post("/templates/mode", url.Values{"key": {fileKey}, "mode": {"shadow"}, "confirmed": {"yes"}})
	if tp, _ := f.e.GetTemplate(ctx, fileKey); tp.EmitMode != iu.EmitShadow {
		t.Errorf("mode %s, want shadow", tp.EmitMode)
	}
	if a := post("/templates/mode", url.Values{"key": {fileKey}, "mode": {"dark"}, "confirmed": {"yes"}}); a.status != 400 || !strings.Contains(a.body, "want live or shadow") {
		t.Errorf("an unknown mode: %d", a.status)
	}

	// A trigger added and removed; a bad one refused with the form kept.
	if a := post("/triggers", url.Values{"type": {"com.acme.*"}, "template": {wfKey}, "name": {"acme"}}); a.status != http.StatusSeeOther {
		t.Errorf("add trigger: %d\n%s", a.status, a.body)
	}
	if a := post("/triggers", url.Values{"type": {"com.*.x"}, "template": {wfKey}}); a.status != 400 || !strings.Contains(a.body, `value="com.*.x"`) {
		t.Errorf("a bad trigger: %d, want 400 with the form kept\n%s", a.status, a.body)
	}
	trg, _ := listTriggers(ctx, f.e)
	if len(trg) != 1 || trg[0].CreatedBy != "ops-admin" {
		t.Errorf("triggers %+v, want acme by ops-admin", trg)
	}
	post("/triggers/remove", url.Values{"name": {"acme"}})
	if trg, _ := listTriggers(ctx, f.e); len(trg) != 0 {
		t.Errorf("triggers %+v after removing", trg)
	}

	// A token: its secret shown once, on the next page only.
	if a := post("/tokens", url.Values{"scope": {"ingest"}, "name": {"new-producer"}}); a.status != http.StatusSeeOther {
		t.Fatalf("create token: %d", a.status)
	}
	page := admin.get("/tokens")
	secret := regexp.MustCompile(`<code id="secret">(iu_[^<]+)</code>`).FindStringSubmatch(page.body)
	if secret == nil {
		t.Fatalf("the new token's secret is not shown:\n%s", page.body)
	}
	if tok, err := f.e.Authenticate(ctx, secret[1]); err != nil || tok.Name != "new-producer" || tok.CreatedBy != "ops-admin" {
		t.Errorf("the secret shown authenticates as %+v, %v", tok, err)
	}
	if again := admin.get("/tokens"); strings.Contains(again.body, secret[1]) {
		t.Errorf("the secret is shown a second time")
	}

	// Rollback: a wrong name deletes nothing; the right one deletes.
	if a := post("/rollback", url.Values{"actor": {"alice"}, "confirm": {"Alice"}}); a.status != 400 || !strings.Contains(a.body, "Nothing was deleted") {
		t.Errorf("rollback with a wrong name: %d\n%s", a.status, a.body)
	}
	if rows, _ := f.e.Instances(ctx, iu.InstanceFilter{Actor: "alice"}); len(rows.Items) != 5 {
		t.Errorf("%d instances of alice after a refused rollback", len(rows.Items))
	}
	a = post("/rollback", url.Values{"actor": {"alice"}, "confirm": {"alice"}})
	if a.status != 200 || !strings.Contains(a.body, "Deleted for alice") {
		t.Errorf("rollback: %d\n%s", a.status, a.body)
	}
	if rows, _ := f.e.Instances(ctx, iu.InstanceFilter{Actor: "alice"}); len(rows.Items) != 0 {
		t.Errorf("%d instances of alice after the rollback", len(rows.Items))
	}
	trail, err := f.e.Audit(ctx, iu.PageRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range trail.Items {
		if e.By != "ops-admin" {
			continue
		}
		seen[e.Action] = true
	}
	for _, want := range []string{iu.AuditEmitMode, iu.AuditTriggerAdd, iu.AuditTriggerRemove, iu.AuditTokenCreate, iu.AuditRollback} {
		if !seen[want] {
			t.Errorf("the audit trail has no %s by ops-admin: %+v", want, trail.Items)
		}
	}
	if page := admin.get("/audit"); !strings.Contains(page.body, iu.AuditRollback) || !strings.Contains(page.body, "ops-admin") {
		t.Errorf("the Audit page does not show the rollback by ops-admin")
	}

	// Revoking a token ends its sessions; revoking your own signs you out.
	reader, _ := f.session(f.reader)
	post("/tokens/revoke", url.Values{"name": {"ops-reader"}})
	if a := reader.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("a revoked token's session: %d, want 303 to sign in", a.status)
	}
	if a := post("/tokens/revoke", url.Values{"name": {"ops-admin"}}); a.status != http.StatusSeeOther || a.header.Get("Location") != "/signin" {
		t.Errorf("revoking yourself: %d to %q", a.status, a.header.Get("Location"))
	}
	if a := admin.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("after revoking itself, the session still works: %d", a.status)
	}
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for _, s := range []struct {
		secret string
		status int
		want   string
	}{
		{"", 401, "Enter a token"},
		{"iu_not-a-token", 401, "not valid"},
		{"not even the prefix", 401, "not valid"},
		{f.ingest, 403, "cannot sign in"},
	} {
		a := c.signIn(s.secret)
		if a.status != s.status || !strings.Contains(a.body, s.want) {
			t.Errorf("sign in with %q: %d, want %d with %q\n%s", s.secret, a.status, s.status, s.want, a.body)
		}
		for _, ck := range (&http.Response{Header: a.header}).Cookies() {
			if ck.Name == sessionCookie {
				t.Errorf("a refused sign-in set a session cookie")
			}
		}
		if strings.Contains(a.body, s.secret) && s.secret != "" {
			t.Errorf("the refused token is echoed in the page")
		}
	}
	// The sign-in form must come from this site.
	if a := c.do("POST", "/signin", url.Values{"csrf": {"guess"}, "token": {f.admin}}); a.status != 403 {
		t.Errorf("sign-in without the form's CSRF token: %d, want 403", a.status)
	}

	a := c.signIn(f.reader)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("sign in with a read token: %d to %q", a.status, a.header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure || session.Path != "/" || len(session.Value) < 43 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path /, 256 random bits", session)
	}
	// Behind a TLS proxy the cookie is Secure.
	c = f.client()
	page := c.get("/signin")
	a = c.do("POST", "/signin", url.Values{"csrf": {csrf(t, page)}, "token": {f.admin}}, "X-Forwarded-Proto", "https")
	if !strings.Contains(a.header.Get("Set-Cookie"), "Secure") {
		t.Errorf("behind https the cookies are not Secure: %q", a.header.Values("Set-Cookie"))
	}
	// next stays on this site.
	c2 := f.client()
	page = c2.get("/signin?next=//evil.example/x")
	a = c2.do("POST", "/signin", url.Values{"csrf": {csrf(t, page)}, "token": {f.admin}, "next": {"//evil.example/x"}})
	if a.header.Get("Location") != "/" {
		t.Errorf("sign-in sent to %q, want /", a.header.Get("Location"))
	}
	page = c2.get("/signin?next=/instances%3Factor%3Dbob") // signed in: sent on at once
	if page.status != http.StatusSeeOther || page.header.Get("Location") != "/instances?actor=bob" {
		t.Errorf("the sign-in page when signed in: %d to %q", page.status, page.header.Get("Location"))
	}
}

func TestSessionsEnd(t *testing.T) {
	f := newFixture(t)
	c, token := f.session(f.admin)
	// Idle for longer than SessionIdle: ended.
	f.clock.add(DefaultSessionIdle + time.Second)
	if a := c.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("after an idle hour: %d, want 303 to sign in", a.status)
	}
	// Used all along, a session still ends SessionMax after sign-in.
	c, _ = f.session(f.admin)
	for elapsed := time.Duration(0); elapsed < DefaultSessionMax; elapsed += 30 * time.Minute {
		if a := c.get("/gates"); a.status != 200 {
			t.Fatalf("after %v of use: %d", elapsed, a.status)
		}
		f.clock.add(30 * time.Minute)
	}
	f.clock.add(time.Minute)
	if a := c.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("12 hours after sign-in: %d, want 303", a.status)
	}
	// Sign-out ends the session and clears the cookie.
	c, token = f.session(f.admin)
	a := c.do("POST", "/signout", url.Values{"csrf": {token}})
	if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Set-Cookie"), sessionCookie+"=;") {
		t.Errorf("sign-out: %d, cookie %q", a.status, a.header.Get("Set-Cookie"))
	}
	if a := c.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", a.status)
	}
	// A token revoked elsewhere (the API, another server) ends its
	// sessions once the recheck interval has passed.
	c, _ = f.session(f.reader)
	if _, err := f.e.RevokeToken(context.Background(), "ops-reader"); err != nil {
		t.Fatal(err)
	}
	f.clock.add(time.Second)
	if a := c.get("/"); a.status != http.StatusSeeOther {
		t.Errorf("a second after its token was revoked: %d, want 303", a.status)
	}
	if a := c.do("GET", "/live/overview", nil, "X-Requested-With", "fetch"); a.status != http.StatusUnauthorized {
		t.Errorf("the overview's script after the session ended: %d, want 401", a.status)
	}
}

// The data functions, without HTTP.
func TestOverviewData(t *testing.T) {
	f := newFixture(t)
	p, err := f.c.overviewData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Instances != 8 || p.LastHour != 8 || len(p.Stats) != 2 {
		t.Errorf("instances %d, last hour %d, %d templates; want 8, 8, 2", p.Instances, p.LastHour, len(p.Stats))
	}
	if len(p.Gates) != 2 || !p.Gates[0].On || !p.Gates[1].On || p.Gates[0].Name != iu.GateComposer {
		t.Errorf("gates %+v", p.Gates)
	}
	if p.Schema <= 0 || p.SchemaProblem != "" || !strings.HasPrefix(p.Store, "sqlite:") {
		t.Errorf("store %q schema %d (%q)", p.Store, p.Schema, p.SchemaProblem)
	}
	if p.Activity == nil || p.Activity.Outcomes[0].Count != 1 || p.Activity.Outcomes[3].Count != 1 || p.Activity.P99 < 3*time.Millisecond {
		t.Errorf("activity %+v", p.Activity)
	}
	if n := len(p.Activity.Rates.Bars); n != 1 {
		t.Errorf("%d bars in the rate chart, want the one bucket with requests", n)
	}
}

func TestInstancesPaging(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seen := map[string]bool{}
	q := instanceQuery{}
	for pages := 0; ; pages++ {
		p, err := f.c.instancesData(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rows {
			if seen[r.InstanceKey] {
				t.Errorf("%s on two pages", r.InstanceKey)
			}
			seen[r.InstanceKey] = true
		}
		if p.Pager.Next == "" {
			break
		}
		u, _ := url.Parse(p.Pager.Next)
		q.After = u.Query().Get("after")
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 8 {
		t.Errorf("%d instances over the pages, want 8", len(seen))
	}
	p, err := f.c.instancesData(ctx, instanceQuery{Actor: "bob"})
	if err != nil || len(p.Rows) != 3 {
		t.Errorf("bob's instances: %d, %v", len(p.Rows), err)
	}
	p, err = f.c.instancesData(ctx, instanceQuery{EventID: "ev-2"})
	if err != nil || len(p.Rows) != 1 || p.Rows[0].InstanceKey != f.instances[2] {
		t.Errorf("instances of event ev-2: %+v, %v", p.Rows, err)
	}
}

func TestInstanceData(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, err := f.c.instanceData(ctx, f.instances[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.TemplateKey != wfKey || p.Actor != "alice" || p.Mode != iu.ModeAuto || p.Event == nil || p.Event.ID != "ev-0" || len(p.Problems) != 0 {
		t.Errorf("instance %+v", p)
	}
	if !strings.Contains(p.Data, `"team": "core"`) || p.Rendered == nil || !strings.Contains(p.Rendered.Text, "1. [ ]") {
		t.Errorf("data %q, rendered %+v", p.Data, p.Rendered)
	}
	if err := sqlite.ExecRaw(ctx, f.s, `UPDATE iu_piece_collection SET digest = 'sha256:`+strings.Repeat("0", 64)+`' WHERE collection_key = ?`, f.instances[1]); err != nil {
		t.Fatal(err)
	}
	p, err = f.c.instanceData(ctx, f.instances[1])
	if err != nil || len(p.Problems) == 0 {
		t.Errorf("a tampered instance: problems %q, %v", p.Problems, err)
	}
}

func TestTemplateGraph(t *testing.T) {
	f := newFixture(t)
	p, err := f.c.templateData(context.Background(), wfKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Graph.Nodes) != 8 || len(p.Slots) != 8 || p.Instances != 8 {
		t.Fatalf("graph %d nodes, %d slots, %d instances", len(p.Graph.Nodes), len(p.Slots), p.Instances)
	}
	// Every edge goes down: a slot sits below every slot it comes after.
	y := map[string]float64{}
	for _, n := range p.Graph.Nodes {
		y[n.ID] = n.Y
	}
	edges := 0
	for _, s := range p.Slots {
		for _, a := range s.After {
			edges++
			if y[a] >= y[s.ID] {
				t.Errorf("slot %s (y %v) is not below %s (y %v), which it comes after", s.ID, y[s.ID], a, y[a])
			}
		}
	}
	if len(p.Graph.Edges) != edges {
		t.Errorf("%d edges drawn, %d in the template", len(p.Graph.Edges), edges)
	}
	// An edge that spans layers drops straight through the layers between
	// ("L" to the bottom of the row), beside their boxes, not through them.
	drop := regexp.MustCompile(`L([0-9.]+),([0-9.]+)`)
	long := 0
	for _, e := range p.Graph.Edges {
		for _, m := range drop.FindAllStringSubmatch(e.Path, -1) {
			long++
			var x, y float64
			fmt.Sscan(m[1], &x)
			fmt.Sscan(m[2], &y)
			for _, n := range p.Graph.Nodes {
				if n.Y+n.H == y && x > n.X && x < n.X+n.W {
					t.Errorf("edge %s passes through the box of %s", e.Title, n.ID)
				}
			}
		}
	}
	if long == 0 {
		t.Errorf("no edge of %s spans two layers; laptop -> first-day does", wfKey)
	}
}

func TestRollbackPreview(t *testing.T) {
	f := newFixture(t)
	p, err := f.c.rollbackData(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.Actors) != "[alice bob]" || p.Preview == nil || p.Preview.Instances != 5 || p.Preview.LogRows != 5 || len(p.Keys) != 5 || p.More {
		t.Errorf("preview %+v", p)
	}
	if p.Empty() {
		t.Errorf("alice's preview is empty")
	}
	p, err = f.c.rollbackData(context.Background(), "nobody")
	if err != nil || !p.Empty() {
		t.Errorf("nobody's preview: %+v, %v", p.Preview, err)
	}
}

func TestVerifyJob(t *testing.T) {
	f := newFixture(t)
	admin, token := f.session(f.reader) // a read token may verify
	a := admin.do("POST", "/verify", url.Values{"csrf": {token}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/verify?job=") {
		t.Fatalf("start verify: %d to %q", a.status, a.header.Get("Location"))
	}
	job := a.header.Get("Location")
	deadline := time.Now().Add(10 * time.Second)
	for {
		page := admin.get(job)
		if strings.Contains(page.body, "Every instance matches") {
			if !strings.Contains(page.body, "data-final") {
				t.Errorf("a finished verify does not tell the script to stop")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify did not finish:\n%s", page.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := admin.do("POST", "/verify", url.Values{"csrf": {token}, "actor": {"not an actor\x00"}}); a.status != 400 {
		t.Errorf("verify of a malformed actor: %d, want 400", a.status)
	}
}

// The per-template counts are answered from the last read for SummaryTTL,
// then refreshed in the background while the old ones are answered once
// more; a change made in the console forgets them at once.
func TestSummaryCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	count := func() int64 {
		t.Helper()
		p, err := f.c.overviewData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p.Instances
	}
	if n := count(); n != 8 {
		t.Fatalf("%d instances, want 8", n)
	}
	if _, err := f.e.Emit(ctx, iu.EmitRequest{TemplateKey: wfKey, Actor: "carol", Event: iu.Event{ID: "late", Source: "test", Type: "t"}}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 8 {
		t.Errorf("within the TTL: %d instances, want the 8 read before", n)
	}
	f.clock.add(DefaultSummaryTTL)
	if n := count(); n != 8 {
		t.Errorf("just past the TTL: %d, want the old 8 once more while it is read again", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != 9 {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never brought the 9th instance")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Far past maxStale, a page waits for a fresh read.
	if _, err := f.e.Emit(ctx, iu.EmitRequest{TemplateKey: wfKey, Actor: "carol", Event: iu.Event{ID: "later", Source: "test", Type: "t"}}); err != nil {
		t.Fatal(err)
	}
	f.clock.add(2 * maxStale)
	if n := count(); n != 10 {
		t.Errorf("a summary older than maxStale was answered: %d, want 10", n)
	}
	// A rollback through the console shows at once.
	admin, token := f.session(f.admin)
	admin.do("POST", "/rollback", url.Values{"csrf": {token}, "actor": {"carol"}, "confirm": {"carol"}})
	if n := count(); n != 8 {
		t.Errorf("after rolling back carol: %d, want 8 at once", n)
	}
}

// holdStore holds its read transactions while hold is set, as a store
// counting a million instances would.
type holdStore struct {
	iu.Store
	mu   sync.Mutex
	hold chan struct{}
}

func (h *holdStore) View(ctx context.Context, fn func(iu.Tx) error) error {
	h.mu.Lock()
	hold := h.hold
	h.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return h.Store.View(ctx, fn)
}

// With no counts at hand and a slow read, the overview answers without
// them after a moment, and has them once the read is done.
func TestOverviewDoesNotWaitForSlowCounts(t *testing.T) {
	f := newFixture(t)
	hs := &holdStore{Store: f.s}
	c := New(iu.NewEngine(hs), Options{Now: f.clock.now})
	defer c.Close()
	ctx := context.Background()
	release := make(chan struct{})
	hs.hold = release
	go func() {
		// Let the page's own reads (gates, schema) through once the
		// summary's read is waiting.
		time.Sleep(200 * time.Millisecond)
		hs.mu.Lock()
		hs.hold = nil
		hs.mu.Unlock()
	}()
	_, _, err := c.stats(ctx, 20*time.Millisecond)
	if !errors.Is(err, errCounting) {
		t.Fatalf("a slow first read: %v, want errCounting", err)
	}
	time.Sleep(300 * time.Millisecond)
	p, err := c.overviewData(ctx)
	if err != nil || !p.Counting {
		t.Fatalf("the overview while counting: counting %v, %v", p.Counting, err)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := c.overviewData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Counting {
			if p.Instances != 8 {
				t.Errorf("%d instances once counted, want 8", p.Instances)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the counts never came")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
