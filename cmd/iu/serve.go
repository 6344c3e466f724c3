package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/console"
	iuhttp "github.com/iu-engine/iu/http"
)

// remoteFlags are the global flags that make every command a client of a
// running `iu serve` instead of opening the store.
type remoteFlags struct {
	url       string
	token     string
	tokenFile string
}

func (r *remoteFlags) register(pf *pflag.FlagSet) {
	pf.StringVar(&r.url, "server", os.Getenv("IU_SERVER"), "talk to a running iu serve at this URL (http://host:port or unix:PATH) instead of opening --db (env IU_SERVER)")
	pf.StringVar(&r.token, "token", "", "the bearer token for --server (env IU_TOKEN)")
	pf.StringVar(&r.tokenFile, "token-file", os.Getenv("IU_TOKEN_FILE"), "read the token for --server from this file (env IU_TOKEN_FILE)")
}

// secret returns the token to send: --token, else IU_TOKEN, else the
// first line of --token-file.
func (r *remoteFlags) secret() (string, error) {
	if r.token != "" {
		return r.token, nil
	}
	if t := os.Getenv("IU_TOKEN"); t != "" {
		return t, nil
	}
	if r.tokenFile != "" {
		b, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return "", usagef("--token-file: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSpace(line), nil
	}
	return "", nil
}

// remote makes the app's service a client of the server named by --server.
func (a *app) remote() (iu.Service, error) {
	secret, err := a.server.secret()
	if err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, usagef("--server %s needs a token: give --token or --token-file, or set IU_TOKEN or IU_TOKEN_FILE (iu serve's first start writes an admin token beside its store; iu token create makes more)", a.server.url)
	}
	c, err := iuhttp.NewClient(a.server.url, secret)
	if err != nil {
		return nil, usageError{err}
	}
	a.svc = c
	a.closers = append(a.closers, c.Close)
	return c, nil
}

// serveMain is `iu serve`: it opens the store, makes sure someone can log
// in, and serves until its context ends, then shuts down gracefully. Like
// benbjohnson/wtf's Main it is what the end-to-end tests boot, on port 0.
type serveMain struct {
	DB              string
	Addr            string
	Config          iuhttp.Config
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	Stderr          io.Writer
	CPUProfile      string
	// AdminTokenFile is where a bootstrap admin token is written (default:
	// beside a SQLite store, iu-admin.token in the working directory for
	// PostgreSQL).
	AdminTokenFile string
	// NATS, when its URL is set, consumes events from JetStream too.
	NATS natsFlags
	// Console serves the ops console at / (default true).
	Console bool

	Store     iu.Store
	Engine    *iu.Engine
	Server    *iuhttp.Server
	TokenFile string // where a bootstrap admin token was written, or ""
	log       *slog.Logger
	nats      *natsIntake
	console   *console.Console
}

// newServeMain returns a serve with the defaults that its flags show, for
// the callers that set no flags (iu demo --serve) as for those that do.
func newServeMain(stderr io.Writer) *serveMain {
	return &serveMain{Stderr: stderr, DB: defaultPath, Console: true, LogFormat: "text", LogLevel: "info",
		ShutdownTimeout: 30 * time.Second,
		Config: iuhttp.Config{
			MaxEventBytes: iuhttp.DefaultMaxEventBytes, MaxBodyBytes: iuhttp.DefaultMaxBodyBytes, MaxBulkBytes: iuhttp.DefaultMaxBulkBytes,
			RetryAfter: iuhttp.DefaultRetryAfter,
			Batch:      iu.BatchOptions{MaxEvents: iu.DefaultBatchEvents, MaxWait: iu.DefaultBatchWait},
		}}
}

// flags registers serve's own flags on fs.
func (m *serveMain) flags(fs *pflag.FlagSet) {
	c := &m.Config
	fs.StringVar(&m.Addr, "addr", envOr("IU_ADDR", "127.0.0.1:8080"), "listen on host:port (port 0 picks one) or unix:PATH (env IU_ADDR)")
	fs.Int64Var(&c.MaxEventBytes, "max-event-bytes", c.MaxEventBytes, "largest POST /v1/events body")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest JSON body of POST /v1/templates and POST /v1/emit")
	fs.Int64Var(&c.MaxBulkBytes, "max-bulk-bytes", c.MaxBulkBytes, "largest POST /v1/bulk body")
	fs.IntVar(&c.Batch.MaxEvents, "batch-events", c.Batch.MaxEvents, "group commit: most events in one transaction")
	fs.DurationVar(&c.Batch.MaxWait, "batch-wait", c.Batch.MaxWait, "group commit: longest wait for more events to share a transaction")
	fs.IntVar(&c.Batch.Workers, "batch-workers", 0, "group commit: transactions in flight at once (default 1 on SQLite, 2 on PostgreSQL)")
	fs.DurationVar(&c.RetryAfter, "retry-after", c.RetryAfter, "Retry-After of 503 answers (a gate is closed, the store is busy)")
	fs.DurationVar(&m.ShutdownTimeout, "shutdown-timeout", m.ShutdownTimeout, "on SIGINT/SIGTERM, how long to wait for requests in flight")
	fs.DurationVar(&m.DrainDelay, "drain-delay", 0, "on SIGINT/SIGTERM, how long to answer /readyz with 503 while still serving, before closing the listener (behind a load balancer: a few of its probe intervals)")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "log format: text or json")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "log level: debug (every request), info, warn, error")
	fs.StringVar(&m.AdminTokenFile, "admin-token-file", "", "where to write the admin token made when the store has none (default: STORE.token beside a SQLite store, ./iu-admin.token for PostgreSQL)")
	fs.BoolVar(&m.Console, "console", m.Console, "serve the ops console at / (sign in with a read or admin token); --console=false serves the API only")
	fs.StringVar(&m.CPUProfile, "cpuprofile", "", "write a CPU profile to this file until shutdown")
	fs.MarkHidden("cpuprofile")
	m.NATS.register(fs, true)
}

