package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/bench"
)

// benchFlags are iu bench's flags: most go straight into bench.Options.
type benchFlags struct {
	o        bench.Options
	direct   bool
	progress string
	cpuprof  string
	nats     benchNATSFlags // --nats: publish to JetStream instead (bench_nats.go)
}

func (a *app) benchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench [-n N] [-c C] [--dup 0.1] [--mode binary|structured] [--direct]",
		Short: "Load generator: post N CloudEvents over C connections and report events/s and latency",
		Long: `Post N events to a running iu serve (--server, IU_SERVER; a token of scope ingest)
over C concurrent connections, in CloudEvents binary or structured mode, a share of
them (--dup) repeats of earlier events (answered replayed). Each event names its
template (--template, extension iutemplate), or with --triggered relies on the
server's triggers (--type). Prints events/s and the latency percentiles; --json for
scripts.

--nats URL publishes the events to NATS JetStream instead (--nats-subject, on the
stream iu serve --nats consumes), each stored by the stream, and reports the publish
rate; with --wait also the end-to-end rate, until the consumer has drained.

--direct drives the Go API instead (the engine with group commit, on --db), with no
HTTP at all: the difference is what the network and the HTTP layer cost.

The instances are made under actor --actor with instance prefix <actor>-<run id>:
iu rollback --actor ACTOR --apply removes them.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			tuneGC()
			if f.nats.nf.cfg.URL != "" {
				return a.benchNATS(cmd.Context(), f.o, f.nats)
			}
			return a.bench(cmd.Context(), f)
		}),
	}
	f.register(cmd.Flags())
	return cmd
}

func (f *benchFlags) register(fs *pflag.FlagSet) {
	o := &f.o
	fs.IntVarP(&o.Events, "events", "n", 10000, "events to send")
	fs.IntVarP(&o.Connections, "connections", "c", 64, "concurrent connections (callers with --direct)")
	fs.Float64Var(&o.Duplicates, "dup", 0.1, "share of events that repeat an earlier one")
	fs.StringVar(&o.Mode, "mode", bench.Binary, "CloudEvents mode: binary or structured")
	fs.StringVar(&o.Template, "template", "tpl:wf:onboarding/v2", "template the events name (extension iutemplate)")
	fs.BoolVar(&o.Triggered, "triggered", false, "name no template: let the server's triggers route the events (by --type)")
	fs.StringVar(&o.Type, "type", "iu.bench.event", "event type")
	fs.StringVar(&o.Source, "source", "iu:bench", "event source")
	fs.StringVar(&o.Actor, "actor", "iu-bench", "actor of the instances (extension iuactor)")
	fs.BoolVar(&f.direct, "direct", false, "drive the Go API on --db instead of a server: no HTTP")
	fs.StringVar(&f.progress, "progress", "auto", "progress bar: auto (on a terminal), bar, none")
	fs.IntVar(&o.Batch.MaxEvents, "batch-events", iu.DefaultBatchEvents, "with --direct: group commit's most events per transaction")
	fs.DurationVar(&o.Batch.MaxWait, "batch-wait", iu.DefaultBatchWait, "with --direct: group commit's longest wait")
	fs.IntVar(&o.Batch.Workers, "batch-workers", 0, "with --direct: transactions in flight (default 1 on SQLite, 2 on PostgreSQL)")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.StringVar(&f.cpuprof, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.MarkHidden("cpuprofile")
	f.nats.register(fs)
}

// check refuses, in the flags' words, what makes no run.
func (f *benchFlags) check() error {
	o := f.o
	if o.Events <= 0 || o.Connections <= 0 {
		return usagef("-n and -c must be positive")
	}
	if o.Duplicates < 0 || o.Duplicates >= 1 {
		return usagef("--dup %v: want a fraction in [0, 1)", o.Duplicates)
	}
	if o.Mode != bench.Binary && o.Mode != bench.Structured {
		return usagef("--mode %q: want binary or structured", o.Mode)
	}
	if _, err := iu.ParseTemplateKey(o.Template); err != nil && !o.Triggered {
		return usageError{err}
	}
	switch f.progress {
	case "auto", "bar", "none":
	default:
		return usagef("--progress %q: want auto, bar or none", f.progress)
	}
	return nil
}

// bench runs the load against --server, or with --direct against the
// engine on --db, and prints the report.
func (a *app) bench(ctx context.Context, f *benchFlags) error {
	o := f.o
	if f.progress == "bar" || (f.progress == "auto" && isTerminal(a.stderr)) {
		o.Progress = a.stderr
	}
	if f.cpuprof != "" {
		o.Profile = func() (func(), error) { return startCPUProfile(f.cpuprof) }
	}
	if f.direct {
		s, err := openStore(ctx, a.db, true)
		if err != nil {
			return err
		}
		defer s.Close()
		o.Store = s
	} else {
		if a.server.url == "" {
			return usagef("bench needs a server (--server URL or IU_SERVER), or --direct to drive the Go API on --db")
		}
		secret, err := a.server.secret()
		if err != nil {
			return err
		}
		o.Server, o.Token = a.server.url, secret
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rep)
	}
	printBench(a.stdout, rep)
	if rep.Errors > 0 {
		return failure{err: fmt.Errorf("bench: %d of %d events failed (first: %s)", rep.Errors, rep.Events, rep.FirstError)}
	}
	return nil
}

// startCPUProfile profiles the process into file until stop is called
// (iu serve --cpuprofile and iu bench --cpuprofile).
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func printBench(w io.Writer, r *bench.Report) {
	fmt.Fprintf(w, "iu bench: %d events, %d connections, %s mode, %.0f%% duplicates -> %s\n", r.Events, r.Connections, r.Mode, 100*r.DuplicateRatio, r.Target)
	fmt.Fprintf(w, "  %.0f events/s (%.2f s)\n", r.EventsPerSec, r.Seconds)
	l := r.LatencyMS
	fmt.Fprintf(w, "  latency ms: p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  mean %.2f\n", l.P50, l.P95, l.P99, l.Max, l.Mean)
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Statuses[k]))
	}
	fmt.Fprintf(w, "  answers: %s; errors %d\n", strings.Join(parts, ", "), r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "  instances: actor %s, prefix %s (iu rollback --actor %s --apply removes them)\n", r.Actor, r.InstancePrefix, r.Actor)
}
