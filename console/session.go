package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/iu-engine/iu"
)

// Cookie names. The session cookie holds only a random id; the sign-in
// cookie pairs with the sign-in form's CSRF field.
const (
	sessionCookie = "iu_console"
	signinCookie  = "iu_console_signin"
)

// maxSessions bounds the sessions kept in memory; past it the one used
// least recently is ended.
const maxSessions = 10000

// session is one signed-in person. It holds the token as stored (name,
// scope, hash), never its secret.
type session struct {
	id      string
	tok     iu.Token
	csrf    string
	created time.Time
	seen    time.Time
	flash   string // a notice shown once, on the next page
	secret  string // a token just created, shown once
}

type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration
	max  time.Duration
	now  func() time.Time
}

func (ss *sessions) init(opt Options) {
	ss.m = make(map[string]*session)
	ss.idle, ss.max, ss.now = opt.SessionIdle, opt.SessionMax, opt.Now
}

// randomID returns 256 random bits, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > ss.idle || now.Sub(s.created) > ss.max
}

// start makes a session for tok.
func (ss *sessions) start(tok iu.Token) *session {
	now := ss.now()
	s := &session{id: randomID(), tok: tok, csrf: randomID(), created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		var oldest *session
		for id, o := range ss.m {
			if ss.expired(o, now) {
				delete(ss.m, id)
			} else if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		if len(ss.m) >= maxSessions && oldest != nil {
			delete(ss.m, oldest.id)
		}
	}
	ss.m[s.id] = s
	return s
}

// get returns the live session with id, or nil, and marks it used.
func (ss *sessions) get(id string) *session {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.m, id)
		return nil
	}
	s.seen = now
	return s
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

// takeFlash returns the session's one-time notice and secret and forgets
// them.
func (ss *sessions) takeFlash(s *session) (flash, secret string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	flash, secret = s.flash, s.secret
	s.flash, s.secret = "", ""
	return flash, secret
}

func (ss *sessions) setFlash(s *session, flash string) {
	ss.mu.Lock()
	s.flash = flash
	ss.mu.Unlock()
}

// tokenCheck tells whether a signed-in token still stands: it reads every
// token at most once per ttl, so that a revocation (made here, through
// the API, or by another server on the same database) ends the token's
// sessions within ttl, at the cost of one small read per ttl.
type tokenCheck struct {
	ttl     time.Duration
	mu      sync.Mutex
	byName  map[string]iu.Token
	fetched time.Time
}

// live reports whether tok is still a live token with the same secret.
func (tc *tokenCheck) live(ctx context.Context, e *iu.Engine, tok iu.Token, now time.Time) (bool, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.byName == nil || now.Sub(tc.fetched) >= tc.ttl || now.Before(tc.fetched) {
		all, err := listTokens(ctx, e)
		if err != nil {
			return false, err
		}
		tc.byName = make(map[string]iu.Token, len(all))
		for _, t := range all {
			tc.byName[t.Name] = t
		}
		tc.fetched = now
	}
	t, ok := tc.byName[tok.Name]
	return ok && !t.Revoked() && iu.SameHash(t.Hash, tok.Hash), nil
}

// forget makes the next check read the tokens again (after a revocation
// made here).
func (tc *tokenCheck) forget() {
	tc.mu.Lock()
	tc.byName = nil
	tc.mu.Unlock()
}

// session returns the request's live session, or nil when there is none,
// it expired, or its token was revoked. An error means the store could
// not be asked.
func (c *Console) session(q *request) (*session, error) {
	ck, err := q.r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	s := c.sessions.get(ck.Value)
	if s == nil {
		return nil, nil
	}
	ok, err := c.tokens.live(q.r.Context(), c.e, s.tok, c.opt.Now())
	if err != nil {
		return nil, err
	}
	if !ok {
		c.sessions.end(s.id)
		c.log.Info("console session ended: its token was revoked", "token", s.tok.Name)
		return nil, nil
	}
	return s, nil
}

// secure reports whether the page reached the browser over TLS, directly
// or through a proxy that says so: then cookies are Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: int(maxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
}

