package console

// Server-side tests of the lifecycle pages: an instance's history, its
// compensation, and the migration of a template's instances to another
// version.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/sqlite"
)

const wf3Key = "tpl:wf:onboarding/v3"

// publishV3 publishes the repository's example v3 of the onboarding
// checklist: v2 with a security training step added before the first day.
func (f *fixture) publishV3() {
	f.t.Helper()
	const name = "../examples/lifecycle/onboarding-v3.yaml"
	data, err := os.ReadFile(name)
	if err != nil {
		f.t.Fatal(err)
	}
	tp, err := iu.ParseTemplateFile(name, data)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.e.PublishTemplates(context.Background(), []*iu.Template{tp}, "tester"); err != nil {
		f.t.Fatal(err)
	}
}

// count counts rows with raw SQL, to see what the engine wrote.
func (f *fixture) count(query string, args ...any) int64 {
	f.t.Helper()
	n, err := sqlite.CountRaw(context.Background(), f.s, query, args...)
	if err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// onTemplate counts the instances on a template now.
func (f *fixture) onTemplate(key string) int {
	f.t.Helper()
	p, err := f.e.Instances(context.Background(), iu.InstanceFilter{TemplateKey: key})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(p.Items)
}

func mustContain(t *testing.T, what string, a answer, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(a.body, w) {
			t.Errorf("%s: %q is not on the page (status %d)\n%s", what, w, a.status, a.body)
			return
		}
	}
}

func mustNotContain(t *testing.T, what string, a answer, nots ...string) {
	t.Helper()
	for _, w := range nots {
		if strings.Contains(a.body, w) {
			t.Errorf("%s: %q is on the page, and should not be", what, w)
		}
	}
}

