package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	nethttp "net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

// Defaults of Config.
const (
	DefaultMaxEventBytes = 1 << 20  // a POST /v1/events body
	DefaultMaxBodyBytes  = 16 << 20 // other JSON bodies (a publish of large templates)
	DefaultMaxBulkBytes  = 1 << 30  // a POST /v1/bulk NDJSON stream
	DefaultRetryAfter    = 5 * time.Second
	DefaultCacheTTL      = time.Second
	DefaultBulkTimeout   = time.Hour
)

// Config tunes a Server. The zero value is sensible.
type Config struct {
	// Addr is host:port to listen on (port 0 picks one), or unix:PATH.
	Addr string

	MaxEventBytes int64 // default 1 MiB
	MaxBodyBytes  int64 // default 16 MiB
	MaxBulkBytes  int64 // default 1 GiB

	Batch iu.BatchOptions

	ReadHeaderTimeout time.Duration // default 10 s
	ReadTimeout       time.Duration // default 60 s (bulk: BulkTimeout)
	WriteTimeout      time.Duration // default 60 s (bulk: BulkTimeout)
	IdleTimeout       time.Duration // default 120 s
	BulkTimeout       time.Duration // default 1 h

	// RetryAfter is what a 503 asks producers to wait (default 5 s).
	RetryAfter time.Duration
	// CacheTTL bounds how long triggers and tokens changed through another
	// server (sharing the database) take to be seen here (default 1 s).
	CacheTTL time.Duration

	// Console, if set, serves every path that is not the API's (/v1/...,
	// /metrics, /healthz, /readyz, /openapi.json): the ops console. It
	// does its own authentication; the server only routes to it.
	Console nethttp.Handler
}

func (c *Config) defaults() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxEventBytes, DefaultMaxEventBytes)
	def(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	def(&c.MaxBulkBytes, DefaultMaxBulkBytes)
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.ReadHeaderTimeout, 10*time.Second)
	dur(&c.ReadTimeout, 60*time.Second)
	dur(&c.WriteTimeout, 60*time.Second)
	dur(&c.IdleTimeout, 120*time.Second)
	dur(&c.BulkTimeout, DefaultBulkTimeout)
	dur(&c.RetryAfter, DefaultRetryAfter)
	dur(&c.CacheTTL, DefaultCacheTTL)
}

// Server serves iu over HTTP: CloudEvents intake, the API, metrics and
// health. Open starts it; Close shuts it down gracefully.
type Server struct {
	engine  *iu.Engine
	batcher *iu.Batcher
	log     *slog.Logger
	cfg     Config

	srv      *nethttp.Server
	ln       net.Listener
	mux      *nethttp.ServeMux
	routes   []route
	metrics  *metrics
	tokens   tokenCache
	triggers intake.TriggerCache
	draining atomic.Bool
	serveErr chan error
	closing  sync.Once

	readyMu     sync.Mutex
	readyChecks []readyCheck
}

// readyCheck is a part of readiness beyond the store: another intake's
// connection, say.
type readyCheck struct {
	name  string
	check func(context.Context) error
}

// AddReadyCheck makes /readyz also ask check: while it returns an error,
// /readyz answers 503 naming the check (the error goes to the log only).
// Safe to call while serving.
func (s *Server) AddReadyCheck(name string, check func(context.Context) error) {
	s.readyMu.Lock()
	s.readyChecks = append(s.readyChecks, readyCheck{name, check})
	s.readyMu.Unlock()
}

// Batcher returns the server's group-commit batcher, for other intakes to
// submit through: their events then share transactions with HTTP's (and
// its Activity, what the console charts, counts them all).
func (s *Server) Batcher() *iu.Batcher { return s.batcher }