// ParseFlags reads serve's flags, and --db, from args: the tests' way in.
func (m *serveMain) ParseFlags(args []string) error {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&m.DB, "db", m.DB, "store")
	m.flags(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments, got %q", fs.Args())
	}
	return nil
}

func (m *serveMain) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.LogLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", m.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch m.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(m.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(m.Stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", m.LogFormat)
}

// checkFlags refuses sizes and durations that cannot be meant: the
// server's configuration reads zero as "the default", which a typed 0 or
// -1 must not silently become.
func (m *serveMain) checkFlags() error {
	c := &m.Config
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"--max-event-bytes", c.MaxEventBytes}, {"--max-body-bytes", c.MaxBodyBytes}, {"--max-bulk-bytes", c.MaxBulkBytes},
		{"--batch-events", int64(c.Batch.MaxEvents)},
	} {
		if f.v <= 0 {
			return usagef("%s wants a positive number, got %d", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"--batch-wait", c.Batch.MaxWait}, {"--retry-after", c.RetryAfter}, {"--shutdown-timeout", m.ShutdownTimeout},
	} {
		if f.v <= 0 {
			return usagef("%s wants a positive duration, got %s", f.name, f.v)
		}
	}
	if c.Batch.Workers < 0 {
		return usagef("--batch-workers wants 1 or more (or 0: the store's own), got %d", c.Batch.Workers)
	}
	if m.DrainDelay < 0 {
		return usagef("--drain-delay wants 0 or more, got %s", m.DrainDelay)
	}
	_, err := m.NATS.config()
	return err
}

// Open opens the store, creates an admin token if the store has none, and
// starts serving.
func (m *serveMain) Open(ctx context.Context) error {
	if err := m.checkFlags(); err != nil {
		return err
	}
	log, err := m.logger()
	if err != nil {
		return err
	}
	m.log = log
	// Listen first: a start that cannot serve (the address is taken)
	// must leave the store, its token and the directory as they were.
	ln, err := iuhttp.Listen(m.Addr)
	if err != nil {
		return err
	}
	// NATS next, for the same reason: its streams are made, but nothing
	// of the store is touched, if NATS cannot be reached.
	if err := m.dialNATS(ctx); err != nil {
		ln.Close()
		return err
	}
	if m.Store, err = openStore(ctx, m.DB, true); err != nil {
		ln.Close()
		m.closeNATS()
		return err
	}
	m.Engine = iu.NewEngine(m.Store)
	if err := m.bootstrapToken(ctx); err != nil {
		ln.Close()
		m.closeNATS()
		m.Store.Close()
		return err
	}
	cfg := m.Config
	cfg.Addr = m.Addr
	if cfg.Batch.Workers <= 0 {
		cfg.Batch.Workers = m.Store.WriteConcurrency()
	}
	var srv *iuhttp.Server // the console charts what its batcher answers
	if m.Console {
		m.console = console.New(m.Engine, console.Options{Log: log, Activity: func() iu.ActivitySnapshot { return srv.Batcher().Activity() }})
		cfg.Console = m.console
	}
	srv = iuhttp.NewServer(m.Engine, cfg, log)
	m.Server = srv
	m.Server.Serve(ln)
	if err := m.startNATS(); err != nil {
		m.Close()
		return err
	}
	b := cfg.Batch
	log.Info("iu serve listening", append([]any{"url", m.Server.URL(), "store", m.Store.Describe(),
		"batch_events", b.MaxEvents, "batch_wait", b.MaxWait, "batch_workers", b.Workers, "console", m.Console}, m.natsLogAttrs()...)...)
	return nil
}