func TestInstanceHistoryAndCompensate(t *testing.T) {
	f := newFixture(t)
	key := f.instances[0]
	admin, token := f.session(f.admin)
	reader, _ := f.session(f.reader)

	// Both scopes see the history; only admin is offered Compensate.
	for _, c := range []struct {
		name  string
		cl    *client
		admin bool
	}{{"read", reader, false}, {"admin", admin, true}} {
		a := c.cl.get("/instances/" + key)
		if a.status != 200 {
			t.Fatalf("%s GET the instance: %d\n%s", c.name, a.status, a.body)
		}
		mustContain(t, c.name+" instance page", a, `<h2 id="history-h">History</h2>`, "<td>created</td>", "actor alice", `made from `+wfKey+` by event &#34;ev-0&#34;`)
		if got := strings.Contains(a.body, `action="/compensate"`); got != c.admin {
			t.Errorf("%s: the Compensate form is offered: %v, want %v", c.name, got, c.admin)
		}
	}
	mustContain(t, "the Compensate form", admin.get("/instances/"+key), `<label for="reason">Reason</label>`, "Release the event's key", "Preview compensation")
	if a := reader.get("/compensate?key=" + url.QueryEscape(key)); a.status != http.StatusForbidden {
		t.Errorf("read GET /compensate: %d, want 403", a.status)
	}

	// The preview says what would go and writes nothing.
	before := f.state()
	a := admin.get("/compensate?key=" + url.QueryEscape(key) + "&reason=wrong+hire")
	if a.status != 200 {
		t.Fatalf("preview: %d\n%s", a.status, a.body)
	}
	mustContain(t, "preview", a, "Preview: what compensating "+key+" would do", `<th scope="row">Memberships</th><td class="num">8</td>`,
		"stays, with the status compensated", `name="confirm"`, "Apply compensation", `<dd>wrong hire</dd>`)
	mustContain(t, "preview with release", admin.get("/compensate?key="+url.QueryEscape(key)+"&release=yes"), "is deleted: the event's key is released")
	if got := f.count(`SELECT count(*) FROM iu_compensation`); got != 0 || f.state() != before {
		t.Fatalf("a preview wrote: %d compensations; state %s, was %s", got, f.state(), before)
	}
	if a := admin.get("/compensate?key=tpl-inst:auto:nowhere"); a.status != 404 || !strings.Contains(a.body, `role="alert"`) {
		t.Errorf("preview of no instance: %d, want 404 with an alert\n%s", a.status, a.body)
	}

	post := func(form url.Values) answer {
		t.Helper()
		form.Set("csrf", token)
		return admin.do("POST", "/compensate", form)
	}
	// A wrong key typed compensates nothing.
	a = post(url.Values{"key": {key}, "reason": {"wrong hire"}, "confirm": {"tpl-inst:auto:alice"}})
	if a.status != 400 || !strings.Contains(a.body, "Nothing was compensated") || !strings.Contains(a.body, "Apply compensation") {
		t.Errorf("apply with a wrong key typed: %d, want 400 with the preview again\n%s", a.status, a.body)
	}
	if f.state() != before {
		t.Fatal("a refused apply changed the store")
	}

	// Typed right, it is done, under the token's name.
	a = post(url.Values{"key": {key}, "reason": {"wrong hire"}, "confirm": {key}})
	if a.status != 200 {
		t.Fatalf("apply: %d\n%s", a.status, a.body)
	}
	mustContain(t, "applied", a, "Compensated "+key+".", `<h2 id="applied-h">Compensated `+key, "kept, with the status compensated",
		"<td>compensated</td>", "<td>ops-admin</td>")
	if n := f.count(`SELECT count(*) FROM iu_compensation WHERE instance_key = ? AND compensated_by = 'ops-admin' AND reason = 'wrong hire' AND claimed_actor = ''`, key); n != 1 {
		t.Errorf("%d compensations of %s by ops-admin in iu_compensation, want 1", n, key)
	}
	if n := f.count(`SELECT count(*) FROM iu_auto_instantiate_event_log WHERE instance_key = ? AND status = 'compensated'`, key); n != 1 {
		t.Errorf("the event's log entry: %d compensated, want 1", n)
	}
	if _, err := f.e.GetInstance(context.Background(), key); iu.ErrorCode(err) != iu.CodeNotFound {
		t.Errorf("the instance after compensation: %v, want not found", err)
	}

	// Its page is its history now, for both scopes; admin is offered to
	// release the event's key, which is still claimed.
	for _, c := range []struct {
		cl    *client
		admin bool
	}{{admin, true}, {reader, false}} {
		a := c.cl.get("/instances/" + key)
		if a.status != 200 {
			t.Errorf("the page of a compensated instance: %d, want 200 with its history\n%s", a.status, a.body)
		}
		mustContain(t, "compensated instance", a, "This instance is no more: it was compensated", "by ops-admin", "<td>created</td>", "<td>compensated</td>", "wrong hire")
		mustNotContain(t, "compensated instance", a, "Preview compensation", "Rendered as")
		if got := strings.Contains(a.body, "Preview release"); got != c.admin {
			t.Errorf("the Release form on a compensated instance's page: %v, want %v", got, c.admin)
		}
	}

	// Twice is an error that writes nothing.
	a = post(url.Values{"key": {key}, "confirm": {key}})
	if a.status != 404 || !strings.Contains(a.body, "compensated already") {
		t.Errorf("compensating twice: %d, want 404 saying so\n%s", a.status, a.body)
	}
	if n := f.count(`SELECT count(*) FROM iu_compensation`); n != 1 {
		t.Errorf("%d compensations after a second try, want 1", n)
	}

	// Released later, from its page's form: a preview, then the typed key.
	before = f.state()
	a = admin.get("/compensate?key=" + url.QueryEscape(key) + "&release=yes&reason=hired+after+all")
	mustContain(t, "release preview", a, "Preview: releasing the event's key of "+key, "is deleted: the event's key is released", "Apply release")
	mustNotContain(t, "release preview", a, `<th scope="row">Memberships</th>`)
	if f.state() != before {
		t.Fatal("a release preview changed the store")
	}
	a = post(url.Values{"key": {key}, "release": {"yes"}, "reason": {"hired after all"}, "confirm": {key}})
	mustContain(t, "release applied", a, "Released the event's key of "+key, "<td>released</td>", "hired after all")
	if n := f.count(`SELECT count(*) FROM iu_auto_instantiate_event_log WHERE instance_key = ?`, key); n != 0 {
		t.Errorf("the log entry of a key released later is still there")
	}
	if a := admin.get("/instances/" + key); strings.Contains(a.body, "Preview release") {
		t.Errorf("a released key's page still offers to release it")
	}

	// With release, the event's entry goes.
	other := f.instances[1]
	if a := post(url.Values{"key": {other}, "release": {"yes"}, "confirm": {other}}); a.status != 200 || !strings.Contains(a.body, "deleted: the same event may instantiate again") {
		t.Errorf("apply with release: %d\n%s", a.status, a.body)
	}
	if n := f.count(`SELECT count(*) FROM iu_auto_instantiate_event_log WHERE instance_key = ?`, other); n != 0 {
		t.Errorf("the released event's log entry is still there")
	}
}

