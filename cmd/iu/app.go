package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/sqlite"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed, or verify found a divergence
	exitUsage   = 2 // the command line was wrong
	exitGated   = 3 // a gate is closed: nothing (emit), or not everything (bulk), was written
	defaultPath = "iu.db"
)

// app holds one invocation's wiring: where to read and write, and the
// service the commands drive.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	db       string
	dbSet    bool // --db was given on the command line
	json     bool
	server   remoteFlags // --server, --token, --token-file (serve.go)
	svc      iu.Service
	store    iu.Store
	closers  []func() error
	progress *progressState
}

// usageError is a mistake on the command line: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// failure is an operation that failed: exit 1, or code when it is set
// (exitGated). reported means the command already printed what went wrong
// (verify's report).
type failure struct {
	err      error
	reported bool
	code     int
}

func (e failure) Error() string { return e.err.Error() }
func (e failure) Unwrap() error { return e.err }

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// At the command line, changes are made by the person at the keyboard
	// (through --server, by the token's holder: the server says who).
	if iu.PrincipalFromContext(ctx) == "" {
		ctx = iu.NewContextWithPrincipal(ctx, defaultActor())
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var f failure
	if errors.As(err, &f) {
		if !f.reported {
			a.printError(f.err)
		}
		if f.code != 0 {
			return f.code
		}
		return exitFailed
	}
	if a.json {
		a.printJSONError("usage", err.Error())
		return exitUsage
	}
	help := "iu --help"
	if cmd != nil && cmd != root {
		help = cmd.CommandPath() + " --help"
	}
	fmt.Fprintf(stderr, "iu: %v\nRun '%s' for usage.\n", err, help)
	return exitUsage
}

// printError reports a failed operation: as JSON on stdout with --json,
// else as text on stderr. Once, either way.
func (a *app) printError(err error) {
	if errors.Is(err, context.Canceled) {
		err = errors.New("interrupted; nothing was committed by the interrupted operation")
	}
	if a.json {
		a.printJSONError(string(iu.ErrorCode(err)), err.Error())
		return
	}
	fmt.Fprintf(a.stderr, "iu: %v\n", err)
}

func (a *app) printJSONError(code, message string) {
	a.printJSON(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// run adapts a command body: errors it returns are operation failures
// (exit 1) unless they are usage errors.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var u usageError
		var f failure
		if errors.As(err, &u) || errors.As(err, &f) {
			return err
		}
		return failure{err: err}
	}
}

// service opens the store named by --db (once, creating it if there is
// none) and returns the engine on it; or, with --server, a client of the
// server. Commands that write use it.
func (a *app) service(ctx context.Context) (iu.Service, error) { return a.open(ctx, true) }

// reader is service for commands that only read: they refuse a store that
// does not exist (a mistyped --db) instead of creating an empty one.
func (a *app) reader(ctx context.Context) (iu.Service, error) { return a.open(ctx, false) }

func (a *app) open(ctx context.Context, create bool) (iu.Service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	if a.server.url != "" {
		if a.dbSet {
			return nil, usagef("--db and --server are both given: with --server the command runs on the server's own store; give one of them")
		}
		return a.remote()
	}
	s, err := openStore(ctx, a.db, create)
	if err != nil {
		return nil, err
	}
	a.store = s
	a.closers = append(a.closers, s.Close)
	a.svc = iu.NewEngine(s)
	return a.svc, nil
}

// openStore opens a store from a --db value: a file path or sqlite:PATH for
// SQLite; a postgres:// URL or key=value pairs (host=... dbname=...) for
// PostgreSQL. Without create it refuses a store that does not exist.
func openStore(ctx context.Context, dsn string, create bool) (s iu.Store, err error) {
	kind, where, err := parseDB(dsn)
	if err != nil {
		return nil, err
	}
	if kind == "postgres" {
		s, err = openPostgres(ctx, where, create)
	} else {
		s, err = sqlite.Open(ctx, where, sqlite.Options{MustExist: !create})
	}
	if errors.Is(err, iu.ErrNoStore) {
		err = iu.Errorf(iu.ErrNoStore, "%s: check --db (or IU_DB); a command that writes, such as iu template publish, creates one", err)
	}
	return s, err
}