// bootstrapToken creates an admin token when the store has no token at
// all, and writes its secret to a file only the owner can read: beside a
// SQLite store, in the working directory for PostgreSQL. The secret never
// goes to the log. The server never runs open: without a token nobody gets
// in.
func (m *serveMain) bootstrapToken(ctx context.Context) error {
	toks, err := allItems(ctx, m.Engine.ListTokens)
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		live := 0
		for _, t := range toks {
			if !t.Revoked() {
				live++
			}
		}
		m.log.Info("tokens", "live", live, "revoked", len(toks)-live, "hint", "iu token create --scope ingest|read|admin makes another")
		return nil
	}
	file := m.AdminTokenFile
	if file == "" {
		file = "iu-admin.token"
		if p := m.Store.LocalPath(); p != "" {
			file = p + ".token"
		}
	}
	if file, err = filepath.Abs(file); err != nil {
		return err
	}
	nt, err := m.Engine.CreateToken(ctx, "admin", iu.ScopeAdmin, "iu:serve")
	if errors.Is(err, iu.ErrTokenExists) {
		// Another server on the same database made it first.
		m.log.Info("tokens", "note", "another server created the admin token")
		return nil
	}
	if err != nil {
		return err
	}
	if err := writeSecret(file, nt.Secret); err != nil {
		// Without the file nobody can use the token: revoke it, so that
		// the next start makes one again.
		m.Engine.RevokeToken(context.WithoutCancel(ctx), nt.Name)
		return fmt.Errorf("write the admin token: %w", err)
	}
	m.TokenFile = file
	m.log.Warn("the store had no token: created admin token \"admin\"; its secret is in the token file (mode 0600)", "token_file", file,
		"hint", "iu --server URL --token-file "+file+" token create --scope ingest --name NAME")
	return nil
}

// writeSecret writes a secret to path, readable by the owner only.
func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := fmt.Fprintln(f, secret); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serviceGCPercent is the garbage collector's target for the long-running
// commands (serve, bench) when GOGC is not set: their live heap is a few
// megabytes, and at Go's default of 100 every request's garbage made the
// collector run dozens of times a second, a fifth of the server's CPU under
// load. 400 lets the heap grow to five times what is live instead of twice.
const serviceGCPercent = 400

// tuneGC applies serviceGCPercent unless the operator set GOGC.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serviceGCPercent)
	}
}

// Run opens, serves until ctx ends, and closes.
func (m *serveMain) Run(ctx context.Context) error {
	tuneGC()
	if m.CPUProfile != "" {
		stop, err := startCPUProfile(m.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	// A stop signal while starting (the socket already listens) is
	// answered once started: with a graceful stop, as at any other time.
	if err := m.Open(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	<-ctx.Done()
	// The JetStream intake stops fetching at once; what it holds is
	// committed and acknowledged, the rest waits in the stream.
	natsErr := m.closeNATS()
	if m.DrainDelay > 0 {
		// A second signal ends the drain early, as an operator pressing
		// Ctrl-C again expects.
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		m.log.Info("draining: /readyz answers 503 while requests are still served; a second signal ends the drain", "drain_delay", m.DrainDelay)
		m.Server.Drain()
		select {
		case <-time.After(m.DrainDelay):
		case <-again:
			m.log.Info("a second signal: ending the drain early")
		}
		signal.Stop(again)
	}
	m.log.Info("shutting down: finishing requests in flight", "timeout", m.ShutdownTimeout)
	return errors.Join(natsErr, m.Close())
}

// Close shuts down gracefully: no new connections, requests in flight
// finish and commit, then the store closes. Safe to call twice.
func (m *serveMain) Close() error {
	var errs []error
	if err := m.closeNATS(); err != nil {
		errs = append(errs, fmt.Errorf("nats: %w", err))
	}
	if m.Server != nil {
		timeout := m.ShutdownTimeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := m.Server.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
		m.Server = nil
		if m.console != nil {
			m.console.Close() // running verifies end before the store closes
			m.console = nil
		}
	} else if m.Store == nil {
		return nil // closed already
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
		m.Store = nil
	}
	err := errors.Join(errs...)
	if m.log != nil {
		if err != nil {
			m.log.Error("stopped", "err", err)
		} else {
			m.log.Info("stopped")
		}
	}
	return err
}

func (a *app) serveCommand() *cobra.Command {
	m := newServeMain(a.stderr)
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8080]",
		Short: "Run the event service: CloudEvents intake, the whole API, metrics",
		Long: `Serve iu over HTTP on --db's store: CloudEvents at POST /v1/events (binary,
structured and batch modes), the JSON API of every command (iu --server URL ...),
GET /metrics, /healthz, /readyz and /openapi.json, and the ops console at /
(sign in with a read or admin token; --console=false turns it off).

With --nats URL (env IU_NATS_URL) it also consumes CloudEvents from NATS
JetStream: stream --nats-stream (created on --nats-subjects when missing), the
durable pull consumer --nats-consumer shared by every worker, dead letters in
--nats-dead-letter-stream (iu dead list | redrive). A message is acknowledged
only once committed.

Every route but the health checks and the OpenAPI document needs a bearer token.
If the store has no token at all, serve creates an admin token and writes it to
a file only you can read: beside a SQLite store (iu.db.token), or iu-admin.token
in the working directory for PostgreSQL; the log says where.

On SIGINT or SIGTERM it stops fetching from NATS and commits and acknowledges
what it holds, stops accepting connections, finishes the requests in flight
(their events committed before they are answered) and exits 0.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if f := cmd.Flag("server"); f != nil && f.Changed {
				return usagef("serve opens the store itself (--db): --server does not apply")
			}
			m.DB = a.db
			return m.Run(cmd.Context())
		}),
	}
	m.flags(cmd.Flags())
	return cmd
}