// sameText compares secrets in constant time.
func sameText(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// checkCSRF refuses a POST whose form lacks the session's CSRF token, or
// that a browser says came from another site.
func (c *Console) checkCSRF(q *request) error {
	if crossSite(q.r) {
		return errCSRF
	}
	if !sameText(q.r.PostFormValue("csrf"), q.s.csrf) {
		return errCSRF
	}
	return nil
}

var errCSRF = httpError(http.StatusForbidden, "The form was refused: it did not carry this session's security token (it is stale, or came from another site). Nothing was changed; reload the page and try again.")

// crossSite reports whether the browser says the request came from
// another origin. Browsers that send neither header are judged by the
// CSRF token alone.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return true
		}
	}
	return false
}

// localPath returns next if it is a path on this site, else "/": the
// sign-in page must not send anyone elsewhere.
func localPath(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// signInPage is what the sign-in page shows.
type signInPage struct {
	Next  string
	CSRF  string
	Token string // never echoed; kept empty
}

func (c *Console) handleSignInPage(q *request) error {
	if s, err := c.session(q); err == nil && s != nil {
		http.Redirect(q.w, q.r, localPath(q.r.URL.Query().Get("next")), http.StatusSeeOther)
		return nil
	}
	notice := ""
	if q.r.URL.Query().Has("out") {
		notice = "You are signed out."
	}
	c.showSignIn(q, http.StatusOK, "", notice)
	return nil
}

// showSignIn renders the sign-in form with a fresh CSRF pair: one in the
// form, one in a cookie only this site can send.
func (c *Console) showSignIn(q *request, status int, msg, notice string) {
	tok := randomID()
	setCookie(q.w, q.r, signinCookie, tok, "/signin", time.Hour)
	next := q.r.URL.Query().Get("next")
	if q.r.Method == http.MethodPost {
		next = q.r.PostFormValue("next")
	}
	c.render(q, status, "signin", layout{Title: "Sign in", Error: msg, Notice: notice}, signInPage{Next: localPath(next), CSRF: tok})
}

func (c *Console) handleSignIn(q *request) error {
	ck, err := q.r.Cookie(signinCookie)
	if err != nil || crossSite(q.r) || !sameText(ck.Value, q.r.PostFormValue("csrf")) {
		c.showSignIn(q, http.StatusForbidden, "The sign-in form was stale or came from another site: try again.", "")
		return nil
	}
	secret := strings.TrimSpace(q.r.PostFormValue("token"))
	if secret == "" {
		c.showSignIn(q, http.StatusUnauthorized, "Enter a token: the secret that iu token create printed, starting iu_.", "")
		return nil
	}
	tok, err := c.e.Authenticate(q.r.Context(), secret)
	switch {
	case iu.ErrorCode(err) == iu.CodeUnauthorized:
		c.log.Warn("console sign-in refused", "reason", "invalid or revoked token", "remote", q.r.RemoteAddr)
		c.showSignIn(q, http.StatusUnauthorized, "That token is not valid: it is unknown or revoked.", "")
		return nil
	case err != nil:
		return err
	case tok.Scope != iu.ScopeRead && tok.Scope != iu.ScopeAdmin:
		c.log.Warn("console sign-in refused", "token", tok.Name, "scope", tok.Scope, "remote", q.r.RemoteAddr)
		c.showSignIn(q, http.StatusForbidden, "Token "+tok.Name+" has scope "+string(tok.Scope)+": it is for producers posting events and cannot sign in. Use a read or admin token.", "")
		return nil
	}
	if old, err := q.r.Cookie(sessionCookie); err == nil {
		c.sessions.end(old.Value) // a new sign-in replaces the old session
	}
	s := c.sessions.start(tok)
	setCookie(q.w, q.r, sessionCookie, s.id, "/", c.opt.SessionMax)
	clearCookie(q.w, q.r, signinCookie, "/signin")
	c.log.Info("console sign-in", "token", tok.Name, "scope", tok.Scope, "remote", q.r.RemoteAddr)
	http.Redirect(q.w, q.r, localPath(q.r.PostFormValue("next")), http.StatusSeeOther)
	return nil
}

func (c *Console) handleSignOut(q *request) error {
	c.sessions.end(q.s.id)
	clearCookie(q.w, q.r, sessionCookie, "/")
	c.log.Info("console sign-out", "token", q.s.tok.Name)
	http.Redirect(q.w, q.r, "/signin?out=1", http.StatusSeeOther)
	return nil
}