// Register adds collectors to the registry that GET /metrics serves.
func (s *Server) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.metrics.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// NewServer returns a server over engine; log may be nil (no logs).
func NewServer(engine *iu.Engine, cfg Config, log *slog.Logger) *Server {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{engine: engine, cfg: cfg, log: log, serveErr: make(chan error, 1)}
	s.tokens.ttl, s.triggers.TTL = cfg.CacheTTL, cfg.CacheTTL
	s.metrics = newMetrics(engine)
	batch := cfg.Batch
	observe := batch.Observe
	batch.Observe = func(n int, took time.Duration, err error) {
		s.metrics.batch(n, took, err)
		if err != nil {
			s.log.Error("batch failed", "events", n, "took", took, "err", err)
		}
		if observe != nil {
			observe(n, took, err)
		}
	}
	s.batcher = engine.NewBatcher(batch)
	s.metrics.watch(s.batcher)
	s.mux = nethttp.NewServeMux()
	s.routes = s.routeTable()
	for i := range s.routes {
		rt := &s.routes[i]
		s.mux.Handle(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	s.srv = &nethttp.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Open listens on the configured address and serves in the background.
func (s *Server) Open() error {
	ln, err := Listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.Serve(ln)
	return nil
}

// Listen listens on addr: host:port (port 0 picks one; "" is
// 127.0.0.1:8080), or unix:PATH. A socket file left by a server that died
// is replaced; one that a live server answers on is not. `iu serve` listens
// before it opens the store, so that a busy address changes nothing.
func Listen(addr string) (net.Listener, error) {
	network, where := "tcp", addr
	if where == "" {
		where = "127.0.0.1:8080"
	}
	if p, ok := strings.CutPrefix(where, "unix:"); ok {
		network, where = "unix", p
		if _, err := os.Stat(p); err == nil {
			c, err := net.DialTimeout("unix", p, time.Second)
			if err == nil {
				c.Close()
				return nil, iu.Errorf(iu.ErrUnavailable, "listen on %s: a server already answers on this socket", addr)
			}
			os.Remove(p) // left by a server that died
		}
	}
	ln, err := net.Listen(network, where)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return nil, iu.Errorf(iu.ErrUnavailable, "listen on %s: %v", where, err)
	}
	return ln, nil
}

// Serve serves on ln in the background, until Close.
func (s *Server) Serve(ln net.Listener) {
	s.ln = ln
	go func() { s.serveErr <- s.srv.Serve(ln) }()
}

// URL is the base URL clients use: http://host:port, or unix:PATH.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	if s.ln.Addr().Network() == "unix" {
		return "unix:" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Engine returns the server's engine.
func (s *Server) Engine() *iu.Engine { return s.engine }

// Drain turns /readyz to 503 while the server goes on serving: a load
// balancer that probes it stops sending requests before Close closes the
// listener.
func (s *Server) Drain() { s.draining.Store(true) }

// Close shuts the server down gracefully: /readyz turns 503, the listener
// closes, requests in flight finish (their events committed before their
// 2xx is sent), then the batcher drains. Events that arrive after that are
// refused with 503 and nothing is written. It returns when everything in
// flight is done or ctx ends.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.closing.Do(func() {
		s.draining.Store(true)
		err = s.srv.Shutdown(ctx)
		if berr := s.batcher.Close(ctx); err == nil {
			err = berr
		}
		if s.ln != nil && s.ln.Addr().Network() == "unix" {
			os.Remove(s.ln.Addr().String())
		}
	})
	return err
}

// Handler returns the server's handler, for tests that serve it their own
// way.
func (s *Server) Handler() nethttp.Handler { return s }

// call is one request as the handlers see it.
type call struct {
	w     nethttp.ResponseWriter
	r     *nethttp.Request
	token *iu.Token // nil on open routes
	id    string    // request id
	route *route
	base  *slog.Logger
	log   *slog.Logger // base with the request id, made when first needed
	// outcome is what the request did, for the access log ("created 3").
	outcome string
}

// logger returns the server's logger with the request id. It is made on
// first use: most requests log nothing at the default level, and a
// logger's With costs an allocation and a copy.
func (c *call) logger() *slog.Logger {
	if c.log == nil {
		c.log = c.base.With("request_id", c.id)
	}
	return c.log
}

// ctx returns the request's context.
func (c *call) ctx() context.Context { return c.r.Context() }

// claimed is the actor the client named for a change (the command line
// sends its --actor as the actor query parameter), or "". Changes are
// recorded under the token's name, the principal of the request's
// context; the claimed actor is kept beside it.
func (c *call) claimed() string { return c.r.URL.Query().Get("actor") }

// route is one entry of the router: the handler, the scope it needs ("" for
// open routes) and its body limit.
type route struct {
	method  string
	pattern string
	scope   iu.Scope
	limit   int64
	summary string
	handle  func(*call) error
}