var (
	// keyValueDSN is libpq's key=value form: it starts with a key and '='.
	keyValueDSN = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)
	// urlScheme is any URL's scheme.
	urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
)

// parseDB tells which store a --db value names: ("sqlite", path) or
// ("postgres", dsn).
func parseDB(dsn string) (kind, where string, err error) {
	switch {
	case dsn == "":
		return "sqlite", defaultPath, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"), keyValueDSN.MatchString(dsn):
		return "postgres", dsn, nil
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if path == "" {
			return "", "", usagef("--db %q names no file: give sqlite:PATH", dsn)
		}
		return "sqlite", path, nil
	}
	if m := urlScheme.FindStringSubmatch(dsn); m != nil {
		hint := "give a file path or sqlite:PATH for SQLite, or postgres://... (or host=... dbname=...) for PostgreSQL"
		if s := strings.ToLower(m[1]); strings.HasPrefix(s, "pg") || strings.HasPrefix(s, "postg") {
			hint = "did you mean postgres://" + strings.TrimPrefix(dsn, m[0]) + "?"
		}
		return "", "", usagef("--db %q: iu does not know the scheme %s:// (iu stores in SQLite or PostgreSQL): %s", dsn, m[1], hint)
	}
	return "sqlite", dsn, nil
}

// defaultActor names the person at the keyboard for commands whose actor
// is optional.
func defaultActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if n := os.Getenv("USER"); n != "" {
		return n
	}
	return "iu:cli"
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "iu",
		Short: "iu instantiates versioned templates from business events, exactly once and on the record",
		Long: `iu is an event-driven template instantiation engine. Operators publish versioned
templates (content-addressed graphs of immutable pieces); each business event
instantiates the matching template into an instance exactly once, with lineage,
gates, bulk runs, rollback by actor, observability views and digest verification.

The store is a SQLite file by default (--db iu.db); give --db postgres://... to
share one PostgreSQL database between many iu processes.

Start with:  iu demo`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{flagError(err)} })
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		a.dbSet = cmd.Flags().Changed("db")
		return nil
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.db, "db", envOr("IU_DB", defaultPath), "store: a SQLite file path or sqlite:PATH, or postgres://... (env IU_DB)")
	pf.BoolVar(&a.json, "json", false, "print machine-readable JSON")
	a.server.register(pf)
	root.AddCommand(
		a.demoCommand(),
		a.initCommand(),
		a.templateCommand(),
		a.gateCommand(),
		a.emitCommand(),
		a.composeCommand(),
		a.bulkCommand(),
		a.instancesCommand(),
		a.eventsCommand(),
		a.auditCommand(),
		a.statsCommand(),
		a.verifyCommand(),
		a.rollbackCommand(),
		a.compensateCommand(),
		a.migrateCommand(),
		a.historyCommand(),
		a.renderCommand(),
		a.versionCommand(),
		a.serveCommand(),
		a.tokenCommand(),
		a.triggerCommand(),
		a.benchCommand(),
		a.deadCommand(),
	)
	// Wrong arguments are usage errors, whatever the command.
	for _, c := range allCommands(root) {
		if c.Args != nil {
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	return root
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, allCommands(s)...)
	}
	return out
}

// flagError words a flag's invalid value for people: "--limit wants a
// number, got \"abc\"" rather than strconv's message.
func flagError(err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	want := ""
	switch ive.GetFlag().Value.Type() {
	case "int", "int32", "int64", "uint", "uint64":
		want = "a whole number"
	case "float32", "float64":
		want = "a number"
	case "bool":
		want = "true or false"
	case "duration":
		want = "a duration such as 500ms, 5s or 2m"
	default:
		return err
	}
	return fmt.Errorf("--%s wants %s, got %q", ive.GetFlag().Name, want, ive.GetValue())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// requireFlags returns a usage error naming the missing flags.
func requireFlags(cmd *cobra.Command, names ...string) error {
	var missing []string
	for _, n := range names {
		if f := cmd.Flags().Lookup(n); f != nil && f.Value.String() == "" {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return usagef("%s: missing %s", strings.TrimPrefix(cmd.CommandPath(), "iu "), strings.Join(missing, ", "))
	}
	return nil
}
