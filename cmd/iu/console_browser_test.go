package main

// Browser tests of the ops console: a real Chromium, driven with chromedp,
// against the real iu serve (serveMain on port 0) after the seed story,
// on SQLite and, when IU_TEST_POSTGRES is set, on PostgreSQL.
//
// Without Chromium they skip, saying so, so that go test ./... passes on a
// machine with only Go; with IU_TEST_BROWSER set (.ci/run sets it) a
// browser that is missing or cannot start fails them.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/postgres"
	"github.com/iu-engine/iu/sqlite"
)

var screenshots = flag.Bool("screenshots", false, "console browser tests: rewrite docs/console-*.png")

// EnvBrowser names the variable that makes the browser tests fail, not
// skip, when Chromium is missing or cannot start.
const EnvBrowser = "IU_TEST_BROWSER"

// startBrowser starts one headless Chromium for the whole test, kept off
// the network but for the loopback, with a profile of its own.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	required := os.Getenv(EnvBrowser) != ""
	path := os.Getenv("IU_CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path != "" {
			break
		}
		path, _ = exec.LookPath(name)
	}
	if path == "" {
		if required {
			t.Fatalf("%s is set but no Chromium is installed (apt-get install -y chromium, or set IU_CHROMIUM to its path)", EnvBrowser)
		}
		t.Skipf("no Chromium: the console's browser tests are skipped (apt-get install -y chromium; %s=1 makes this a failure)", EnvBrowser)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		if required {
			t.Fatalf("Chromium at %s does not start: %v", path, err)
		}
		t.Skipf("Chromium at %s does not start (%v): the console's browser tests are skipped; %s=1 makes this a failure", path, err, EnvBrowser)
	}
	return bctx
}

// tab is one browser context (its own cookies) with one page, on one
// server. It records every JavaScript error the pages log.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	mu   sync.Mutex
	errs []string
}

func newTab(t *testing.T, browser context.Context, base string) *tab {
	t.Helper()
	tb := &tab{t: t, base: base}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	tb.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.errs {
			t.Errorf("a page logged a JavaScript error: %s", e)
		}
	})
	return tb
}

// listen keeps the errors of the pages' scripts: exceptions, console.error
// calls, and browser log entries about scripts, security (a CSP refusal)
// or the console's own files failing to load. Error statuses of pages the
// test asks for on purpose (403, 404) are not script errors.
func (tb *tab) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Level == cdplog.EntryLevelError && (e.Source != cdplog.EntrySourceNetwork || strings.Contains(e.URL, "/static/")) {
			msg = fmt.Sprintf("log %s: %s %s", e.Source, e.Text, e.URL)
		}
	}
	if msg != "" {
		tb.mu.Lock()
		tb.errs = append(tb.errs, msg)
		tb.mu.Unlock()
	}
}

// do runs actions, failing the test with what was being done.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// open loads a page and checks it for accessibility.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do("open "+path, chromedp.Navigate(tb.base+path), chromedp.WaitReady(chromedp.CSS("body")))
	tb.checkA11y(path)
}

// waitJS waits until the page, whichever it is by then, makes expr true.
// A click that submits a form replaces the page under the check, so the
// check is asked again until it holds, not once.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && (`+expr+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: not after 20 s (last error: %v); the page is %s: %s", what, err, tb.eval(`location.href`), tb.eval(`document.body.innerText.slice(0, 600)`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTitle waits until the page's h1 is title: the page a click led to.
func (tb *tab) waitTitle(title string) {
	tb.t.Helper()
	js, _ := json.Marshal(title)
	tb.waitJS("wait for the page "+title, `document.querySelector("h1") !== null && document.querySelector("h1").textContent.trim() === `+string(js))
	tb.checkA11y(title)
}

// waitText waits until the element sel shows text containing want.
func (tb *tab) waitText(sel, want string) {
	tb.t.Helper()
	s, _ := json.Marshal(sel)
	w, _ := json.Marshal(want)
	tb.waitJS(fmt.Sprintf("wait for %q in %s", want, sel),
		`Array.from(document.querySelectorAll(`+string(s)+`)).some(e => e.textContent.includes(`+string(w)+`))`)
}