// A manual instance has no event: nothing to release, and the preview
// says so.
func TestCompensateManual(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, err := f.e.Compose(ctx, iu.ComposeRequest{TemplateKey: fileKey, InstanceKey: "tpl-inst:manual:report-1", Actor: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.c.compensateData(iu.NewContextWithPrincipal(ctx, "ops-admin"), r.InstanceKey, "", true)
	if err != nil || p.Preview == nil || p.Preview.LogEntry != "none" || p.Preview.Memberships != 8 || !p.Preview.DryRun {
		t.Fatalf("preview of a manual instance: %+v, %v", p.Preview, err)
	}
	admin, _ := f.session(f.admin)
	a := admin.get("/instances/" + r.InstanceKey)
	mustContain(t, "manual instance", a, "<td>composed</td>", "there is no event to release")
	mustNotContain(t, "manual instance", a, "Release the event's key")
}

func TestMigratePages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, token := f.session(f.admin)
	reader, _ := f.session(f.reader)

	// Without another version, the template page says there is none.
	a := admin.get("/templates/" + wfKey)
	mustContain(t, "template without other versions", a, "No other version of this template is published", "There is no other version to migrate this one")
	mustNotContain(t, "template without other versions", a, `action="/migrate"`)

	f.publishV3()
	a = admin.get("/templates/" + wfKey)
	mustContain(t, "admin template page", a, `<a href="/templates/`+wf3Key+`">`+wf3Key+`</a>`, `<h3 id="migrate-h">Migrate to another version</h3>`,
		`<option value="`+wf3Key+`" selected>`, "Preview migration")
	a = reader.get("/templates/" + wfKey)
	mustContain(t, "read template page", a, `<a href="/templates/`+wf3Key+`">`)
	mustNotContain(t, "read template page", a, `action="/migrate"`, "Migrate to another version")
	mustContain(t, "v3's page", admin.get("/templates/"+wf3Key), `<option value="`+wfKey+`" selected>`)
	for _, path := range []string{"/migrate?from=" + wfKey + "&to=" + wf3Key, "/migrate?job=x", "/live/migrate?job=x"} {
		if a := reader.get(path); a.status != http.StatusForbidden {
			t.Errorf("read GET %s: %d, want 403", path, a.status)
		}
	}

	// The preview: the count and the graph difference, nothing moved.
	p, err := f.c.migrateData(iu.NewContextWithPrincipal(ctx, "ops-admin"), iu.MigrateRequest{From: wfKey, To: wf3Key})
	if err != nil {
		t.Fatal(err)
	}
	if p.Preview == nil || p.Preview.Instances != 8 || len(p.Slots) != 2 || p.Nothing() {
		t.Fatalf("preview %+v, slots %+v", p.Preview, p.Slots)
	}
	if s := p.Slots[0]; s.Slot != "security-training" || s.Change != "added" || !strings.Contains(s.ToBody, "security and privacy training") || strings.Join(s.ToAfter, ",") != "access" {
		t.Errorf("the added slot: %+v", s)
	}
	if s := p.Slots[1]; s.Slot != "first-day" || s.Change != "changed" || s.Piece || !s.Edges || strings.Join(s.ToAfter, ",") != "laptop,security-training,buddy" {
		t.Errorf("the changed slot: %+v", s)
	}
	a = admin.get("/migrate?from=" + wfKey + "&to=" + wf3Key)
	mustContain(t, "preview page", a, "Preview: migrating "+wfKey+" to "+wf3Key, "<dt>instances to move</dt><dd>8</dd>",
		"<code>security-training</code>", "changed: its edges", "Move 8 instances from", "Apply migration")
	if a := admin.get("/migrate?from=" + wfKey + "&to=" + wf3Key + "&actor=nobody"); !strings.Contains(a.body, "No instance of "+wfKey+" under this filter") || strings.Contains(a.body, "Apply migration") {
		t.Errorf("a preview with nothing to move offers to apply it\n%s", a.body)
	}
	if a := admin.get("/migrate?from=" + wfKey + "&to=" + fileKey); a.status != 400 || !strings.Contains(a.body, "only between versions of one template") {
		t.Errorf("a preview across templates: %d\n%s", a.status, a.body)
	}
	if a := admin.get("/migrate"); a.status != 400 || !strings.Contains(a.body, "Choose the template") {
		t.Errorf("GET /migrate with nothing: %d", a.status)
	}
	if f.onTemplate(wfKey) != 8 || f.count(`SELECT count(*) FROM iu_instance_migration`) != 0 {
		t.Fatal("a preview moved instances")
	}

	post := func(form url.Values) answer {
		t.Helper()
		form.Set("csrf", token)
		return admin.do("POST", "/migrate", form)
	}
	if a := post(url.Values{"from": {wfKey}, "to": {wf3Key}}); a.status != 400 || !strings.Contains(a.body, "Nothing was moved: tick the box") {
		t.Errorf("apply unconfirmed: %d\n%s", a.status, a.body)
	}
	if a := post(url.Values{"from": {wfKey}, "to": {"tpl:wf:onboarding/v9"}, "confirm": {"yes"}}); a.status != 404 || !strings.Contains(a.body, "publish the version to migrate to first") {
		t.Errorf("apply to an unpublished version: %d\n%s", a.status, a.body)
	}
	if f.onTemplate(wfKey) != 8 {
		t.Fatal("a refused apply moved instances")
	}

	// Applied, it runs in the background; its page shows the progress and
	// then the result.
	a = post(url.Values{"from": {wfKey}, "to": {wf3Key}, "confirm": {"yes"}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/migrate?job=") {
		t.Fatalf("apply: %d to %q\n%s", a.status, a.header.Get("Location"), a.body)
	}
	job := a.header.Get("Location")
	page := waitJob(t, admin, job)
	mustContain(t, "finished migration", page, "8 instances moved to "+wf3Key, "data-final", "Started", "by ops-admin")
	live := admin.do("GET", "/live/migrate?job="+strings.TrimPrefix(job, "/migrate?job="), nil, "X-Requested-With", "fetch")
	mustContain(t, "live part", live, "data-final", "8 instances moved")
	mustNotContain(t, "live part", live, "<nav")
	if f.onTemplate(wfKey) != 0 || f.onTemplate(wf3Key) != 8 {
		t.Errorf("after the migration: %d on v2, %d on v3; want 0 and 8", f.onTemplate(wfKey), f.onTemplate(wf3Key))
	}
	if n := f.count(`SELECT count(*) FROM iu_instance_migration WHERE from_key = ? AND to_key = ? AND migrated_by = 'ops-admin'`, wfKey, wf3Key); n != 8 {
		t.Errorf("%d migrations by ops-admin in iu_instance_migration, want 8", n)
	}
	mustContain(t, "a migrated instance", admin.get("/instances/"+f.instances[0]), "<td>migrated</td>", "<td>ops-admin</td>", "from "+wfKey)
	if rep, err := f.e.Verify(ctx, ""); err != nil || !rep.OK() {
		t.Errorf("verify after the migration: %+v, %v", rep, err)
	}

	// Back, for bob alone: the filter reaches the engine.
	a = post(url.Values{"from": {wf3Key}, "to": {wfKey}, "actor": {"bob"}, "confirm": {"yes"}})
	mustContain(t, "bob's migration back", waitJob(t, admin, a.header.Get("Location")), "3 instances moved to "+wfKey, ", actor bob")
	if f.onTemplate(wfKey) != 3 {
		t.Errorf("%d instances on v2 after moving bob's back, want 3", f.onTemplate(wfKey))
	}
	if a := admin.get("/migrate?job=forgotten"); a.status != 404 || !strings.Contains(a.body, "no longer remembered") {
		t.Errorf("an unknown job: %d", a.status)
	}
}

// waitJob polls a migration's page until it is done.
func waitJob(t *testing.T, c *client, job string) answer {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		page := c.get(job)
		if page.status != 200 {
			t.Fatalf("GET %s: %d\n%s", job, page.status, page.body)
		}
		if strings.Contains(page.body, "data-final") {
			return page
		}
		if time.Now().After(deadline) {
			t.Fatalf("the migration did not finish:\n%s", page.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdUpdates holds write transactions while hold is set, as a migration
// of a million instances would take a while.
type holdUpdates struct {
	iu.Store
	hold    atomic.Bool
	release chan struct{}
}

func (h *holdUpdates) Update(ctx context.Context, fn func(iu.Tx) error) error {
	if h.hold.Load() {
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.Store.Update(ctx, fn)
}

// While a migration runs, asking for it again (a second click, a reload
// that posts again, another operator) shows the running one: it is not
// started twice. Close stops it between batches.
func TestMigrateOnceAtATime(t *testing.T) {
	f := newFixture(t)
	f.publishV3()
	hs := &holdUpdates{Store: f.s, release: make(chan struct{})}
	g := *f // the same store and tokens, through a console that can be held
	g.c = New(iu.NewEngine(hs), Options{Now: f.clock.now})
	g.srv = newServer(t, g.c)
	admin, token := g.session(f.admin)
	other, otherToken := g.session(f.admin)
	hs.hold.Store(true)

	form := url.Values{"csrf": {token}, "from": {wfKey}, "to": {wf3Key}, "confirm": {"yes"}}
	first := admin.do("POST", "/migrate", form)
	if first.status != http.StatusSeeOther {
		t.Fatalf("apply: %d\n%s", first.status, first.body)
	}
	page := admin.get(first.header.Get("Location"))
	mustContain(t, "a running migration", page, "Running", `<progress id="progress"`, `data-refresh="/live/migrate?job=`)
	mustNotContain(t, "a running migration", page, "data-final")
	form.Set("csrf", otherToken)
	again := other.do("POST", "/migrate", form)
	if again.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("a second apply while the first runs went to %q, want the first's %q", again.header.Get("Location"), first.header.Get("Location"))
	}
	mustContain(t, "the second apply", other.get(again.header.Get("Location")), "is running already, started by ops-admin")
	if n := len(g.c.migrations.jobs); n != 1 {
		t.Errorf("%d migration jobs, want 1", n)
	}

	// Another pair of versions may run beside it (this one moves nothing).
	back := url.Values{"csrf": {token}, "from": {wf3Key}, "to": {wfKey}, "actor": {"nobody"}, "confirm": {"yes"}}
	if a := admin.do("POST", "/migrate", back); a.status != http.StatusSeeOther || a.header.Get("Location") == first.header.Get("Location") {
		t.Errorf("a migration between other versions: %d to %q", a.status, a.header.Get("Location"))
	}

	close(hs.release)
	mustContain(t, "the migration, released", waitJob(t, admin, first.header.Get("Location")), "8 instances moved")
	// Done, it may be started again (there is nothing left to move).
	if a := admin.do("POST", "/migrate", url.Values{"csrf": {token}, "from": {wfKey}, "to": {wf3Key}, "confirm": {"yes"}}); a.status != http.StatusSeeOther || a.header.Get("Location") == first.header.Get("Location") {
		t.Errorf("after it ended, a new apply: %d to %q, want a new job", a.status, a.header.Get("Location"))
	}
}

func newServer(t *testing.T, c *Console) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(c)
	t.Cleanup(s.Close)
	t.Cleanup(c.Close)
	return s
}
