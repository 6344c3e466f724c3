package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/sqlite"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed, or verify found a divergence
	exitUsage   = 2 // the command line was wrong
	defaultPath = "iu.db"
)

// app holds one invocation's wiring: where to read and write, and the
// service the commands drive.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	db       string
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

// failure is an operation that failed: exit 1. reported means the command
// already printed what went wrong (verify's report).
type failure struct {
	err      error
	reported bool
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
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var f failure
	if errors.As(err, &f) {
		if !f.reported {
			a.printError(f.err)
		}
		return exitFailed
	}
	if a.json {
		json.NewEncoder(stdout).Encode(map[string]any{"error": map[string]string{"code": "usage", "message": err.Error()}})
	}
	fmt.Fprintf(stderr, "iu: %v\nRun 'iu --help' for usage.\n", err)
	return exitUsage
}

func (a *app) printError(err error) {
	if errors.Is(err, context.Canceled) {
		err = errors.New("interrupted; nothing was committed by the interrupted operation")
	}
	if a.json {
		code := iu.ErrorCode(err)
		json.NewEncoder(a.stdout).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": err.Error()}})
	}
	fmt.Fprintf(a.stderr, "iu: %v\n", err)
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

// service opens the store named by --db (once) and returns the engine on it.
func (a *app) service(ctx context.Context) (iu.Service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	if a.server.url != "" {
		return a.remote()
	}
	s, err := openStore(ctx, a.db)
	if err != nil {
		return nil, err
	}
	a.store = s
	a.closers = append(a.closers, s.Close)
	a.svc = iu.NewEngine(s)
	return a.svc, nil
}

// openStore opens a store from a --db value: a file path or sqlite:PATH for
// SQLite, postgres://... for PostgreSQL.
func openStore(ctx context.Context, dsn string) (iu.Store, error) {
	switch {
	case dsn == "":
		dsn = defaultPath
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn)
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	path = strings.TrimPrefix(path, "//")
	return sqlite.Open(ctx, path, sqlite.Options{})
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
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.db, "db", envOr("IU_DB", defaultPath), "store: a SQLite file path or sqlite:PATH, or postgres://... (env IU_DB)")
	pf.BoolVar(&a.json, "json", false, "print machine-readable JSON")
	a.server.register(pf)
	root.AddCommand(
		a.demoCommand(),
		a.templateCommand(),
		a.gateCommand(),
		a.emitCommand(),
		a.composeCommand(),
		a.bulkCommand(),
		a.instancesCommand(),
		a.statsCommand(),
		a.verifyCommand(),
		a.rollbackCommand(),
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
