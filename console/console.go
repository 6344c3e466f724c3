// Package console is iu's ops console: server-rendered HTML pages over the
// engine, for the people who run iu. It is an http.Handler that iu serve
// mounts beside its API; it signs people in with the API's tokens, keeps
// sessions in memory and records every change under the signed-in
// token's name.
//
// Each page has one handler, which asks one data function for what the
// page shows (tested without a browser) and hands it to a template that
// only lays it out. Everything it serves is embedded: no CDN, no build
// step, one small script of its own for the pages that refresh by
// themselves.
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/iu-engine/iu"
)

// Defaults of Options.
const (
	DefaultSessionIdle  = time.Hour
	DefaultSessionMax   = 12 * time.Hour
	DefaultTokenRecheck = 2 * time.Second
	DefaultRefresh      = 5 * time.Second
	DefaultSummaryTTL   = 5 * time.Second
)

// Options tune a Console. The zero value is sensible.
type Options struct {
	// Activity returns what the server's intakes answered lately (its
	// batcher's Activity); nil leaves the overview without a chart.
	Activity func() iu.ActivitySnapshot
	// Log receives errors and sign-ins; nil logs nothing.
	Log *slog.Logger
	// SessionIdle ends a session nobody used for this long (default 1 h);
	// SessionMax ends any session this long after sign-in (default 12 h).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// TokenRecheck bounds how long a revoked token's sessions live on
	// (default 2 s): the tokens are read again at most this often.
	TokenRecheck time.Duration
	// Refresh is how often the overview refreshes itself (default 5 s).
	Refresh time.Duration
	// SummaryTTL is how long the per-template counts are answered from the
	// last read of them (default 5 s): counting a million instances is not
	// done for every page.
	SummaryTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console serves the ops console. Create it with New.
type Console struct {
	e          *iu.Engine
	opt        Options
	log        *slog.Logger
	mux        *http.ServeMux
	pages      pageSet
	sessions   sessions
	tokens     tokenCheck
	jobs       verifyJobs
	migrations migrateJobs
	summary    summaryCache
}

// New returns a console over e.
func New(e *iu.Engine, opt Options) *Console {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opt.SessionIdle, DefaultSessionIdle)
	def(&opt.SessionMax, DefaultSessionMax)
	def(&opt.TokenRecheck, DefaultTokenRecheck)
	def(&opt.Refresh, DefaultRefresh)
	def(&opt.SummaryTTL, DefaultSummaryTTL)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{e: e, opt: opt, log: log, pages: mustParsePages()}
	c.sessions.init(opt)
	c.tokens.ttl = opt.TokenRecheck
	c.summary.ttl = opt.SummaryTTL
	c.jobs.init()
	c.migrations.init()
	c.mux = http.NewServeMux()
	for _, rt := range c.routes() {
		c.mux.Handle(rt.method+" "+rt.pattern, c.wrap(rt))
	}
	return c
}

// access is who may use a route.
type access int

const (
	public    access = iota // anyone: sign-in, static files
	signedIn                // a read or admin session
	adminOnly               // an admin session
)

// route is one entry of the console's router. Every POST route changes
// state or starts work and is checked for the session's CSRF token; GET
// routes change nothing.
type route struct {
	method  string
	pattern string
	access  access
	handle  func(*request) error
}

func (c *Console) routes() []route {
	return []route{
		{"GET", "/static/", public, c.handleStatic},
		{"GET", "/signin", public, c.handleSignInPage},
		{"POST", "/signin", public, c.handleSignIn},
		{"POST", "/signout", signedIn, c.handleSignOut},

		{"GET", "/{$}", signedIn, c.handleOverview},
		{"GET", "/live/overview", signedIn, c.handleOverviewLive},

		{"GET", "/templates", signedIn, c.handleTemplates},
		{"GET", "/templates/{key...}", signedIn, c.handleTemplate},
		{"POST", "/templates/mode", adminOnly, c.handleSetMode},
		{"GET", "/migrate", adminOnly, c.handleMigrate},
		{"GET", "/live/migrate", adminOnly, c.handleMigrateLive},
		{"POST", "/migrate", adminOnly, c.handleApplyMigrate},

		{"GET", "/instances", signedIn, c.handleInstances},
		{"GET", "/instances/{key...}", signedIn, c.handleInstance},
		{"GET", "/compensate", adminOnly, c.handleCompensate},
		{"POST", "/compensate", adminOnly, c.handleApplyCompensate},

		{"GET", "/events", signedIn, c.handleEvents},

		{"GET", "/gates", signedIn, c.handleGates},
		{"GET", "/audit", signedIn, c.handleAudit},
		{"POST", "/gates", adminOnly, c.handleSetGate},

		{"GET", "/verify", signedIn, c.handleVerify},
		{"GET", "/live/verify", signedIn, c.handleVerifyLive},
		{"POST", "/verify", signedIn, c.handleStartVerify},

		{"GET", "/rollback", adminOnly, c.handleRollback},
		{"POST", "/rollback", adminOnly, c.handleApplyRollback},

		{"GET", "/triggers", signedIn, c.handleTriggers},
		{"POST", "/triggers", adminOnly, c.handleAddTrigger},
		{"POST", "/triggers/remove", adminOnly, c.handleRemoveTrigger},

		{"GET", "/tokens", adminOnly, c.handleTokens},
		{"POST", "/tokens", adminOnly, c.handleCreateToken},
		{"POST", "/tokens/revoke", adminOnly, c.handleRevokeToken},
	}
}

