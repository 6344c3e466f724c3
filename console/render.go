package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// layout is what every page's frame shows around the page's own data.
type layout struct {
	Title   string
	Nav     string // the navigation entry that is the current page
	Error   string // shown as an alert above the page
	Notice  string // shown as a status message above the page
	Secret  string // a token just created, shown once
	Session *sessionView
	Refresh int // seconds between refreshes of the page's live part
	Data    any
}

// sessionView is what a page may know of the session.
type sessionView struct {
	Name  string
	Scope iu.Scope
	Admin bool
	CSRF  string
}

// pageSet holds each page's template: the layout, the shared blocks and
// the page's own file, parsed together.
type pageSet map[string]*template.Template

// pageNames are the files in templates/ besides layout.html and
// blocks.html; each defines "main", and those that refresh a part of
// themselves define "live" too.
var pageNames = []string{
	"error", "signin", "overview", "templates", "template", "instances", "instance",
	"events", "gates", "audit", "confirm", "verify", "rollback", "triggers", "tokens",
	"compensate", "migrate",
}

func mustParsePages() pageSet {
	ps := pageSet{}
	for _, name := range pageNames {
		t := template.New("layout.html").Funcs(funcs)
		t = template.Must(t.ParseFS(templateFS, "templates/layout.html", "templates/blocks.html", "templates/"+name+".html"))
		ps[name] = t
	}
	return ps
}

// render writes a whole page. It is executed into a buffer first, so that
// a failing template gives an error page, never half a page.
func (c *Console) render(q *request, status int, name string, l layout, data any) {
	l.Data = data
	if l.Nav == "" {
		l.Nav = name
	}
	if q.s != nil {
		l.Session = &sessionView{Name: q.s.tok.Name, Scope: q.s.tok.Scope, Admin: q.s.tok.Scope == iu.ScopeAdmin, CSRF: q.s.csrf}
		if q.r.Method == http.MethodGet && status < 300 {
			flash, secret := c.sessions.takeFlash(q.s)
			if l.Notice == "" {
				l.Notice = flash
			}
			l.Secret = secret
		}
	}
	c.execute(q, status, name, "layout.html", l)
}

// show renders a page whose data function may have failed: the page is
// shown with what was gathered and the error as a message above it, with
// the error's status.
func (c *Console) show(q *request, name string, l layout, data any, err error) error {
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
		l.Error = publicMessage(err, q.id)
		if status >= 500 {
			c.log.Error("console error", "request_id", q.id, "path", q.r.URL.Path, "err", err)
		}
	}
	c.render(q, status, name, l, data)
	return nil
}

// renderLive writes only the live part of a page, for the script that
// refreshes it.
func (c *Console) renderLive(q *request, name string, l layout, data any) {
	l.Data = data
	if q.s != nil {
		l.Session = &sessionView{Name: q.s.tok.Name, Scope: q.s.tok.Scope, Admin: q.s.tok.Scope == iu.ScopeAdmin, CSRF: q.s.csrf}
	}
	c.execute(q, http.StatusOK, name, "live", l)
}

func (c *Console) execute(q *request, status int, name, block string, l layout) {
	t, ok := c.pages[name]
	if !ok {
		panic("console: no page template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, block, l); err != nil {
		c.log.Error("console template", "request_id", q.id, "page", name, "err", err)
		if name == "error" {
			http.Error(q.w, "internal error", http.StatusInternalServerError)
			return
		}
		c.execute(q, http.StatusInternalServerError, "error", "layout.html",
			layout{Title: "Internal Server Error", Error: publicMessage(err, q.id), Session: l.Session})
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	q.w.WriteHeader(status)
	q.w.Write(buf.Bytes())
}

// redirect ends a POST that changed something: the next page shows notice
// once, and reloading it does not post again.
func (c *Console) redirect(q *request, to, notice string) error {
	if notice != "" {
		c.sessions.setFlash(q.s, notice)
	}
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
	return nil
}

// static is one embedded asset.
type static struct {
	body  []byte
	ctype string
	etag  string
}

var statics, staticVersion = loadStatics()

func loadStatics() (map[string]static, map[string]string) {
	m, v := map[string]static{}, map[string]string{}
	fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "static/")
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		m[name] = static{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		v[name] = hex.EncodeToString(sum[:6])
		return nil
	})
	return m, v
}

// handleStatic serves the embedded assets. Their URLs carry a hash of
// their content, so they may be cached for long.
func (c *Console) handleStatic(q *request) error {
	name := strings.TrimPrefix(q.r.URL.Path, "/static/")
	s, ok := statics[name]
	if !ok {
		return httpError(http.StatusNotFound, "There is no file %s.", q.r.URL.Path)
	}
	h := q.w.Header()
	h.Set("Content-Type", s.ctype)
	h.Set("ETag", s.etag)
	h.Set("Cache-Control", "public, max-age=86400")
	if q.r.Header.Get("If-None-Match") == s.etag {
		q.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	q.w.Write(s.body)
	return nil
}

var funcs = template.FuncMap{
	"static": func(name string) string { return "/static/" + name + "?v=" + staticVersion[name] },
	"when":   when,
	"iso":    iso,
	"num":    num,
	"short":  short,
	"dur":    dur,
	"rate":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"add":    func(a, b int) int { return a + b },
	"path":   func(s string) string { return (&urlPath{s}).String() },
}

// asTime accepts time.Time and anything that carries one (iu.Time).
func asTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		return *t, t != nil && !t.IsZero()
	case interface{ UTC() time.Time }:
		u := t.UTC()
		return u, !u.IsZero()
	}
	return time.Time{}, false
}

// when writes a time as iu does everywhere: UTC, milliseconds.
func when(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// iso writes a time for a <time datetime=...> attribute.
func iso(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// num writes an integer with thousands separators: 1,000,000.
func num(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint32:
		n = int64(x)
	default:
		return fmt.Sprint(v)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// short abbreviates a digest to its first 12 hex digits; pages show the
// whole digest in a title or beside it.
func short(v any) string {
	s := fmt.Sprint(v)
	if rest, ok := strings.CutPrefix(s, "sha256:"); ok && len(rest) > 12 {
		return "sha256:" + rest[:12] + "…"
	}
	return s
}

// dur writes a latency for people: 840 µs, 4.2 ms, 1.3 s.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

// urlPath escapes a key for use in a path (keys hold ':' and '/', which
// may stay; anything else unusual is escaped).
type urlPath struct{ s string }

func (p *urlPath) String() string {
	var b strings.Builder
	for i := 0; i < len(p.s); i++ {
		ch := p.s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-._~:/@!$&'()*+,;=", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	return b.String()
}
