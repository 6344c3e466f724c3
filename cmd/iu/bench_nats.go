package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/iu-engine/iu/bench"
)

// benchNATSFlags are iu bench's flags for --nats.
type benchNATSFlags struct {
	nf natsFlags
	o  bench.NATSOptions
}

func (f *benchNATSFlags) register(fs *pflag.FlagSet) {
	// No default from IU_NATS_URL: an exported variable must not turn an
	// HTTP bench into a NATS one.
	f.nf.registerURL(fs, "", "publish the events to this NATS server's JetStream instead of posting them (nats://host:port)", false)
	fs.StringVar(&f.o.Subject, "nats-subject", "iu.events.bench", "with --nats: the subject to publish the events on")
	fs.BoolVar(&f.o.Wait, "wait", false, "with --nats: wait until the consumer has settled every event published (nothing pending or unacknowledged) and report the end-to-end rate")
	fs.IntVar(&f.o.Invalid, "invalid", 0, "with --nats: make this many of the events invalid (no type): they end in the dead-letter stream")
}

// benchNATS publishes the bench's events to JetStream and prints the
// report.
func (a *app) benchNATS(ctx context.Context, o bench.Options, f benchNATSFlags) error {
	if f.o.Invalid < 0 || f.o.Invalid > o.Events {
		return usagef("--invalid %d: want 0 to -n", f.o.Invalid)
	}
	conn, err := a.dialNATS(ctx, f.nf)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := bench.RunNATS(ctx, conn, o, f.o)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rep)
	}
	printBenchNATS(a.stdout, rep)
	if rep.Errors > 0 {
		return failure{err: fmt.Errorf("bench: %d of %d events were not stored (first: %s)", rep.Errors, rep.Events, rep.FirstError)}
	}
	return nil
}

func printBenchNATS(w io.Writer, r *bench.NATSReport) {
	fmt.Fprintf(w, "iu bench: %d events (%d distinct, %d invalid), %s mode, %.0f%% duplicates -> %s, stream %s, subject %s\n",
		r.Events, r.Distinct, r.Invalid, r.Mode, 100*r.DuplicateRatio, r.Target, r.Stream, r.Subject)
	fmt.Fprintf(w, "  published: %.0f events/s (%.2f s, each stored by the stream)\n", r.PublishPerSec, r.PublishSeconds)
	if r.Waited {
		fmt.Fprintf(w, "  end to end: %.0f events/s (%.2f s until the consumer drained)\n", r.EventsPerSec, r.EndToEndSeconds)
	}
	fmt.Fprintf(w, "  errors %d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "  instances: actor %s, prefix %s (iu rollback --actor %s --apply removes them)\n", r.Actor, r.InstancePrefix, r.Actor)
}