// request is one request as the handlers see it.
type request struct {
	w  http.ResponseWriter
	r  *http.Request
	s  *session // nil on public routes
	id string
	rt *route
}

// ctx is the request's context with the signed-in token as the principal:
// the engine records every change made through it under the token's name.
func (q *request) ctx() context.Context {
	if q.s == nil {
		return q.r.Context()
	}
	return iu.NewContextWithPrincipal(q.r.Context(), q.s.tok.Name)
}

// actor is the name changes are attributed to: the signed-in token's.
func (q *request) actor() string { return q.s.tok.Name }

// Request ids tie an error a person reports to the line in the log.
var reqCounter atomic.Uint64

// maxFormBytes bounds a POSTed form: the largest is a trigger's.
const maxFormBytes = 64 << 10

// ServeHTTP routes to the page, or answers 404 or 405 with a page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if _, pattern := c.mux.Handler(r); pattern != "" {
		c.mux.ServeHTTP(w, r)
		return
	}
	q := &request{w: w, r: r, id: newRequestID()}
	q.s, _ = c.session(q) // for the navigation bar, if signed in
	// The mux knows whether the path exists with another method.
	rec := &statusRecorder{header: http.Header{}}
	h, _ := c.mux.Handler(r)
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		c.fail(q, httpError(http.StatusMethodNotAllowed, "%s is not allowed on %s: pages change nothing when they are only visited; use the page's buttons", r.Method, r.URL.Path))
		return
	}
	c.fail(q, httpError(http.StatusNotFound, "There is no page at %s.", r.URL.Path))
}

func newRequestID() string { return "c" + strconv.FormatUint(reqCounter.Add(1), 36) }

// securityHeaders keep the pages from being framed, sniffed or made to run
// anything but the console's own script and style.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// wrap is the middleware around every route: session and scope, the CSRF
// check of POSTs, panic recovery and error pages.
func (c *Console) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := &request{w: w, r: r, id: newRequestID(), rt: &rt}
		start := c.opt.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				c.log.Error("console panic", "request_id", q.id, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				c.fail(q, fmt.Errorf("panic: %v", p))
			}
			c.log.Debug("console request", "request_id", q.id, "method", r.Method, "path", r.URL.Path, "took", c.opt.Now().Sub(start))
		}()
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		if rt.access != public {
			s, err := c.session(q)
			if err != nil {
				c.fail(q, err)
				return
			}
			if s == nil {
				c.needSignIn(q)
				return
			}
			q.s = s
			if rt.access == adminOnly && s.tok.Scope != iu.ScopeAdmin {
				c.fail(q, httpError(http.StatusForbidden, "This needs an admin token; you are signed in as %s with scope %s, which may look but not change anything.", s.tok.Name, s.tok.Scope))
				return
			}
			if r.Method == http.MethodPost {
				if err := c.checkCSRF(q); err != nil {
					c.fail(q, err)
					return
				}
			}
		}
		if err := rt.handle(q); err != nil {
			c.fail(q, err)
		}
	})
}

// needSignIn sends a person to the sign-in page and back afterwards; a
// script refreshing part of a page gets a 401 it understands.
func (c *Console) needSignIn(q *request) {
	if q.r.Method == http.MethodGet && q.r.Header.Get("X-Requested-With") == "" {
		http.Redirect(q.w, q.r, "/signin?next="+urlQueryEscape(q.r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	c.fail(q, httpError(http.StatusUnauthorized, "You are not signed in, or your session has ended: sign in again."))
}

// statusError is an error with the HTTP status of its page.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func httpError(status int, format string, args ...any) error {
	return &statusError{status, fmt.Sprintf(format, args...)}
}

// statusOf maps an error to the status of its page: the same table as the
// API's, for errors of the engine.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	switch iu.ErrorCode(err) {
	case iu.CodeInvalid:
		return http.StatusBadRequest
	case iu.CodeNotFound:
		return http.StatusNotFound
	case iu.CodeConflict, iu.CodeGateClosed:
		return http.StatusConflict
	case iu.CodeUnavailable:
		return http.StatusServiceUnavailable
	case iu.CodeUnauthorized:
		return http.StatusUnauthorized
	case iu.CodeForbidden:
		return http.StatusForbidden
	case iu.CodeUnmatched:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// publicMessage is what a page says about err. Messages of bad input are
// written for people and shown as they are; a store in trouble or a bug
// is described in words, its details (paths, hosts, driver texts) going
// to the log only.
func publicMessage(err error, id string) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.msg
	}
	switch iu.ErrorCode(err) {
	case iu.CodeUnavailable:
		return fmt.Sprintf("The store is unavailable or busy: try again in a moment (request %s).", id)
	case iu.CodeInternal:
		return fmt.Sprintf("Something went wrong on the server (request %s); the server's log has the details.", id)
	}
	var ie *iu.Error
	if errors.As(err, &ie) {
		return ie.Message
	}
	return err.Error()
}

// fail answers err with an error page, or a bare message for a script.
func (c *Console) fail(q *request, err error) {
	status := statusOf(err)
	if status >= 500 {
		c.log.Error("console error", "request_id", q.id, "path", q.r.URL.Path, "err", err)
	}
	msg := publicMessage(err, q.id)
	if q.r.Header.Get("X-Requested-With") != "" {
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		q.w.WriteHeader(status)
		fmt.Fprintln(q.w, msg)
		return
	}
	c.render(q, status, "error", layout{Title: http.StatusText(status), Error: msg}, nil)
}

// statusRecorder captures what the mux's fallback handler would answer.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(code int) { r.status = code }