// ServeHTTP dispatches to the route, or to the console for paths outside
// the API, or answers 404 or 405 as JSON.
func (s *Server) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if s.cfg.Console != nil && !isAPIPath(r.URL.Path) {
		s.cfg.Console.ServeHTTP(w, r)
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r) // sets the path values
		return
	}
	// The mux would answer 404 or 405 in plain text; find which, and say
	// it in JSON.
	rec := &statusRecorder{header: nethttp.Header{}}
	h.ServeHTTP(rec, r)
	id := requestID(r)
	w.Header().Set("X-Request-Id", id)
	if rec.status == nethttp.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeJSON(w, nethttp.StatusMethodNotAllowed, errorDoc{errorBody{Code: CodeMethodNotAllowed, Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))}})
		return
	}
	writeJSON(w, nethttp.StatusNotFound, errorDoc{errorBody{Code: iu.CodeNotFound, Message: fmt.Sprintf("no route %s %s (GET /openapi.json lists them)", r.Method, r.URL.Path)}})
}

// isAPIPath reports whether path belongs to the API rather than to the
// console: a mistyped API path must get the API's JSON 404, not a page.
func isAPIPath(path string) bool {
	switch path {
	case "/v1", "/metrics", "/healthz", "/readyz", "/openapi.json":
		return true
	}
	return strings.HasPrefix(path, "/v1/")
}

// statusRecorder captures what the mux's fallback handler would answer.
type statusRecorder struct {
	header nethttp.Header
	status int
}

func (r *statusRecorder) Header() nethttp.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = nethttp.StatusOK
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(code int) { r.status = code }

// requestID returns the client's X-Request-Id when it is short and plain,
// else a new random one.
func requestID(r *nethttp.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && strings.IndexFunc(id, func(c rune) bool {
		return !(c == '-' || c == '_' || c == '.' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}) < 0 {
		return id
	}
	return idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}

// Request ids are a random prefix for this process and a counter: unique
// across the servers behind one load balancer, and cheap.
var (
	idPrefix  = func() string { var b [4]byte; rand.Read(b[:]); return hex.EncodeToString(b[:]) + "-" }()
	idCounter atomic.Uint64
)

// respWriter records the status for logs and metrics.
type respWriter struct {
	nethttp.ResponseWriter
	status int
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = nethttp.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines, full duplex).
func (w *respWriter) Unwrap() nethttp.ResponseWriter { return w.ResponseWriter }

// wrap is the middleware around every route: request id, body limit,
// authentication and scope, panic recovery, metrics and the access log.
func (s *Server) wrap(rt *route) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		start := time.Now()
		rw := &respWriter{ResponseWriter: w}
		c := &call{w: rw, r: r, id: requestID(r), route: rt}
		rw.Header().Set("X-Request-Id", c.id)
		c.base = s.log
		r.Body = nethttp.MaxBytesReader(rw, r.Body, rt.limit)
		defer func() {
			if p := recover(); p != nil {
				if p == nethttp.ErrAbortHandler {
					panic(p)
				}
				c.logger().Error("panic", "route", rt.method+" "+rt.pattern, "panic", p, "stack", string(debug.Stack()))
				if rw.status == 0 {
					s.fail(c, iu.Errorf(nil, "panic: %v", p))
				}
			}
			took := time.Since(start)
			s.metrics.request(rt, rw.status, took)
			level := slog.LevelDebug
			switch {
			case rw.status >= 500:
				level = slog.LevelError
			case rw.status >= 400:
				level = slog.LevelInfo
			}
			if c.base.Enabled(r.Context(), level) {
				tok := ""
				if c.token != nil {
					tok = c.token.Name
				}
				c.logger().Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "route", rt.pattern,
					"status", rw.status, "took", took, "token", tok, "remote", r.RemoteAddr, "outcome", c.outcome)
			}
		}()
		if rt.scope != "" {
			if err := s.authorize(c); err != nil {
				s.refuse(c, err)
				return
			}
		}
		if err := checkQuery(rt, r.URL.RawQuery); err != nil {
			s.fail(c, err)
			return
		}
		if err := rt.handle(c); err != nil {
			s.fail(c, err)
		}
	})
}

// fail answers err with its status. Internal errors are logged in full and
// answered without detail.
func (s *Server) fail(c *call, err error) {
	body := publicError(err, c.id)
	status := statusOf(body.Code)
	switch body.Code {
	case iu.CodeInternal:
		c.logger().Error("internal error", "route", c.route.pattern, "err", err)
	case iu.CodeUnavailable:
		c.logger().Warn("unavailable", "route", c.route.pattern, "err", err)
	}
	if status == nethttp.StatusServiceUnavailable {
		c.w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
	}
	c.outcome = string(body.Code)
	writeJSON(c.w, status, errorDoc{body})
}