// text returns the text of the first element sel matches as it is shown
// (innerText), with runs of white space made one space.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	s, _ := json.Marshal(sel)
	got := tb.eval(`(e => e === null ? "(no element ` + strings.ReplaceAll(sel, `"`, `'`) + `)" : e.innerText)(document.querySelector(` + string(s) + `))`)
	return strings.Join(strings.Fields(got), " ")
}

func (tb *tab) eval(js string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (tb *tab) count(sel string) int {
	tb.t.Helper()
	s, _ := json.Marshal(sel)
	var n int
	fmt.Sscan(tb.eval(`String(document.querySelectorAll(`+string(s)+`).length)`), &n)
	return n
}

// checkA11y asks Chromium's accessibility tree whether every control on
// the page has an accessible name, and the page whether every table has
// header cells and nothing is wider than the window.
func (tb *tab) checkA11y(page string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	res, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (accessibility.GetFullAXTreeResult, error) {
		return cdp.Call(ctx, tg, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	})
	if err != nil {
		tb.t.Fatalf("%s: accessibility tree: %v", page, err)
	}
	controls := map[string]bool{"button": true, "link": true, "textbox": true, "combobox": true, "switch": true,
		"checkbox": true, "searchbox": true, "progressbar": true, "img": true, "table": false}
	for _, n := range res.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var role, name string
		json.Unmarshal(n.Role.Value, &role)
		if n.Name != nil {
			json.Unmarshal(n.Name.Value, &name)
		}
		if controls[role] && strings.TrimSpace(name) == "" {
			tb.t.Errorf("%s: a %s has no accessible name (node %s)", page, role, n.NodeID)
		}
	}
	if bad := tb.eval(`Array.from(document.querySelectorAll("table")).filter(t => t.querySelectorAll("th").length === 0).length + ""`); bad != "0" {
		tb.t.Errorf("%s: %s tables without header cells", page, bad)
	}
	if w := tb.eval(`document.documentElement.scrollWidth > window.innerWidth + 1 ? document.documentElement.scrollWidth + " > " + window.innerWidth : ""`); w != "" {
		tb.t.Errorf("%s: the page is wider than the window (%s px): something does not wrap", page, w)
	}
}

// signIn signs in with secret on the sign-in page, from the keyboard.
func (tb *tab) signIn(secret string) {
	tb.t.Helper()
	tb.open("/signin")
	tb.do("sign in", chromedp.Focus(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), secret+"\r"))
}