func retryAfter(d time.Duration) string {
	return fmt.Sprint(max(1, int(d.Round(time.Second)/time.Second)))
}

// authorize checks the bearer token and its scope.
func (s *Server) authorize(c *call) error {
	auth := c.r.Header.Get("Authorization")
	if auth == "" {
		return httpError(iu.CodeUnauthorized, "no token: send Authorization: Bearer <token> (iu token create --scope %s)", c.route.scope)
	}
	scheme, secret, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return httpError(iu.CodeUnauthorized, "malformed Authorization header: want Bearer <token>")
	}
	tok, err := s.tokens.authenticate(c.ctx(), s.engine, strings.TrimSpace(secret))
	if err != nil {
		return err
	}
	c.token = &tok
	// Whatever the request does is done by the token's holder.
	c.r = c.r.WithContext(iu.NewContextWithPrincipal(c.r.Context(), tok.Name))
	if !tok.Scope.Allows(c.route.scope) {
		return httpError(iu.CodeForbidden, "token %q has scope %s; %s %s needs %s", tok.Name, tok.Scope, c.route.method, c.route.pattern, c.route.scope)
	}
	return nil
}

// refuse answers a 401 or 403 and logs it with the route and the token's
// name. Nothing has been read or written.
func (s *Server) refuse(c *call, err error) {
	code := iu.ErrorCode(err)
	if code != iu.CodeUnauthorized && code != iu.CodeForbidden {
		s.fail(c, err) // the store could not be asked
		return
	}
	tok := "(none)"
	if c.token != nil {
		tok = c.token.Name
	} else if c.r.Header.Get("Authorization") != "" {
		tok = "(unknown)"
	}
	c.logger().Warn("refused", "route", c.route.method+" "+c.route.pattern, "token", tok, "status", statusOf(code), "remote", c.r.RemoteAddr, "reason", err.Error())
	s.metrics.refusals.WithLabelValues(string(code)).Inc()
	if code == iu.CodeUnauthorized {
		c.w.Header().Set("WWW-Authenticate", `Bearer realm="iu"`)
	} else {
		c.w.Header().Set("WWW-Authenticate", `Bearer realm="iu", error="insufficient_scope", scope="`+string(c.route.scope)+`"`)
	}
	c.outcome = string(code)
	writeJSON(c.w, statusOf(code), errorDoc{publicError(err, c.id)})
}

// tokenCache remembers recent authentications for ttl, so that a producer
// posting thousands of events a second costs the store one read a second.
// A token revoked here is forgotten at once; one revoked through another
// server is refused here within ttl.
type tokenCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]tokenEntry // by hash of the secret
}

type tokenEntry struct {
	tok     iu.Token
	err     error
	expires time.Time
}

// maxCachedTokens bounds the cache, which also holds refusals (so that a
// flood of bad tokens does not become a flood of store reads).
const maxCachedTokens = 4096

func (tc *tokenCache) authenticate(ctx context.Context, e *iu.Engine, secret string) (iu.Token, error) {
	hash := iu.HashToken(secret)
	now := time.Now()
	tc.mu.Lock()
	ent, ok := tc.m[hash]
	tc.mu.Unlock()
	if ok && now.Before(ent.expires) {
		if ent.err != nil {
			return iu.Token{}, ent.err
		}
		// The map was found by the hash; compare it again in constant time
		// as the contract of token checks says.
		if !iu.SameHash(ent.tok.Hash, hash) {
			return iu.Token{}, iu.Errorf(iu.ErrUnauthorized, "invalid or revoked token")
		}
		return ent.tok, nil
	}
	tok, err := e.Authenticate(ctx, secret)
	if err != nil && !errors.Is(err, iu.ErrUnauthorized) {
		return iu.Token{}, err // the store failed: do not remember
	}
	tc.mu.Lock()
	if tc.m == nil || len(tc.m) >= maxCachedTokens {
		tc.m = make(map[string]tokenEntry)
	}
	tc.m[hash] = tokenEntry{tok: tok, err: err, expires: now.Add(tc.ttl)}
	tc.mu.Unlock()
	return tok, err
}

// forget drops every cached authentication (after a revocation).
func (tc *tokenCache) forget() {
	tc.mu.Lock()
	tc.m = nil
	tc.mu.Unlock()
}