// screenshot writes the page, or only the element sel, to docs/name.
func (tb *tab) screenshot(name string, sel ...string) {
	tb.t.Helper()
	if !*screenshots {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	shot := chromedp.FullScreenshot(100)
	if len(sel) > 0 {
		shot = chromedp.Screenshot(chromedp.CSS(sel[0]))
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// consoleFixture is a served store after the seed story, with a token of
// each scope.
type consoleFixture struct {
	srv                   *tserver
	admin, reader, ingest string
	exec                  func(query string) // raw SQL on the store, to tamper with it
}

func newConsoleFixture(t *testing.T, db string) *consoleFixture {
	t.Helper()
	s := startServer(t, db)
	ctx := context.Background()
	if err := runDemo(ctx, io.Discard, s.m.Engine, s.m.Store.Describe()); err != nil {
		t.Fatalf("the seed story: %v", err)
	}
	f := &consoleFixture{srv: s}
	for _, tk := range []struct {
		name  string
		scope iu.Scope
		into  *string
	}{{"ops-admin", iu.ScopeAdmin, &f.admin}, {"ops-reader", iu.ScopeRead, &f.reader}, {"producer", iu.ScopeIngest, &f.ingest}} {
		nt, err := s.m.Engine.CreateToken(ctx, tk.name, tk.scope, "tester")
		if err != nil {
			t.Fatal(err)
		}
		*tk.into = nt.Secret
	}
	switch st := s.m.Store.(type) {
	case *sqlite.Store:
		f.exec = func(q string) {
			if err := sqlite.ExecRaw(ctx, st, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	case *postgres.Store:
		f.exec = func(q string) {
			if err := postgres.ExecRaw(ctx, st, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	default:
		t.Fatalf("no raw SQL for %T", st)
	}
	return f
}

// TestConsoleBrowser clicks through the console as its operators would,
// on each store, in one browser.
func TestConsoleBrowser(t *testing.T) {
	browser := startBrowser(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			f := newConsoleFixture(t, b.db(t))
			t.Run("SignInByScope", func(t *testing.T) { consoleSignIn(t, browser, f) })
			t.Run("Admin", func(t *testing.T) { consoleAdmin(t, browser, f, b.name == "sqlite") })
			// A store of its own: Admin rolled the bulk actor back.
			t.Run("Lifecycle", func(t *testing.T) { consoleLifecycle(t, browser, newConsoleFixture(t, b.db(t)), b.name == "sqlite") })
		})
	}
}

// consoleSignIn: a wrong token and an ingest token are refused; a read
// token sees the pages but no control that changes anything.
func consoleSignIn(t *testing.T, browser context.Context, f *consoleFixture) {
	tb := newTab(t, browser, f.srv.url)
	tb.open("/")
	if !strings.Contains(tb.eval(`location.pathname`), "/signin") {
		t.Fatalf("an anonymous visit to / is at %s, want the sign-in page", tb.eval(`location.href`))
	}
	tb.signIn("iu_not-a-token")
	tb.waitText("[role=alert]", "not valid")
	tb.signIn(f.ingest)
	tb.waitText("[role=alert]", "cannot sign in")
	if tb.count("nav.main") != 0 {
		t.Errorf("refused sign-ins show the navigation bar")
	}

	tb.signIn(f.reader)
	tb.waitTitle("Overview")
	if who := tb.text(".who"); !strings.Contains(who, "ops-reader") || !strings.Contains(who, "read") {
		t.Errorf("signed in as %q, want ops-reader (read)", who)
	}
	for _, page := range []string{"/", "/templates", "/templates/" + wfKey, "/instances", "/events", "/gates", "/verify", "/triggers"} {
		tb.open(page)
		if n := tb.count(`[role=switch], form[method=post]:not([action="/signout"]):not([action="/verify"]) button`); n != 0 {
			t.Errorf("read scope is offered %d controls that change state on %s", n, page)
		}
	}
	nav := tb.text("nav.main")
	for _, want := range []string{"Overview", "Templates", "Instances", "Events", "Gates", "Verify", "Triggers"} {
		if !strings.Contains(nav, want) {
			t.Errorf("the navigation bar %q lacks %s", nav, want)
		}
	}
	if strings.Contains(nav, "Rollback") || strings.Contains(nav, "Tokens") {
		t.Errorf("read scope's navigation bar %q offers admin pages", nav)
	}
	tb.open("/rollback")
	tb.waitText("[role=alert]", "needs an admin token")

	// Sign out: the session ends, and the pages ask to sign in again.
	tb.open("/")
	tb.do("sign out", chromedp.Click(chromedp.CSS(".who button")))
	tb.waitText("[role=status]", "signed out")
	tb.open("/gates")
	if !strings.Contains(tb.eval(`location.pathname`), "/signin") {
		t.Errorf("after sign-out /gates is at %s, want the sign-in page", tb.eval(`location.href`))
	}
}

// consoleAdmin: the overview's numbers after the seed story, a gate
// flipped (audited under the token), a template switched to shadow, an
// instance's page, verify naming a tampered instance, the rollback preview
// and apply, and a form without its CSRF token refused.
func consoleAdmin(t *testing.T, browser context.Context, f *consoleFixture, shoot bool) {
	ctx := context.Background()
	e := f.srv.m.Engine
	// Traffic through the server's intake, for the outcome counts: the
	// gates are off after the seed story, so an event is answered gated.
	emit := func(id string) int {
		r := f.srv.do("POST", "/v1/emit", f.ingest, map[string]string{"Content-Type": "application/json"},
			fmt.Appendf(nil, `{"template":%q,"event":{"id":%q,"type":"hr.employee.hired","source":"console-test"},"actor":"console-test"}`, wfKey, id))
		return r.status
	}
	if st := emit("gated-1"); st != 503 {
		t.Fatalf("an event with the gates off: status %d, want 503 (gated)", st)
	}

	tb := newTab(t, browser, f.srv.url)
	tb.signIn(f.admin)
	tb.waitTitle("Overview")
	row := func(key string) string {
		return tb.text(fmt.Sprintf(`#live table tr:has(a[href="/templates/%s"])`, key))
	}
	if r := row(wfKey); !strings.Contains(r, "live 9 9") {
		t.Errorf("overview row of %s: %q, want live, 9 instances, 9 in the last hour (1 durable + 8 bulk)", wfKey, r)
	}
	if r := row(fileKey); !strings.Contains(r, "live 4 4") {
		t.Errorf("overview row of %s: %q, want live, 4 and 4", fileKey, r)
	}
	if got := tb.text("#outcomes-h + dl"); !strings.Contains(got, "gated 1") || !strings.Contains(got, "ok 0") {
		t.Errorf("outcome counts %q, want the one gated event", got)
	}

	// Turn the composer gate on (at once), then off (after confirming).
	sw := `button[role=switch]:has(code)`
	if n := tb.count(sw); n != 2 {
		t.Fatalf("%d gate switches on the overview, want 2", n)
	}
	composer := fmt.Sprintf(`form:has(input[value=%q]) button[role=switch]`, iu.GateComposer)
	if got := tb.eval(`document.querySelector('` + composer + `').getAttribute("aria-checked")`); got != "false" {
		t.Fatalf("the composer switch is aria-checked=%s, want false after the seed story", got)
	}
	// From the keyboard: focus the switch and press Enter.
	tb.do("turn the composer gate on", chromedp.Focus(chromedp.CSS(composer)), chromedp.KeyEvent("\r"))
	tb.waitText("[role=status]", "Gate "+iu.GateComposer+" is now on")
	if g, _ := e.Gates(ctx); !g.ComposerEnabled {
		t.Errorf("the store's composer gate is off after the switch was turned on")
	}
	tb.do("turn it off", chromedp.Click(chromedp.CSS(composer)))
	tb.waitTitle("Turn off " + iu.GateComposer + "?")
	if g, _ := e.Gates(ctx); !g.ComposerEnabled {
		t.Errorf("the gate was turned off before it was confirmed")
	}
	tb.do("confirm", chromedp.Click(chromedp.CSS(`button.danger`)))
	tb.waitText("[role=status]", "Gate "+iu.GateComposer+" is now off")
	if g, _ := e.Gates(ctx); g.ComposerEnabled {
		t.Errorf("the store's composer gate is on after it was turned off")
	}
	page, err := e.GateAudit(ctx, iu.PageRequest{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	audit := page.Items
	if len(audit) != 2 || audit[0].ChangedBy != "ops-admin" || audit[0].Enabled || audit[1].ChangedBy != "ops-admin" || !audit[1].Enabled {
		t.Errorf("the gate audit's newest entries %+v, want on then off by ops-admin", audit)
	}
	tb.open("/gates")
	if got := tb.text("#audit-h + p + .table-wrap tbody tr"); !strings.Contains(got, iu.GateComposer) || !strings.Contains(got, "ops-admin") {
		t.Errorf("the Gates page's newest audit row %q, want the change by ops-admin", got)
	}

	// Switch the file template to shadow, confirming it.
	tb.open("/templates/" + fileKey)
	tb.do("switch to shadow", chromedp.Click(chromedp.CSS(`button[role=switch]`)))
	tb.waitTitle("Switch " + fileKey + " to shadow?")
	tb.do("confirm", chromedp.Click(chromedp.CSS(`button.danger`)))
	tb.waitText("[role=status]", "is now shadow")
	if tp, err := e.GetTemplate(ctx, fileKey); err != nil || tp.EmitMode != iu.EmitShadow {
		t.Errorf("the store's %s: %v, %v; want shadow", fileKey, tp.EmitMode, err)
	}
	if a, err := e.Audit(ctx, iu.PageRequest{Limit: 1}); err != nil || len(a.Items) != 1 || a.Items[0].Action != iu.AuditEmitMode || a.Items[0].By != "ops-admin" {
		t.Errorf("the audit trail's newest entry: %+v, %v; want the mode change by ops-admin", a.Items, err)
	}
	if n := tb.count(`svg.dag rect`); n != 8 {
		t.Errorf("the template's graph has %d nodes, want its 8 pieces", n)
	}
	if shoot {
		tb.open("/templates/" + wfKey)
		tb.screenshot("console-template.png")
	}

	// An instance's page: lineage, digest, rendered checklist.
	tb.open("/instances?actor=iu-core-25000x-bulk&template=" + wfKey)
	if n := tb.count(`tbody tr`); n != 8 {
		t.Errorf("%d instances of the bulk actor's wf template listed, want 8", n)
	}
	first := tb.eval(`document.querySelector("tbody th a code").textContent`)
	tb.do("open an instance", chromedp.Click(chromedp.CSS(`tbody th a`)))
	tb.waitTitle(first)
	facts := tb.text("#lineage-h + dl")
	for _, want := range []string{wfKey, "iu-core-25000x-bulk", "auto", "bulk.scaleout", "25000b00-"} {
		if !strings.Contains(facts, want) {
			t.Errorf("instance lineage %q lacks %q", facts, want)
		}
	}
	if got := tb.text("#digest-h + dl"); !strings.Contains(got, "matches") {
		t.Errorf("instance digest panel %q, want it to match", got)
	}
	if got := tb.text("pre[aria-labelledby=rendered-h]"); !strings.Contains(got, "1. ") {
		t.Errorf("rendered instance %q, want a numbered checklist", got)
	}
	if shoot {
		tb.screenshot("console-instance.png")
	}

	// Tamper with one instance; verify names it.
	tampered := first
	f.exec("UPDATE iu_piece_collection SET digest = 'sha256:" + strings.Repeat("0", 64) + "' WHERE collection_key = '" + tampered + "'")
	tb.open("/verify")
	tb.do("run verify", chromedp.Click(chromedp.CSS(`form[action="/verify"] button`)))
	tb.waitText("#job [role=status]", "diverges")
	if got := tb.text("#job dl.cards"); !strings.Contains(got, "diverges 1") || !strings.Contains(got, "total 17") {
		t.Errorf("verify says %q, want 1 divergence in 17 instances", got)
	}
	if got := tb.text("#div-h + .table-wrap tbody"); !strings.Contains(got, tampered) || !strings.Contains(got, "stored instance digest") {
		t.Errorf("diverging instances %q, want %s and why", got, tampered)
	}

	// A form whose CSRF token was tampered with is refused, and nothing
	// changes.
	tb.open("/gates")
	tb.eval(`document.querySelectorAll("input[name=csrf]").forEach(i => i.value = "forged"); ""`)
	tb.do("post a forged form", chromedp.Click(chromedp.CSS(composer)))
	tb.waitText("[role=alert]", "did not carry this session's security token")
	if g, _ := e.Gates(ctx); g.ComposerEnabled {
		t.Errorf("a forged form turned the composer gate on")
	}

	// Rollback: preview, then apply after typing the actor's name.
	const actor = "iu-core-25000x-bulk"
	tb.open("/rollback")
	tb.do("preview", chromedp.SendKeys(chromedp.CSS(`input[name=actor]`), actor), chromedp.Click(chromedp.CSS(`form[method=get] button`)))
	tb.waitText("#preview-h", actor)
	if got := tb.text("#preview-h + .table-wrap tbody"); got != "Event-log rows 12 Lineage rows 12 Instances 12 Memberships 96" {
		t.Errorf("rollback preview %q, want 12/12/12/96", got)
	}
	if n := tb.count(`ul[aria-labelledby=keys-h] li`); n != 11 {
		t.Errorf("the preview lists %d instance keys, want the first 10 and a link to more", n)
	}
	if shoot {
		tb.screenshot("console-rollback.png")
	}
	tb.do("apply with a wrong name", chromedp.SendKeys(chromedp.CSS(`#confirm`), "iu-core"), chromedp.Click(chromedp.CSS(`button.danger`)))
	tb.waitText("[role=alert]", "Nothing was deleted")
	if rows, _ := e.Instances(ctx, iu.InstanceFilter{Actor: actor}); len(rows.Items) != 12 {
		t.Errorf("%d instances of %s after a refused apply, want 12", len(rows.Items), actor)
	}
	tb.do("apply", chromedp.SendKeys(chromedp.CSS(`#confirm`), actor), chromedp.Click(chromedp.CSS(`button.danger`)))
	tb.waitText("#applied-h", actor)
	if got := tb.text("#applied-h + .table-wrap tbody"); got != "Event-log rows 12 Lineage rows 12 Instances 12 Memberships 96" {
		t.Errorf("rollback applied %q, want 12/12/12/96", got)
	}
	if rows, _ := e.Instances(ctx, iu.InstanceFilter{Actor: actor}); len(rows.Items) != 0 {
		t.Errorf("%d instances of %s after the rollback, want none", len(rows.Items), actor)
	}

	// The overview after all that, for the screenshot, with some traffic.
	if shoot {
		if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "tester"); err != nil {
			t.Fatal(err)
		}
		// Bursts ten seconds apart, so that the charts have a few bars.
		for burst := range 4 {
			if burst > 0 {
				time.Sleep(iu.ActivityBucket)
			}
			for i := range 10 * (burst + 1) {
				id := fmt.Sprintf("shot-%d-%d", burst, i)
				emit(id)
				if i%3 == 0 {
					emit(id) // a redelivery
				}
			}
		}
		tb.open("/")
		tb.screenshot("console-overview.png")
		tb.do("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		tb.open("/")
		tb.screenshot("console-phone.png")
		tb.do("laptop width", chromedp.EmulateViewport(1280, 900))
	}
	tb.do("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, page := range []string{"/", "/templates/" + wfKey, "/instances", "/gates", "/rollback", "/tokens"} {
		tb.open(page) // checkA11y fails a page wider than a phone
	}
}

// consoleLifecycle: an instance compensated from its page (preview, typed
// confirmation, apply; then its history shows it, under the token's
// name), the instances of onboarding/v2 migrated to v3 from the template's
// page (preview with the graph difference, then apply with progress), and
// read scope seeing the history but no control.
func consoleLifecycle(t *testing.T, browser context.Context, f *consoleFixture, shoot bool) {
	ctx := context.Background()
	e := f.srv.m.Engine
	const wf3Key = "tpl:wf:onboarding/v3"
	onTemplate := func(key string) int {
		t.Helper()
		p, err := e.Instances(ctx, iu.InstanceFilter{TemplateKey: key, PageRequest: iu.PageRequest{Limit: iu.MaxPageSize}})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	page, err := e.Instances(ctx, iu.InstanceFilter{Actor: "iu-core-25000x-bulk", TemplateKey: wfKey, PageRequest: iu.PageRequest{Limit: 2}})
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("instances of the bulk actor: %+v, %v", page.Items, err)
	}
	key, other := page.Items[0].InstanceKey, page.Items[1].InstanceKey

	tb := newTab(t, browser, f.srv.url)
	tb.signIn(f.admin)
	tb.waitTitle("Overview")

	// The instance's page: its history, and the Compensate form.
	tb.open("/instances/" + key)
	if got := tb.text("#history-h + .table-wrap tbody"); !strings.Contains(got, "created") || !strings.Contains(got, "iu-core-25000x-bulk") {
		t.Errorf("the history of %s: %q, want its making by an event", key, got)
	}
	tb.do("preview the compensation", chromedp.SendKeys(chromedp.CSS("#reason"), "hired by mistake"),
		chromedp.Click(chromedp.CSS(`form[action="/compensate"] button`)))
	tb.waitTitle("Compensate " + key)
	if got := tb.text("#preview-h + dl + .table-wrap tbody"); got != "Lineage rows 1 Instances 1 Memberships 8" {
		t.Errorf("the compensation preview %q, want 1/1/8", got)
	}
	if got := tb.text("#log-entry"); !strings.Contains(got, "stays, with the status compensated") {
		t.Errorf("the preview says of the log entry %q", got)
	}
	if shoot {
		tb.screenshot("console-compensate.png", "main")
	}
	if _, err := e.GetInstance(ctx, key); err != nil {
		t.Fatalf("the preview compensated %s: %v", key, err)
	}
	tb.do("apply with a wrong key", chromedp.SendKeys(chromedp.CSS("#confirm"), "tpl-inst:auto:nothing"), chromedp.Click(chromedp.CSS("button.danger")))
	tb.waitText("[role=alert]", "Nothing was compensated")
	if _, err := e.GetInstance(ctx, key); err != nil {
		t.Fatalf("a refused apply compensated %s: %v", key, err)
	}
	tb.do("apply", chromedp.SendKeys(chromedp.CSS("#confirm"), key), chromedp.Click(chromedp.CSS("button.danger")))
	tb.waitText("#applied-h", key)
	if got := tb.text("#applied-h + .table-wrap tbody"); got != "Lineage rows 1 Instances 1 Memberships 8" {
		t.Errorf("the compensation applied %q, want 1/1/8", got)
	}
	if _, err := e.GetInstance(ctx, key); iu.ErrorCode(err) != iu.CodeNotFound {
		t.Errorf("%s after the compensation: %v, want not found", key, err)
	}
	h, err := e.History(ctx, key)
	if err != nil || len(h) != 2 || h[1].What != "compensated" || h[1].By != "ops-admin" || h[1].Claimed != "" {
		t.Errorf("the history in the store: %+v, %v; want created, then compensated by ops-admin", h, err)
	}
	// Its page is its history now.
	tb.do("open the instance's page", chromedp.Click(chromedp.CSS(`main p:last-of-type a[href^="/instances/"]`)))
	tb.waitTitle(key)
	tb.waitText("main p.lead", "it was compensated")
	if got := tb.text("#history-h + .table-wrap tbody tr:last-child"); !strings.Contains(got, "compensated") || !strings.Contains(got, "ops-admin") || !strings.Contains(got, "hired by mistake") {
		t.Errorf("the last history row %q, want the compensation by ops-admin with its reason", got)
	}
	// Not Compensate again: only a release of its event's key, still
	// claimed.
	if n := tb.count(`#compensate-h`); n != 0 {
		t.Errorf("a compensated instance is offered Compensate again")
	}
	if got := tb.text("#release-h"); got != "Release the event's key" {
		t.Errorf("a compensated instance whose key is claimed offers %q, want the release of its event's key", got)
	}

	// Migrate the onboarding checklist's instances to v3.
	publishExample(t, e, "../../examples/lifecycle/onboarding-v3.yaml")
	// The seed story's v2 instances: auto ones (listed by template) and
	// three composed by hand (not listed: they have no lineage).
	auto := onTemplate(wfKey)
	dry, err := e.Migrate(iu.NewContextWithPrincipal(ctx, "tester"), iu.MigrateRequest{From: wfKey, To: wf3Key}, nil)
	if err != nil || auto == 0 || dry.Instances != int64(auto)+3 {
		t.Fatalf("v2 has %d auto instances and the dry run counts %+v, %v; want them and the 3 manual ones", auto, dry, err)
	}
	n := dry.Instances
	tb.open("/templates/" + wfKey)
	if got := tb.eval(`document.querySelector('form[action="/migrate"] select').value`); got != wf3Key {
		t.Errorf("the version offered is %q, want %s", got, wf3Key)
	}
	tb.do("preview the migration", chromedp.Click(chromedp.CSS(`form[action="/migrate"] button`)))
	tb.waitTitle("Migrate " + wfKey)
	if got := tb.text("#preview-h + dl.cards"); !strings.Contains(got, fmt.Sprintf("instances to move %d", n)) || !strings.Contains(got, "slots added 1") || !strings.Contains(got, "slots changed 1") {
		t.Errorf("the migration preview %q, want %d instances, 1 slot added, 1 changed", got, n)
	}
	diff := tb.text("#diff-h + .table-wrap tbody")
	for _, want := range []string{"security-training added", "security and privacy training", "first-day changed: its edges", "after laptop, security-training, buddy"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the graph difference %q lacks %q", diff, want)
		}
	}
	if shoot {
		tb.screenshot("console-migrate.png", "main")
	}
	if got := onTemplate(wfKey); got != auto {
		t.Fatalf("the preview moved instances: %d on v2, was %d", got, auto)
	}
	tb.do("apply unconfirmed", chromedp.Evaluate[chromedp.Void](`document.querySelector("#confirm").required = false`), chromedp.Click(chromedp.CSS("button.danger")))
	tb.waitText("[role=alert]", "Nothing was moved")
	tb.do("apply", chromedp.Click(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("button.danger")))
	tb.waitTitle("Migrate " + wfKey + " to " + wf3Key)
	tb.waitText("#job p.ok", fmt.Sprintf("%d instances moved to %s", n, wf3Key))
	if got := tb.text("#job dl.cards"); !strings.Contains(got, fmt.Sprintf("moved %d", n)) {
		t.Errorf("the migration's result %q, want %d moved", got, n)
	}
	job := tb.eval(`location.href`)
	if onTemplate(wfKey) != 0 || onTemplate(wf3Key) != auto {
		t.Errorf("after the migration %d on v2 and %d on v3, want 0 and %d", onTemplate(wfKey), onTemplate(wf3Key), auto)
	}
	// A reload shows the same job; it does not migrate again.
	tb.do("reload", chromedp.Reload())
	tb.waitText("#job p.ok", "instances moved")
	if got := tb.eval(`location.href`); got != job {
		t.Errorf("after a reload the page is %s, want %s", got, job)
	}
	h, err = e.History(ctx, other)
	if err != nil || len(h) != 2 || h[1].What != "migrated" || h[1].By != "ops-admin" || h[1].TemplateKey != wf3Key {
		t.Errorf("the history of a migrated instance: %+v, %v; want one migration to v3 by ops-admin", h, err)
	}
	if rep, err := e.Verify(ctx, ""); err != nil || !rep.OK() {
		t.Errorf("verify after the migration: %+v, %v", rep, err)
	}
	tb.open("/instances/" + other)
	if got := tb.text("#history-h + .table-wrap tbody tr:last-child"); !strings.Contains(got, "migrated") || !strings.Contains(got, "ops-admin") || !strings.Contains(got, wf3Key) {
		t.Errorf("the migrated instance's last history row %q", got)
	}
	if got := tb.text("#lineage-h + dl"); !strings.Contains(got, wf3Key) {
		t.Errorf("the migrated instance's lineage %q, want %s", got, wf3Key)
	}

	// At a phone's width the new pages fit.
	tb.do("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, p := range []string{"/instances/" + other, "/instances/" + key, "/compensate?key=" + other, "/templates/" + wf3Key, "/migrate?from=" + wf3Key + "&to=" + wfKey, job[len(f.srv.url):]} {
		tb.open(p)
	}

	// Read scope sees the history, and no control.
	rd := newTab(t, browser, f.srv.url)
	rd.signIn(f.reader)
	rd.waitTitle("Overview")
	for _, p := range []string{"/instances/" + other, "/instances/" + key, "/templates/" + wf3Key, "/templates/" + wfKey} {
		rd.open(p)
		if n := rd.count(`form[action="/compensate"], form[action="/migrate"], form[method=post]:not([action="/signout"]) button`); n != 0 {
			t.Errorf("read scope is offered %d lifecycle controls on %s", n, p)
		}
	}
	rd.open("/instances/" + other)
	if n := rd.count("#history-h + .table-wrap tbody tr"); n != 2 {
		t.Errorf("read scope sees %d history rows, want 2", n)
	}
	rd.open("/compensate?key=" + other)
	rd.waitText("[role=alert]", "needs an admin token")
}

// publishExample publishes a template file of the repository.
func publishExample(t *testing.T, e *iu.Engine, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := iu.ParseTemplateFile(name, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PublishTemplates(context.Background(), []*iu.Template{tp}, "tester"); err != nil {
		t.Fatal(err)
	}
}
